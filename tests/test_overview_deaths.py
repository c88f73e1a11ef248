"""Issue 27, deaths in the schedule: after a subject's death (or withdrawal) an assessment whose
window had not closed is "not expected", never a missed assessment or a protocol deviation; the
visits before it still count.

Reference protocol: visits Day 1 (1..1), Day 3 (3..3), Day 6 (6..6), Day 10 (9..11), Day 14
(12..16), Day 28 (25..31). A study of 3 simulated subjects (seed 2020) is loaded with S001 dying at
noon (local) on the day given and nothing recorded after its death; its Day 3 and Day 6 CRP are
removed, so that the missed CRP shows which visits still count.
"""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from celltrial.cohort import simulate
from celltrial.overview import derive_follow_up_end, summarize_study
from celltrial.store.database import study_session
from celltrial.store.loading import load_simulated_cohort
from celltrial.study import init_study, read_study_frames
from celltrial.timeline import compute_study_days, local_time

SUBJECT = "S001"
LATER = pd.Timestamp("2021-01-01", tz="UTC")  # every window has closed


def build(tmp_path, died_day: int):
    handle = init_study(tmp_path / f"died-{died_day}", user="test")
    zone = handle.protocol.study.timezone
    cohort = simulate(handle.protocol, 3, seed=2020)
    subjects = cohort.subjects.set_index("subject_id")
    assert pd.isna(subjects.loc[SUBJECT, "died"])  # a survivor made to die
    infusions = cohort.infusions
    day0 = infusions.loc[infusions["subject_id"] == SUBJECT, "start_time"].min()
    died = local_time(day0, died_day, 12.0, zone)
    subjects.loc[SUBJECT, ["died", "discharged"]] = [died, pd.NaT]

    def before_death(frame: pd.DataFrame, column: str) -> pd.DataFrame:
        after = (frame["subject_id"] == SUBJECT) & (frame[column] >= died)
        return frame[~after].reset_index(drop=True)

    observations = before_death(cohort.observations, "time")
    days = compute_study_days(observations["time"], pd.Series(day0, index=observations.index), zone)
    crp_removed = (
        (observations["subject_id"] == SUBJECT)
        & (observations["test"] == "CRP")
        & days.isin([3, 6]).to_numpy(dtype=bool)
    )
    cohort = dataclasses.replace(
        cohort,
        subjects=subjects.reset_index(),
        observations=observations[~crp_removed].reset_index(drop=True),
        clinical_status=before_death(cohort.clinical_status, "time"),
        imaging=before_death(cohort.imaging, "time"),
        adverse_events=before_death(cohort.adverse_events, "onset"),
        infusions=before_death(cohort.infusions, "start_time"),
    )
    with study_session(handle.engine, user="test", reason="test cohort") as session:
        load_simulated_cohort(session, handle.study_id, cohort)
    frames = read_study_frames(handle)
    return handle, frames, summarize_study(handle.protocol, frames, today=LATER)


def visit(overview, name: str) -> pd.Series:
    visits = overview.visits
    return visits[(visits["subject_id"] == SUBJECT) & (visits["visit"] == name)].iloc[0]


def crp(overview, name: str) -> str:
    rows = overview.visit_assessments
    found = rows[
        (rows["subject_id"] == SUBJECT) & (rows["visit"] == name) & (rows["assessment"] == "CRP")
    ]
    return found["status"].iloc[0]


def deviations(overview) -> pd.DataFrame:
    found = overview.deviations
    return found[found["subject_id"] == SUBJECT]


@pytest.fixture(scope="module")
def died_day_5(tmp_path_factory):
    return build(tmp_path_factory.mktemp("overview"), 5)


