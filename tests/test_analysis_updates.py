"""Updating the analyses after a change of some frames gives what deriving them afresh gives.

The web app brings its analyses up to date after each write by re-deriving only the parts whose
frames changed (``previous``/``changed`` of :func:`summarize_study` and
:func:`derive_safety_inputs`). Each change below alters what the parts derived from the changed
frame show (checked, so that a part wrongly kept would be caught), and the update must equal the
analysis made from scratch.
"""

from __future__ import annotations

from dataclasses import fields, replace

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from celltrial.cohort import simulate
from celltrial.overview import StudyOverview, summarize_study
from celltrial.safety.analysis import analyse_safety, derive_safety_inputs, same_safety_frames
from celltrial.store.database import study_session
from celltrial.store.loading import load_simulated_cohort
from celltrial.study import StudyFrames, init_study, read_study_frames

OVERVIEW_PARTS = ("summary", "infusions", "visits", "visit_assessments", "deviations")
SAFETY_PARTS = (
    "summary",
    "by_term",
    "serious",
    "shifts",
    "lab_toxicities",
    "lab_baseline_abnormalities",
    "signals",
    "listing",
)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    handle = init_study(tmp_path_factory.mktemp("updates") / "study", user="test")
    cohort = simulate(handle.protocol, 10, seed=2020)
    with study_session(handle.engine, user="test", reason="test cohort") as session:
        load_simulated_cohort(session, handle.study_id, cohort)
    frames = read_study_frames(handle)
    # as of day 20 of the last subject treated: some visits done, some due, some missed
    today = frames.subjects["first_infusion"].max() + pd.Timedelta(days=20)
    return handle.protocol, frames, today


def _subject(frames: StudyFrames, index: int) -> str:
    return str(frames.subjects["subject_id"].iloc[index])


def _shift(frame: pd.DataFrame, rows: pd.Series, days: int, columns: tuple[str, ...]) -> None:
    for column in columns:
        frame.loc[rows, column] = frame.loc[rows, column] + pd.Timedelta(days=days)
    frame.loc[rows, "study_day"] = frame.loc[rows, "study_day"] + days


def change_infusions(frames: StudyFrames) -> StudyFrames:
    """Second infusion of one subject not given, the third of another two days late, a third's
    volume ten-fold (endotoxin dose) and a fourth's cells not recorded; day 0 stays."""
    infusions = frames.infusions.copy()
    a, b, c, d = (_subject(frames, i) for i in range(4))
    infusions = infusions[~((infusions["subject_id"] == a) & (infusions["number"] == 2))]
    late = (infusions["subject_id"] == b) & (infusions["number"] == 3)
    _shift(infusions, late, 2, ("start_time", "end_time"))
    infusions.loc[infusions["subject_id"] == c, "volume_ml"] *= 10
    infusions.loc[(infusions["subject_id"] == d) & (infusions["number"] == 2), "cells_given"] = None
    return replace(frames, infusions=infusions.reset_index(drop=True))


def change_observations(frames: StudyFrames) -> StudyFrames:
    """One subject's observations after day 5 gone, another's platelets at grade 4 on day 7,
    a third's temperatures an hour after each infusion at 39.5 °C."""
    obs = frames.observations.copy()
    a, b, c = (_subject(frames, i) for i in range(3))
    obs = obs[~((obs["subject_id"] == a) & (obs["study_day"] > 5))]
    platelets = obs.index[
        (obs["subject_id"] == b) & (obs["test"] == "PLAT") & (obs["study_day"] > 3)
    ]
    obs.loc[platelets[:1], "value"] = 10.0  # 10 × 10⁹/L: grade 4
    fever = []
    for row in frames.infusions[frames.infusions["subject_id"] == c].itertuples():
        fever.append(
            {
                "subject_id": c,
                "time": row.start_time + pd.Timedelta(hours=1),
                "study_day": row.study_day,
                "test": "TEMP",
                "value": 39.5,
                "unit": "degC",
            }
        )
    obs = pd.concat([obs, pd.DataFrame(fever)], ignore_index=True)
    obs = obs.astype({c: t for c, t in frames.observations.dtypes.items()})
    return replace(frames, observations=obs.sort_values(["subject_id", "time"], kind="stable"))


