"""The safety analysis of a study: grade labs, time AEs, detect infusion signals, tabulate."""

from __future__ import annotations

from collections.abc import Collection

import pandas as pd

from celltrial.efficacy.baseline import select_baseline_rows
from celltrial.frames import put_subjects_in_place, same_columns
from celltrial.protocol import Protocol
from celltrial.safety.events import derive_ae_timing
from celltrial.safety.grading import derive_lab_grades
from celltrial.safety.signals import derive_infusion_signals
from celltrial.safety.tables import (
    SafetySummary,
    derive_first_infusion_flag,
    derive_lab_emergence,
    summarize_safety,
)
from celltrial.store.frames import first_infusions
from celltrial.study import StudyFrames

VITAL_TESTS = ("TEMP", "SPO2", "FIO2", "SYSBP", "HR")


def grade_study_labs(protocol: Protocol, frames: StudyFrames) -> pd.DataFrame:
    """Every observation with its CTCAE grades, ``after_first_infusion`` and whether each grade
    is a treatment-emergent abnormality (:func:`derive_lab_emergence`).

    Baseline-dependent rules compare later values with the subject's baseline value (the last
    value in the protocol's baseline window before the first infusion); values at or before the
    first infusion, the baseline among them, are graded against LLN/ULN, and subjects without a
    baseline value as if it had been normal (``conventions.yaml``)."""
    first = first_infusions(frames.infusions)
    observations = frames.observations
    if observations.empty or first.empty:
        graded = derive_lab_grades(observations.assign(after_first_infusion=False))
        return derive_lab_emergence(graded)
    is_baseline = select_baseline_rows(
        observations, first_infusion=first, window_days=protocol.baseline.window_days
    )
    baselines = observations.loc[
        is_baseline, ["subject_id", "test", "value", "ref_low", "ref_high"]
    ].rename(columns={"value": "baseline"})
    graded = derive_lab_grades(observations, baselines=baselines, first_infusion=first)
    return derive_lab_emergence(derive_first_infusion_flag(graded, first))


#: The study frames (:class:`~celltrial.study.StudyFrames` names) the lab grades and the
#: vital-sign signals are derived from (the grades use the infusions only for each day 0).
SAFETY_INPUTS = {
    "lab_grades": frozenset({"observations"}),
    "signals": frozenset({"observations", "infusions"}),
}
#: The columns of the infusions the signals are derived from (their windows start at each start).
SIGNAL_INFUSION_COLUMNS = ("subject_id", "number", "start_time")


