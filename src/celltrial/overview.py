"""Where a study stands: cohort, infusions, visits and protocol deviations, as one result.

A subject's follow-up ends at death or withdrawal: an assessment not done whose window had not
closed by then (the end on or before its last day) is "not expected", never a missed assessment
and never a protocol deviation; the visit says why ("died day 14"). Assessments whose window
closed while the subject was still in the study count as before.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from celltrial.frames import put_subjects_in_place
from celltrial.protocol import Protocol
from celltrial.protocol.deviations import DeviationRows, derive_deviation_rows, order_deviations
from celltrial.protocol.schedule import Schedule, derive_schedule, subject_days, summarize_visits
from celltrial.study import StudyFrames


@dataclass(frozen=True)
class StudyOverview:
    """The state of a study as of ``today``.

    ``summary`` has one row per subject (infusions given, visits done, deviations, outcome);
    the other frames hold the detail the status command and the report show.
    """

    today: pd.Timestamp
    summary: pd.DataFrame
    subjects: pd.DataFrame
    infusions: pd.DataFrame
    visits: pd.DataFrame
    visit_assessments: pd.DataFrame
    deviations: pd.DataFrame
    n: int
    method: str = (
        "Study days are calendar days in the study time zone from each subject's first infusion "
        "(day 0). Windows are inclusive. An assessment is matched to the visit whose window holds "
        "it, else to the nearest visit listing it (ties to the earlier visit). After a subject's "
        "death or withdrawal, an assessment whose window had not closed is not expected (not a "
        "deviation)."
    )
    #: the deviations by source, for an update (see :func:`summarize_study`)
    deviation_rows: DeviationRows | None = field(default=None, repr=False, compare=False)
    #: subjects who received any infusion (``n`` counts every subject enrolled)
    n_treated: int | None = None

    @property
    def schedule(self) -> Schedule:
        return Schedule(self.infusions, self.visit_assessments, self.visits)


def summarize_study(
    protocol: Protocol,
    frames: StudyFrames,
    *,
    today: pd.Timestamp | None = None,
    previous: StudyOverview | None = None,
    changed: Collection[str] = (),
    moved: Collection[str] = (),
    infusions_before: pd.DataFrame | None = None,
) -> StudyOverview:
    """Schedule status and deviations of every study subject as of ``today`` (default: now).

    ``previous``: an update — the overview of frames that differ from these only in those named
    in ``changed`` (and give every subject the same day 0). It is brought up to date as of its own
    ``today``, or of ``today`` when that is on the same calendar day in the study's time zone
    (statuses and deviations count whole study days): the parts derived from unchanged frames
    only are taken from it as they are (``infusions_before``: the infusions it was made from; a
    volume or a dose edited keeps the infusion status, see
    :func:`~celltrial.protocol.schedule.derive_schedule`).
    ``moved``: the subjects whose day 0 moved (a first infusion given or its time edited), with
    ``previous`` of frames that differ from these only in those subjects' rows (``changed``
    empty): each part's rows of those subjects are derived again from their own rows and put
    in place among the other subjects' rows, taken as they are (each subject's schedule and
    deviations are its own); all is derived again when that cannot give exactly what deriving
    all would (see :func:`_with_subjects_derived_again`).
    """
    if previous is not None:
        if today is None:
            today = previous.today
        elif not same_study_date(today, previous.today, protocol.study.timezone):
            raise ValueError(
                "an update of an overview is as of that overview's today, or of a time on the "
                "same day"
            )
    elif today is None:
        today = pd.Timestamp.now(tz="UTC")
    reuse = previous is not None and previous.deviation_rows is not None
    again = None
    if moved:
        if reuse and not changed:
            again = _with_subjects_derived_again(protocol, frames, previous, set(moved), today)
        reuse = False  # (the previous overview's study days of those subjects are not these)
    if again is not None:
        schedule, rows = again
        return _overview(frames, today, schedule, rows)
    schedule = derive_schedule(
        protocol,
        frames.subjects,
        frames.infusions,
        frames.observations,
        frames.clinical_status,
        frames.imaging,
        today=today,
        previous=previous.schedule if reuse else None,
        changed=changed,
        infusions_before=infusions_before,
    )
    kept = previous is not None and reuse
    if not (kept and schedule.visit_assessments is previous.visit_assessments):
        # (a reused visit part of the previous overview has had it already)
        schedule = derive_follow_up_end(
            schedule, frames.subjects, today=today, zone=protocol.study.timezone
        )
    rows = derive_deviation_rows(
        protocol,
        subjects=frames.subjects,
        lots=frames.lots,
        infusions=frames.infusions,
        observations=frames.observations,
        clinical_status=frames.clinical_status,
        today=today,
        schedule=schedule,
        previous=previous.deviation_rows if reuse else None,
        changed=changed,
    )
    return _overview(frames, today, schedule, rows, previous if reuse else None)


def _overview(
    frames: StudyFrames,
    today: pd.Timestamp,
    schedule: Schedule,
    rows: DeviationRows,
    previous: StudyOverview | None = None,
) -> StudyOverview:
    """The overview of a study's ``schedule`` and deviation ``rows``: the per-subject summary.
    ``previous``: an overview whose parts made from the very same frames and rows are kept."""
    infusion_status, visits = schedule.infusions, schedule.visits
    kept = None if previous is None else previous.deviation_rows
    if kept is not None and all(
        getattr(rows, source) is getattr(kept, source) for source in ("infusion", "visit", "daily")
    ):
        deviations = previous.deviations  # (made from the same rows)
    else:
        deviations = order_deviations(rows)
    if (
        previous is not None
        and frames.subjects is previous.subjects
        and infusion_status is previous.infusions
        and visits is previous.visits
        and schedule.visit_assessments is previous.visit_assessments
        and deviations is previous.deviations
    ):
        return replace(previous, today=today, deviation_rows=rows)
    summary = frames.subjects[["subject_id", "sex", "age", "baseline_who_scale"]].copy()
    codes = summary["subject_id"].tolist()
    given = infusion_status["actual_day"].notna().to_numpy()
    summary["infusions"] = _counts(codes, infusion_status["subject_id"].to_numpy()[given])
    done = (visits["status"] == "done").to_numpy()
    summary["visits_complete"] = _counts(codes, visits["subject_id"].to_numpy()[done])
    summary["deviations"] = _counts(codes, deviations["subject_id"].to_numpy())
    summary["outcome"] = [
        "died" if pd.notna(d) else "discharged" if pd.notna(c) else "in hospital"
        for d, c in zip(frames.subjects["died"], frames.subjects["discharged"], strict=True)
    ]
    return StudyOverview(
        today=today,
        summary=summary,
        subjects=frames.subjects,
        infusions=infusion_status,
        visits=visits,
        visit_assessments=schedule.visit_assessments,
        deviations=deviations,
        n=len(frames.subjects),
        deviation_rows=rows,
        n_treated=int(frames.subjects["first_infusion"].notna().sum()),
    )


def _counts(codes: list[str], rows: np.ndarray) -> np.ndarray:
    """How many of ``rows`` (subject codes) each subject of ``codes`` has, as integers."""
    counts = Counter(rows.tolist())
    return np.array([counts.get(code, 0) for code in codes], dtype=int)


#: The frames with one subject's rows each (``subject_id``) a schedule is derived from.
_OWN_ROWS = ("subjects", "infusions", "observations", "clinical_status", "imaging")


def _with_subjects_derived_again(
    protocol: Protocol,
    frames: StudyFrames,
    previous: StudyOverview,
    codes: set[str],
    today: pd.Timestamp,
) -> tuple[Schedule, DeviationRows] | None:
    """The schedule and deviation rows of ``frames``: the rows of subjects ``codes`` derived
    again from their own rows (every subject's schedule and deviations are derived from its own
    rows alone, the lots' release checks from each lot alone), the other subjects' taken from
    ``previous`` as they are, each part in the order deriving all gives.

    None when the parts could not be put together exactly as deriving all would make them: no
    other subject's rows, none of those subjects', or a column whose type those subjects' rows
    would change (a value missing where none was, say).
    """
    subjects, before = frames.subjects, previous.deviation_rows
    if before is None or not subjects["subject_id"].is_unique:
        return None
    own = {name: _rows_of(getattr(frames, name), codes) for name in _OWN_ROWS}
    part = derive_schedule(
        protocol,
        own["subjects"],
        own["infusions"],
        own["observations"],
        own["clinical_status"],
        own["imaging"],
        today=today,
    )
    part = derive_follow_up_end(part, own["subjects"], today=today, zone=protocol.study.timezone)
    kept = previous.schedule
    position = pd.Index(subjects["subject_id"])
    infusions = put_subjects_in_place(kept.infusions, part.infusions, codes, position)
    assessments = put_subjects_in_place(kept.visit_assessments, part.visit_assessments, codes)
    visits = put_subjects_in_place(kept.visits, part.visits, codes)
    if infusions is None or assessments is None or visits is None:
        return None
    rows = derive_deviation_rows(
        protocol,
        subjects=own["subjects"],
        lots=frames.lots,
        infusions=own["infusions"],
        observations=own["observations"],
        clinical_status=own["clinical_status"],
        today=today,
        schedule=part,
    )
    # (deviations are put in order by subject first, each subject's rows in the order derived)
    merged = DeviationRows(
        *(
            [row for row in getattr(before, source) if row["subject_id"] not in codes]
            + getattr(rows, source)
            for source in ("infusion", "visit", "daily")
        )
    )
    return Schedule(infusions, assessments, visits), merged


def _rows_of(frame: pd.DataFrame, codes: set[str]) -> pd.DataFrame:
    """The rows of subjects ``codes``, in frame order, numbered from 0."""
    return frame[frame["subject_id"].isin(codes)].reset_index(drop=True)


def same_study_date(one: pd.Timestamp, other: pd.Timestamp, zone: str) -> bool:
    """Whether two aware times fall on the same calendar day in the study's time ``zone``."""
    return one == other or one.tz_convert(zone).date() == other.tz_convert(zone).date()


#: Statuses of an assessment not done that the end of a subject's follow-up makes not expected.
_NOT_DONE = ("missed", "due", "upcoming", "not_expected")


def derive_follow_up_end(
    schedule: Schedule, subjects: pd.DataFrame, *, today: pd.Timestamp, zone: str
) -> Schedule:
    """The schedule with follow-up ended at death or withdrawal (whichever came first).

    An assessment not done (missed, due, upcoming) whose window's last day is on or after the
    end's study day becomes ``not_expected``; ``visit_assessments`` gains ``not_expected_reason``
    ("died day 14", "withdrawn day 9"; empty otherwise) and the visits are summarised again, a
    visit whose assessments not done are not expected saying why in ``not_done``:
    "(died day 14)", or "rest not expected (died day 14)" beside assessments done. Assessments
    done or out of window, and those whose window closed before the end, are kept as they are.
    Applying it twice gives the same schedule.
    """
    assessments = schedule.visit_assessments
    if assessments.empty or subjects.empty:
        return schedule
    treated = subjects.dropna(subset=["first_infusion"])
    days = subject_days(treated, today, zone).astype(float)
    died, withdrawn = days["died"], days["withdrawn"]
    end = pd.concat([died, withdrawn], axis=1).min(axis=1)
    reason = pd.Series(
        [
            ""
            if pd.isna(e)
            else f"died day {int(d)}"
            if not pd.isna(d) and d == e
            else f"withdrawn day {int(w)}"
            for e, d, w in zip(end, died, withdrawn, strict=True)
        ],
        index=days.index,
        dtype=object,
    )
    end_of_row = end.reindex(assessments["subject_id"].to_numpy()).to_numpy()
    cut = assessments["status"].isin(_NOT_DONE).to_numpy() & (
        end_of_row <= assessments["last_day"].to_numpy(dtype=float)
    )
    out = assessments.copy()
    out["not_expected_reason"] = pd.Series("", index=out.index, dtype=object)
    if not cut.any():
        # every status as it was: the visits, summarised from them, are those given, their
        # not-done texts without a reason to add
        return Schedule(schedule.infusions, out, schedule.visits)
    out.loc[cut, "status"] = "not_expected"
    out.loc[cut, "not_expected_reason"] = reason.reindex(
        out.loc[cut, "subject_id"].to_numpy()
    ).to_numpy()
    visits = summarize_visits(out)
    why = (
        out[cut]
        .groupby(["subject_id", "visit_index"], sort=False)["not_expected_reason"]
        .first()
        .rename("_why")
        .reset_index()
    )
    visits = visits.merge(why, on=["subject_id", "visit_index"], how="left")
    notes = []
    for status, not_done, why_text in zip(
        visits["status"], visits["not_done"], visits["_why"], strict=True
    ):
        if not isinstance(why_text, str) or not why_text:
            notes.append(not_done)
        elif status == "not_expected":
            notes.append(f"({why_text})")
        else:
            rest = f"rest not expected ({why_text})"
            notes.append(f"{not_done}; {rest}" if not_done else rest)
    visits["not_done"] = pd.Series(notes, index=visits.index, dtype="str")
    return Schedule(schedule.infusions, out, visits.drop(columns="_why"))
