"""A first infusion of a subject with no observation yet moves day 0 for that subject alone: the
lab grades of the frames before it are kept (:func:`same_lab_inputs`) and equal those graded
afresh; when the subject has observations (taken before day 0), they are graded again."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from celltrial.cohort import simulate
from celltrial.safety.analysis import derive_safety_inputs, grade_study_labs, same_lab_inputs
from celltrial.store.database import study_session
from celltrial.store.frames import first_infusions
from celltrial.store.loading import load_simulated_cohort
from celltrial.study import StudyFrames, init_study, read_study_frames
from celltrial.timeline import derive_study_day

#: The simulated studies' time zone.
ZONE = "Asia/Shanghai"
#: frame -> (time column, study-day column), as the readers derive them
STUDY_DAYS = {
    "observations": ("time", "study_day"),
    "adverse_events": ("onset", "onset_day"),
    "clinical_status": ("time", "study_day"),
    "imaging": ("time", "study_day"),
}


@pytest.fixture(scope="module", params=[5, 30], ids=lambda n: f"{n} subjects")
def study(request, tmp_path_factory):
    handle = init_study(tmp_path_factory.mktemp("day0") / "study", user="test")
    cohort = simulate(handle.protocol, request.param, seed=2020)
    with study_session(handle.engine, user="test", reason="test cohort") as session:
        load_simulated_cohort(session, handle.study_id, cohort)
    return handle.protocol, read_study_frames(handle)


def with_infusions(frames: StudyFrames, infusions: pd.DataFrame) -> StudyFrames:
    """``frames`` with these infusions: each subject's day 0 and every study day derived from
    them, as the readers derive them."""
    first = first_infusions(infusions)
    subjects = frames.subjects.assign(
        first_infusion=pd.to_datetime(
            first.reindex(frames.subjects["subject_id"]).to_numpy(), utc=True
        )
    )
    days = {
        name: derive_study_day(getattr(frames, name), first, ZONE, time_column=t, day_column=d)
        for name, (t, d) in STUDY_DAYS.items()
    }
    infusions = derive_study_day(
        infusions.reset_index(drop=True), first, ZONE, time_column="start_time"
    )
    return replace(frames, subjects=subjects, infusions=infusions, **days)


def untreated(frames: StudyFrames, code: str) -> StudyFrames:
    """``frames`` as they were before ``code``'s infusions: no day 0 for that subject, every
    study day derived from the others' first infusions (as the readers derive them)."""
    infusions = frames.infusions
    return with_infusions(frames, infusions[infusions["subject_id"] != code])


def without_observations(frames: StudyFrames, code: str) -> StudyFrames:
    observations = frames.observations
    kept = observations[observations["subject_id"] != code].reset_index(drop=True)
    return replace(frames, observations=kept)


@pytest.mark.parametrize("index", [0, -1])
def test_a_first_infusion_of_a_subject_without_observations_keeps_the_lab_grades(
    study, index
) -> None:
    protocol, frames = study
    assert protocol.study.timezone == "Asia/Shanghai"
    code = str(frames.subjects["subject_id"].iloc[index])
    after = without_observations(frames, code)
    before = untreated(after, code)
    assert not before.subjects.equals(after.subjects)  # day 0 moved
    assert same_lab_inputs(before, after)
    previous = derive_safety_inputs(protocol, before)
    kept = derive_safety_inputs(protocol, after, previous=previous, changed={"infusions"})
    assert kept[0] is previous[0]
    afresh = derive_safety_inputs(protocol, after)
    assert_frame_equal(kept[0], afresh[0])
    assert_frame_equal(kept[1], afresh[1])
    assert_frame_equal(grade_study_labs(protocol, before), afresh[0])


def test_a_first_infusion_of_a_subject_with_observations_grades_them_again(study) -> None:
    _, frames = study
    code = str(frames.subjects["subject_id"].iloc[0])
    before = untreated(frames, code)  # its observations before and after day 0
    assert not same_lab_inputs(before, frames)
    # only those before day 0 (nothing after yet): their study days move
    early = frames.observations["study_day"] < 0
    own = frames.observations["subject_id"] == code
    assert (own & early).any()
    pre = replace(frames, observations=frames.observations[~own | early].reset_index(drop=True))
    assert not same_lab_inputs(untreated(pre, code), pre)
    # no subject treated before: graded another way, never kept
    nobody = frames
    for other in frames.subjects["subject_id"].tolist():
        nobody = untreated(nobody, other)
    assert not same_lab_inputs(nobody, frames)
    # an observation of another subject changed: not kept either
    other = str(frames.subjects["subject_id"].iloc[1])
    after = without_observations(frames, code)
    values = after.observations.copy()
    row = values.index[(values["subject_id"] == other) & values["value"].notna()][0]
    values.loc[row, "value"] += 1
    assert not same_lab_inputs(untreated(after, code), replace(after, observations=values))


def test_a_first_infusion_moved_within_its_day_grades_again(study) -> None:
    """Day 0 a minute later keeps every study day but may move a value to the other side of the
    first infusion (baseline or not): graded again."""
    _, frames = study
    code = str(frames.subjects["subject_id"].iloc[0])
    infusions = frames.infusions.copy()
    first = infusions.index[(infusions["subject_id"] == code) & (infusions["number"] == 1)]
    infusions.loc[first, "start_time"] += pd.Timedelta(minutes=1)
    moved = replace(frames, infusions=infusions)
    assert moved.observations.equals(frames.observations)
    assert not same_lab_inputs(frames, moved)