def change_clinical_status(frames: StudyFrames) -> StudyFrames:
    status = frames.clinical_status
    gone = (status["subject_id"] == _subject(frames, 0)) & status["study_day"].between(3, 9)
    return replace(frames, clinical_status=status[~gone].reset_index(drop=True))


def change_imaging(frames: StudyFrames) -> StudyFrames:
    imaging = frames.imaging
    gone = imaging["subject_id"].isin([_subject(frames, 0), _subject(frames, 1)])
    return replace(frames, imaging=imaging[~gone].reset_index(drop=True))


def change_lots(frames: StudyFrames) -> StudyFrames:
    lots = frames.lots.copy()
    lots.loc[lots.index[0], "release_status"] = "quarantined"
    lots.loc[lots.index[1], "endotoxin_eu_per_ml"] = 40.0
    return replace(frames, lots=lots)


def change_adverse_events(frames: StudyFrames) -> StudyFrames:
    events = frames.adverse_events
    first = frames.infusions.sort_values("start_time").iloc[0]
    extra = events.iloc[:1].copy() if len(events) else pd.DataFrame(columns=events.columns)
    extra = extra.assign(
        subject_id=first.subject_id,
        term="Anaphylaxis",
        onset=first.start_time + pd.Timedelta(minutes=20),
        onset_day=0,
        grade=4,
        serious=True,
    )
    return replace(frames, adverse_events=pd.concat([events, extra], ignore_index=True))


CHANGES = {
    "infusions": change_infusions,
    "observations": change_observations,
    "clinical_status": change_clinical_status,
    "imaging": change_imaging,
    "lots": change_lots,
    "adverse_events": change_adverse_events,
}
#: The overview parts each change must alter (so that keeping them would be caught).
ALTERS = {
    "infusions": {"infusions", "deviations", "summary"},
    "observations": {"visit_assessments", "visits", "deviations"},
    "clinical_status": {"visit_assessments", "deviations"},
    "imaging": {"visit_assessments", "deviations"},
    "lots": {"deviations"},
    "adverse_events": set(),
}