def derive_safety_inputs(
    protocol: Protocol,
    frames: StudyFrames,
    *,
    previous: tuple[pd.DataFrame, pd.DataFrame] | None = None,
    changed: Collection[str] = (),
    infusions_before: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The lab grades and the infusion vital-sign signals: what the safety tables take from the
    frames besides the adverse events.

    ``previous``: those of frames that differ from these only in those named in ``changed`` and
    give every subject the same day 0 (or the lab grades' inputs alike, :func:`same_lab_inputs`);
    what is derived from none of them is taken as it is.
    ``infusions_before``: the infusions ``previous`` was derived from; when only other columns
    than :data:`SIGNAL_INFUSION_COLUMNS` changed (a volume edited), the infusions count as
    unchanged for the signals; when only the infusions changed, the signals of the subjects whose
    infusions start otherwise are derived again and put in place among the others' (kept).
    """
    changed = set(changed)
    if (
        "infusions" in changed
        and infusions_before is not None
        and same_columns(infusions_before, frames.infusions, SIGNAL_INFUSION_COLUMNS)
    ):
        changed.discard("infusions")
    if previous is not None and not SAFETY_INPUTS["lab_grades"] & changed:
        lab_grades = previous[0]
    else:
        lab_grades = grade_study_labs(protocol, frames)
    if previous is not None and not SAFETY_INPUTS["signals"] & changed:
        return lab_grades, previous[1]
    if previous is not None and changed == {"infusions"} and infusions_before is not None:
        # the observations as they were: the signals of the subjects whose infusion starts
        # changed are derived again, the others' kept
        codes = _subjects_with_other_starts(infusions_before, frames.infusions)
        if codes:
            signals = _with_signals_derived_again(protocol, frames, previous[1], codes)
            if signals is not None:
                return lab_grades, signals
    return lab_grades, _signals(protocol, frames.observations, frames.infusions)


def _signals(
    protocol: Protocol, observations: pd.DataFrame, infusions: pd.DataFrame
) -> pd.DataFrame:
    """The infusion vital-sign signals of these observations and infusions."""
    window = protocol.safety.infusion_reaction_window_hours
    vitals = observations.loc[
        observations["test"].isin(VITAL_TESTS), ["subject_id", "time", "test", "value", "unit"]
    ]
    return derive_infusion_signals(vitals, infusions, window_hours=window)


def _subjects_with_other_starts(before: pd.DataFrame, after: pd.DataFrame) -> set[str] | None:
    """The subjects whose infusions (number and start, :data:`SIGNAL_INFUSION_COLUMNS`) differ
    between the two frames; None when the columns' types differ (or are not times)."""
    columns = list(SIGNAL_INFUSION_COLUMNS)
    if not all(c in before.columns and c in after.columns for c in columns):
        return None
    if not before[columns].dtypes.equals(after[columns].dtypes):
        return None
    if not isinstance(after["start_time"].dtype, pd.DatetimeTZDtype):
        return None

    def starts(frame: pd.DataFrame) -> dict[str, list[tuple]]:
        rows: dict[str, list[tuple]] = {}
        times = frame["start_time"].array.asi8.tolist()  # (NaT: one integer, compared equal)
        for code, number, start in zip(frame["subject_id"], frame["number"], times, strict=True):
            rows.setdefault(code, []).append((number, start))
        return rows

    old, new = starts(before), starts(after)
    return {code for code in old.keys() | new.keys() if old.get(code) != new.get(code)}


def _with_signals_derived_again(
    protocol: Protocol, frames: StudyFrames, kept: pd.DataFrame, codes: set[str]
) -> pd.DataFrame | None:
    """The signals of ``frames``: those of subjects ``codes`` derived again from their own
    observations and infusions (a subject's signals are its own), the others' taken from
    ``kept`` as they are, in the order deriving all gives (by subject; each subject's rows as
    derived). None when that could not be exactly what deriving all gives: no rows on either
    side, or a column typed otherwise."""
    own = {
        name: frame[frame["subject_id"].isin(codes)]
        for name, frame in (("observations", frames.observations), ("infusions", frames.infusions))
    }
    derived = _signals(protocol, own["observations"], own["infusions"])
    return put_subjects_in_place(kept, derived, codes)


def same_lab_inputs(before: StudyFrames, after: StudyFrames) -> bool:
    """Whether :func:`grade_study_labs` reads the same of both frames: the same observations
    (their study days included) and the same day 0 of every subject with an observation, some
    subject having one in both. A first infusion of a subject with no observation yet (day 0
    moved for that subject alone) then leaves the lab grades as they were."""
    first_before = first_infusions(before.infusions)
    first_after = first_infusions(after.infusions)
    if first_before.empty or first_after.empty:
        return False  # (no day 0 at all is graded another way)
    observations = after.observations
    if not (observations is before.observations or observations.equals(before.observations)):
        return False
    observed = pd.Index(observations["subject_id"].dropna().unique())
    return first_before.dtype == first_after.dtype and first_before.reindex(observed).equals(
        first_after.reindex(observed)
    )


def same_safety_frames(before: StudyFrames, after: StudyFrames) -> bool:
    """Whether :func:`analyse_safety` reads the same of both frames besides the lab grades and
    the signals: the same subjects and adverse events (the same frames) and the same infusion
    starts (:data:`SIGNAL_INFUSION_COLUMNS`, which the AE timing reads too). An infusion's volume
    edited, or a new minute, then leaves the safety summary as it was."""
    return (
        before.subjects is after.subjects
        and before.adverse_events is after.adverse_events
        and same_columns(before.infusions, after.infusions, SIGNAL_INFUSION_COLUMNS)
    )


def analyse_safety(
    protocol: Protocol,
    frames: StudyFrames,
    *,
    inputs: tuple[pd.DataFrame, pd.DataFrame] | None = None,
    previous: SafetySummary | None = None,
) -> SafetySummary:
    """All safety tables of the study's own subjects (``inputs``: :func:`derive_safety_inputs` of
    these frames, if already made; ``previous``: a summary made from the same lab grades, whose
    lab tables are taken as they are).

    The safety population is the subjects who received any infusion (a first infusion time);
    subjects enrolled without one (registered from a lab file, say) are named apart."""
    window = protocol.safety.infusion_reaction_window_hours
    timed = derive_ae_timing(
        frames.adverse_events,
        frames.infusions,
        reaction_window_hours=window,
        follow_up_days=protocol.safety.ae_follow_up_days,
    )
    lab_grades, signals = derive_safety_inputs(protocol, frames) if inputs is None else inputs
    subjects = frames.subjects
    treated = subjects["first_infusion"].notna()
    return summarize_safety(
        subjects.loc[treated, "subject_id"].tolist(),
        timed,
        lab_grades=lab_grades,
        signals=signals,
        window_hours=window,
        lab_tables=(
            None
            if previous is None
            else (previous.shifts, previous.lab_toxicities, previous.lab_baseline_abnormalities)
        ),
        not_treated=subjects.loc[~treated, "subject_id"].tolist(),
    )