def test_visits_after_death_are_not_expected(died_day_5) -> None:
    _, _, overview = died_day_5
    for name in ("Day 6", "Day 10", "Day 14", "Day 28"):
        row = visit(overview, name)
        assert (row["status"], row["not_done"]) == ("not_expected", "(died day 5)"), name
    assessments = overview.visit_assessments
    after = assessments[(assessments["subject_id"] == SUBJECT) & (assessments["last_day"] >= 5)]
    assert set(after["status"]) == {"not_expected"}
    assert set(after["not_expected_reason"]) == {"died day 5"}


def test_they_are_no_deviations_but_the_visits_before_death_still_count(died_day_5) -> None:
    _, _, overview = died_day_5
    found = deviations(overview)
    visit_kinds = found[found["category"] == "visit"]
    assert (visit_kinds["study_day"] < 5).all()
    assert "Day 3: CRP not done" in set(found["what"])  # window 3..3 closed before day 5
    assert not found["what"].str.contains("Day 6|Day 10|Day 14|Day 28").any()
    assert crp(overview, "Day 3") == "missed" and crp(overview, "Day 6") == "not_expected"
    summary = overview.summary.set_index("subject_id")
    assert summary.loc[SUBJECT, "deviations"] == len(found)


@pytest.mark.parametrize(
    ("died_day", "day_6_crp", "day_6_deviation"),
    [
        (6, "not_expected", False),  # died on the window's last day: the window had not closed
        (7, "missed", True),  # died the day after it closed: a missed assessment
    ],
)
def test_the_boundary_is_the_window_s_last_day(tmp_path, died_day, day_6_crp, day_6_deviation):
    _, _, overview = build(tmp_path, died_day)
    assert crp(overview, "Day 6") == day_6_crp
    assert ("Day 6: CRP not done" in set(deviations(overview)["what"])) is day_6_deviation
    assert crp(overview, "Day 3") == "missed"
    if died_day == 6:
        # blood drawn on the morning of day 6, before death: the rest not expected
        row = visit(overview, "Day 6")
        assert row["status"] == "partial"
        assert row["not_done"] == "rest not expected (died day 6)"


def test_withdrawal_ends_follow_up_the_same_way(died_day_5) -> None:
    handle, frames, _ = died_day_5
    subjects = frames.subjects.copy()
    other = "S002"
    code = subjects["subject_id"] == other
    day0 = subjects.loc[code, "first_infusion"].iloc[0]
    withdrawn = local_time(day0, 9, 12.0, handle.protocol.study.timezone)
    subjects["withdrawn"] = subjects["withdrawn"].astype("datetime64[ns, UTC]")
    subjects.loc[code, "withdrawn"] = withdrawn

    def before(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[~((frame["subject_id"] == other) & (frame["time"] >= withdrawn))]

    frames = dataclasses.replace(
        frames,
        subjects=subjects,
        observations=before(frames.observations),
        clinical_status=before(frames.clinical_status),
        imaging=before(frames.imaging),
    )
    overview = summarize_study(handle.protocol, frames, today=LATER)
    visits = overview.visits[overview.visits["subject_id"] == other].set_index("visit")
    for name in ("Day 14", "Day 28"):
        assert visits.loc[name, "status"] == "not_expected"
        assert visits.loc[name, "not_done"] == "(withdrawn day 9)"
    # drawn on the morning of day 9, before withdrawal at noon: the rest not expected
    assert visits.loc["Day 10", "status"] == "partial"
    assert visits.loc["Day 10", "not_done"] == "rest not expected (withdrawn day 9)"
    found = overview.deviations
    late = found[(found["subject_id"] == other) & (found["category"] == "visit")]
    assert (late["study_day"] < 9).all()


def test_ending_follow_up_twice_changes_nothing(died_day_5) -> None:
    handle, frames, overview = died_day_5
    again = derive_follow_up_end(
        overview.schedule, frames.subjects, today=LATER, zone=handle.protocol.study.timezone
    )
    pd.testing.assert_frame_equal(again.visit_assessments, overview.visit_assessments)
    pd.testing.assert_frame_equal(again.visits, overview.visits)