def _differs(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    try:
        assert_frame_equal(a, b)
    except AssertionError:
        return True
    return False


def _assert_same_overview(got: StudyOverview, expected: StudyOverview) -> None:
    assert got.today == expected.today
    for part in OVERVIEW_PARTS:
        assert_frame_equal(getattr(got, part), getattr(expected, part), obj=part)


@pytest.mark.parametrize(
    "names",
    [{name} for name in CHANGES] + [{"infusions", "observations"}, {"lots", "clinical_status"}],
    ids=lambda names: "+".join(sorted(names)),
)
def test_an_updated_overview_equals_one_derived_afresh(study, names) -> None:
    protocol, frames, today = study
    before = summarize_study(protocol, frames, today=today)
    changed = frames
    for name in sorted(names):
        changed = CHANGES[name](changed)
    afresh = summarize_study(protocol, changed, today=today)
    for name in names:
        for part in ALTERS[name]:
            assert _differs(getattr(afresh, part), getattr(before, part)), (name, part)
    updated = summarize_study(protocol, changed, previous=before, changed=names)
    _assert_same_overview(updated, afresh)
    # and so on: an update of an update
    again = summarize_study(protocol, frames, previous=updated, changed=names)
    _assert_same_overview(again, before)


def test_an_update_keeps_what_its_changes_do_not_touch(study) -> None:
    protocol, frames, today = study
    before = summarize_study(protocol, frames, today=today)
    events = summarize_study(
        protocol, change_adverse_events(frames), previous=before, changed={"adverse_events"}
    )
    assert events.visit_assessments is before.visit_assessments
    assert events.infusions is before.infusions
    # (made from the same frames and rows: the deviations and the summary kept too)
    assert events.deviations is before.deviations and events.summary is before.summary
    infusions = summarize_study(
        protocol, change_infusions(frames), previous=before, changed={"infusions"}
    )
    assert infusions.visit_assessments is before.visit_assessments
    assert infusions.deviation_rows.daily is before.deviation_rows.daily
    assert infusions.infusions is not before.infusions
    assert infusions.summary is not before.summary
    with pytest.raises(ValueError, match="as of that overview's today"):
        summarize_study(protocol, frames, today=today + pd.Timedelta(days=1), previous=before)


@pytest.mark.parametrize("names", [set(), {"infusions"}, {"observations"}, {"adverse_events"}])
def test_an_update_as_of_a_later_time_of_the_same_day_equals_one_derived_afresh(
    study, names
) -> None:
    """The web app's analyses after a new minute: statuses and deviations count whole study
    days, so an overview of the day's first minute brought up to its last minute (in the study's
    time zone) equals the one derived afresh then; the next day's differs."""
    protocol, frames, today = study
    zone = protocol.study.timezone
    midnight = today.tz_convert(zone).normalize()
    first, last = midnight + pd.Timedelta(minutes=1), midnight + pd.Timedelta(hours=23, minutes=59)
    before = summarize_study(protocol, frames, today=first.tz_convert("UTC"))
    changed = frames
    for name in sorted(names):
        changed = CHANGES[name](changed)
    later = last.tz_convert("UTC")
    afresh = summarize_study(protocol, changed, today=later)
    updated = summarize_study(protocol, changed, today=later, previous=before, changed=names)
    assert updated.today == later
    _assert_same_overview(updated, afresh)
    if not names:  # nothing changed: everything of the day's first minute is kept
        assert updated.visit_assessments is before.visit_assessments
        assert updated.deviation_rows.daily is before.deviation_rows.daily
    next_day = summarize_study(protocol, frames, today=later + pd.Timedelta(minutes=2))
    assert _differs(next_day.visit_assessments, before.visit_assessments)
    with pytest.raises(ValueError, match="as of that overview's today"):
        summarize_study(protocol, frames, today=later + pd.Timedelta(minutes=2), previous=before)


@pytest.mark.parametrize("names", [{name} for name in CHANGES], ids=lambda n: "+".join(n))
def test_updated_safety_inputs_and_tables_equal_those_derived_afresh(study, names) -> None:
    protocol, frames, _ = study
    before_inputs = derive_safety_inputs(protocol, frames)
    before = analyse_safety(protocol, frames, inputs=before_inputs)
    changed = CHANGES[next(iter(names))](frames)
    afresh_inputs = derive_safety_inputs(protocol, changed)
    afresh = analyse_safety(protocol, changed, inputs=afresh_inputs)
    inputs = derive_safety_inputs(protocol, changed, previous=before_inputs, changed=names)
    for got, expected, what in zip(inputs, afresh_inputs, ("lab grades", "signals"), strict=True):
        assert_frame_equal(got, expected, obj=what)
    kept_grades = inputs[0] is before_inputs[0]
    assert kept_grades == ("observations" not in names)
    summary = analyse_safety(
        protocol, changed, inputs=inputs, previous=before if kept_grades else None
    )
    for part in SAFETY_PARTS:
        assert_frame_equal(getattr(summary, part), getattr(afresh, part), obj=part)
    if "observations" in names:  # the change reaches the grades, the signals and the tables
        for got, old in zip(afresh_inputs, before_inputs, strict=True):
            assert _differs(got, old)
        assert _differs(afresh.lab_toxicities, before.lab_toxicities)
    if "infusions" in names:
        assert _differs(afresh_inputs[1], before_inputs[1])


def test_every_frame_has_a_change(study) -> None:
    _, frames, _ = study
    assert set(CHANGES) == {f.name for f in fields(frames)} - {"subjects"}


def test_signals_are_kept_when_no_infusion_start_changed(study) -> None:
    """An infusion's volume or dose edited leaves every signal window where it was: the signals
    are kept (the web app's commonest edit); a start moved derives them again."""
    protocol, frames, _ = study
    before = derive_safety_inputs(protocol, frames)
    infusions = frames.infusions.assign(
        volume_ml=frames.infusions["volume_ml"] * 10, cells_given=None
    )
    for edited, kept in ((infusions, True), (change_infusions(frames).infusions, False)):
        changed = replace(frames, infusions=edited)
        inputs = derive_safety_inputs(
            protocol,
            changed,
            previous=before,
            changed={"infusions"},
            infusions_before=frames.infusions,
        )
        assert (inputs[1] is before[1]) == kept
        assert_frame_equal(inputs[1], derive_safety_inputs(protocol, changed)[1])
    # without the infusions they were derived from, the signals are derived again
    inputs = derive_safety_inputs(
        protocol, replace(frames, infusions=infusions), previous=before, changed={"infusions"}
    )
    assert inputs[1] is not before[1]


def test_the_safety_summary_is_kept_when_nothing_it_reads_changed(study) -> None:
    """A volume or dose edited (or only the clock moved) leaves what the safety analysis reads
    as it was: the summary made afresh equals the previous one, field by field; a start moved
    or an adverse event changed is seen."""
    protocol, frames, _ = study
    before = analyse_safety(protocol, frames)
    volumes = frames.infusions.assign(
        volume_ml=frames.infusions["volume_ml"] * 10, cells_given=None
    )
    edited = replace(frames, infusions=volumes)
    assert same_safety_frames(frames, edited)
    afresh = analyse_safety(protocol, edited)
    for part in fields(before):
        got, expected = getattr(afresh, part.name), getattr(before, part.name)
        if isinstance(expected, pd.DataFrame):
            assert_frame_equal(got, expected, obj=part.name)
        else:
            assert got == expected, part.name
    assert not same_safety_frames(frames, change_infusions(frames))
    assert not same_safety_frames(frames, change_adverse_events(frames))


def test_the_infusion_status_is_kept_when_no_column_it_reads_changed(study) -> None:
    """A volume or a dose edited leaves the infusion status as it was: it is kept, and the
    infusion deviations are derived again (a dose no longer recorded shows); a lot
    changed or a start moved derives the status again."""
    protocol, frames, today = study
    before = summarize_study(protocol, frames, today=today)
    first = frames.infusions.index[0]
    dose = frames.infusions.copy()
    dose.loc[first, "cells_given"] = None
    dose["volume_ml"] = dose["volume_ml"] * 10
    lot = frames.infusions.copy()
    other = [code for code in frames.lots["lot_id"] if code != lot.loc[first, "lot_id"]]
    lot.loc[first, "lot_id"] = other[0]
    for edited, kept in ((dose, True), (lot, False), (change_infusions(frames).infusions, False)):
        changed = replace(frames, infusions=edited)
        afresh = summarize_study(protocol, changed, today=today)
        updated = summarize_study(
            protocol,
            changed,
            previous=before,
            changed={"infusions"},
            infusions_before=frames.infusions,
        )
        assert (updated.infusions is before.infusions) == kept
        _assert_same_overview(updated, afresh)
        if kept:  # (the deviations derived again, not kept)
            assert _differs(afresh.deviations, before.deviations)
        else:
            assert _differs(afresh.infusions, before.infusions)
    # without the infusions it was made from, the status is derived again
    changed = replace(frames, infusions=dose)
    updated = summarize_study(protocol, changed, previous=before, changed={"infusions"})
    assert updated.infusions is not before.infusions
    _assert_same_overview(updated, summarize_study(protocol, changed, today=today))
