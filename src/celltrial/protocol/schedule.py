"""Planned infusions and visits with their windows, and what each subject actually has done.

All arithmetic is in study days (calendar days in the study's time zone, day 0 = first infusion).
A window is inclusive at both ends: a visit on day 10 with window 1/1 accepts days 9, 10 and 11.

Statuses:
``done``           assessed inside the window
``out_of_window``  assessed, but only outside the window (nearest visit that lists the assessment)
``missed``         not assessed and the window has closed
``due``            not yet assessed and the window is open today
``upcoming``       the window has not opened yet
``not_expected``   the subject had died or withdrawn before the window opened
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import pandas as pd
from pandas.api.typing import DataFrameGroupBy

from celltrial.frames import same_columns
from celltrial.protocol.model import Protocol
from celltrial.timeline import compute_study_days

STATUSES = ("done", "out_of_window", "missed", "due", "upcoming", "not_expected")

VISIT_SUMMARY_COLUMNS = (
    "subject_id",
    "visit_index",
    "visit",
    "day",
    "status",
    "n_assessments",
    "n_done",
    "not_done",
)


@dataclass(frozen=True)
class Schedule:
    """Planned vs actual infusions and visits of every treated subject, as of one day.

    ``infusions`` is :func:`derive_infusion_status`, ``visit_assessments``
    :func:`derive_visit_status` and ``visits`` :func:`summarize_visits` of it (an empty frame with
    :data:`VISIT_SUMMARY_COLUMNS` when no subject has been treated).
    """

    infusions: pd.DataFrame
    visit_assessments: pd.DataFrame
    visits: pd.DataFrame


#: The study frames (:class:`~celltrial.study.StudyFrames` names) each part of the schedule is
#: derived from, besides the protocol and today.
SCHEDULE_INPUTS = {
    "infusions": frozenset({"subjects", "infusions"}),
    "visits": frozenset({"subjects", "observations", "clinical_status", "imaging"}),
}
#: The columns of the infusions the infusion status is derived from (a volume or a dose edited
#: leaves it as it was).
INFUSION_STATUS_COLUMNS = ("subject_id", "number", "start_time", "study_day", "lot_id")


def derive_schedule(
    protocol: Protocol,
    subjects: pd.DataFrame,
    infusions: pd.DataFrame,
    observations: pd.DataFrame,
    clinical_status: pd.DataFrame,
    imaging: pd.DataFrame,
    *,
    today: pd.Timestamp,
    previous: Schedule | None = None,
    changed: Collection[str] = (),
    infusions_before: pd.DataFrame | None = None,
) -> Schedule:
    """Infusion status, visit assessment status and the visit summary, each derived once.

    ``previous``: the schedule, as of the same ``today``, of frames that differ from these only
    in those named in ``changed``; a part derived from none of them is taken from it as it is.
    ``infusions_before``: the infusions ``previous`` was derived from; when only other columns
    than :data:`INFUSION_STATUS_COLUMNS` changed, the infusions count as unchanged for it.
    """
    changed = set(changed)
    if (
        "infusions" in changed
        and infusions_before is not None
        and same_columns(infusions_before, infusions, INFUSION_STATUS_COLUMNS)
    ):
        changed.discard("infusions")
    if previous is not None and not SCHEDULE_INPUTS["visits"] & changed:
        visit_status, visits = previous.visit_assessments, previous.visits
    else:
        visit_status = derive_visit_status(
            protocol, subjects, observations, clinical_status, imaging, today=today
        )
        visits = (
            summarize_visits(visit_status)
            if len(visit_status)
            else pd.DataFrame(columns=list(VISIT_SUMMARY_COLUMNS))
        )
    if previous is not None and not SCHEDULE_INPUTS["infusions"] & changed:
        infusion_status = previous.infusions
    else:
        infusion_status = derive_infusion_status(protocol, subjects, infusions, today=today)
    return Schedule(infusions=infusion_status, visit_assessments=visit_status, visits=visits)


def plan_visits(protocol: Protocol) -> pd.DataFrame:
    """One row per visit × assessment: visit, day, first_day, last_day, assessment."""
    rows = [
        {
            "visit": visit.name,
            "visit_index": index,
            "day": visit.day,
            "first_day": visit.first_day,
            "last_day": visit.last_day,
            "assessment": assessment,
        }
        for index, visit in enumerate(protocol.visits)
        for assessment in visit.assessments
    ]
    return pd.DataFrame(rows)


def plan_infusions(protocol: Protocol) -> pd.DataFrame:
    """One row per planned infusion: number, planned_day, first_day, last_day (window)."""
    window = protocol.regimen.infusion_window
    days = protocol.regimen.infusion_days
    return pd.DataFrame(
        {
            "number": range(1, len(days) + 1),
            "planned_day": days,
            "first_day": [d - window.early_days for d in days],
            "last_day": [d + window.late_days for d in days],
        }
    )


def subject_days(
    subjects: pd.DataFrame,
    today: pd.Timestamp,
    zone: str,
    ends: tuple[str, ...] = ("died", "withdrawn"),
) -> pd.DataFrame:
    """Study day of ``today`` and of each subject's ``ends`` columns, indexed by subject_id.

    Columns ``today`` and ``ends`` (nullable integers, missing for subjects without a first
    infusion or without that date), from a single :func:`compute_study_days` call.
    """
    columns = ("today", *ends)
    times = pd.concat(
        [pd.Series(today, index=subjects.index), *(subjects[c] for c in ends)], ignore_index=True
    )
    day0 = pd.concat([subjects["first_infusion"]] * len(columns), ignore_index=True)
    days = compute_study_days(times, day0, zone).array
    n = len(subjects)
    return pd.DataFrame(
        {column: days[i * n : (i + 1) * n] for i, column in enumerate(columns)},
        index=subjects["subject_id"].to_numpy(),
    )


def _today_and_end_days(
    grid: pd.DataFrame, treated: pd.DataFrame, today: pd.Timestamp, zone: str
) -> tuple[np.ndarray, np.ndarray]:
    """Per ``grid`` row: study day of ``today`` and of death or withdrawal, whichever came first.

    Floats, NaN where missing (so every comparison with a missing day is false).
    """
    days = subject_days(treated, today, zone).astype(float)
    per_row = days.reindex(grid["subject_id"].to_numpy())
    end = np.fmin(per_row["died"].to_numpy(), per_row["withdrawn"].to_numpy())
    return per_row["today"].to_numpy(), end


def split_by_code(codes: np.ndarray, values: np.ndarray, n_groups: int) -> list[list]:
    """``values`` of each group ``0 .. n_groups - 1`` (``codes`` aligned with ``values``; other
    codes are left out) as python lists, in their given order.

    One stable sort instead of a python call per group.
    """
    order = np.argsort(codes, kind="stable")
    items = values[order].tolist()
    bounds = np.searchsorted(codes[order], np.arange(n_groups + 1)).tolist()
    return [items[start:stop] for start, stop in pairwise(bounds)]


def group_lists(grouped: DataFrameGroupBy, values: pd.Series) -> list[list]:
    """``values`` (aligned with the grouped frame) of each group as python lists: what iterating
    the groups would give, groups in ``grouped``'s order and values in frame order."""
    return split_by_code(grouped.ngroup().to_numpy(), values.to_numpy(), grouped.ngroups)


def _assessment_days(
    observations: pd.DataFrame, clinical_status: pd.DataFrame, imaging: pd.DataFrame
) -> pd.DataFrame:
    """subject_id, assessment, study_day for every assessment that happened (deduplicated)."""
    parts = [
        observations[["subject_id", "test", "study_day"]].rename(columns={"test": "assessment"})
    ]
    if len(clinical_status):
        parts.append(
            clinical_status.loc[
                clinical_status["who_scale"].notna(), ["subject_id", "study_day"]
            ].assign(assessment="WHO")
        )
    if len(imaging):
        parts.append(imaging[["subject_id", "study_day"]].assign(assessment="CT"))
    done = pd.concat(parts, ignore_index=True).dropna(subset=["study_day"])
    done["study_day"] = done["study_day"].astype(int)
    return done.drop_duplicates()


def derive_visit_status(
    protocol: Protocol,
    subjects: pd.DataFrame,
    observations: pd.DataFrame,
    clinical_status: pd.DataFrame,
    imaging: pd.DataFrame,
    *,
    today: pd.Timestamp,
) -> pd.DataFrame:
    """Status of every planned visit assessment of every subject with a first infusion.

    Each assessment that happened is matched to the nearest visit that lists it (ties go to the
    earlier visit); a visit's assessment is ``done`` if a matched day lies in its window and
    ``out_of_window`` if matched days exist only outside it. Columns: subject_id, visit,
    visit_index, day, first_day, last_day, assessment, actual_days, status.
    """
    treated = subjects.dropna(subset=["first_infusion"])
    plan = plan_visits(protocol)
    grid = treated[["subject_id"]].merge(plan, how="cross")
    if grid.empty:
        return grid.assign(status=pd.Series(dtype=str), actual_days=pd.Series(dtype=object))
    done = _assessment_days(observations, clinical_status, imaging)
    has_match, any_in_window, actual_days = _match_grid(done, treated["subject_id"], plan)
    today_day, end_day = _today_and_end_days(grid, treated, today, protocol.study.timezone)
    first_day, last_day = grid["first_day"].to_numpy(), grid["last_day"].to_numpy()
    grid["actual_days"] = pd.Series(actual_days, index=grid.index, dtype=object)
    grid["status"] = np.select(
        [
            has_match & any_in_window,
            end_day < first_day,
            has_match,
            today_day > last_day,
            today_day >= first_day,
        ],
        ["done", "not_expected", "out_of_window", "missed", "due"],
        default="upcoming",
    )
    return grid.sort_values(["subject_id", "visit_index", "assessment"], kind="stable").reset_index(
        drop=True
    )


def _match_grid(
    done: pd.DataFrame, subject_ids: pd.Series, plan: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray, list[tuple]]:
    """Per row of the subject × ``plan`` grid (subject-major, the order of a cross merge):
    whether any day was matched to it, whether one of them lies in its window, and the sorted
    matched days. Days of other subjects and of assessments no visit lists are left out."""
    plan_row, in_window = _match_assessments(done, plan)
    subject = pd.Index(subject_ids).get_indexer(done["subject_id"])
    matched = (plan_row >= 0) & (subject >= 0)
    cell = np.where(matched, subject * len(plan) + plan_row, -1)
    size = len(subject_ids) * len(plan)
    has_match = np.bincount(cell[matched], minlength=size) > 0
    any_in_window = np.bincount(cell[matched], weights=in_window[matched], minlength=size) > 0
    days = done["study_day"].to_numpy()
    by_day = np.argsort(days, kind="stable")
    actual_days = [tuple(d) for d in split_by_code(cell[by_day], days[by_day], size)]
    return has_match, any_in_window, actual_days


def _match_assessments(done: pd.DataFrame, plan: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``done``: the position in ``plan`` of the visit assessment it is matched to
    (-1 when no visit lists the assessment) and whether its day lies in that visit's window."""
    days = done["study_day"].to_numpy()
    plan_row = np.full(len(done), -1)
    in_window = np.zeros(len(done), dtype=bool)
    codes, names = pd.factorize(done["assessment"])
    listings = _listings(plan)
    for name, rows in zip(
        names, split_by_code(codes, np.arange(len(done)), len(names)), strict=True
    ):
        if name not in listings:
            continue
        positions, nominal, first, last = listings[name]
        nearest = _match_visits(days[rows], nominal, first, last)
        plan_row[rows] = positions[nearest]
        in_window[rows] = (days[rows] >= first[nearest]) & (days[rows] <= last[nearest])
    return plan_row, in_window


def _listings(plan: pd.DataFrame) -> dict[str, tuple[np.ndarray, ...]]:
    """Per assessment, the visits listing it sorted by day: their positions in ``plan``, day,
    first_day and last_day arrays."""
    ordered = plan.reset_index(drop=True).assign(position=np.arange(len(plan)))
    ordered = ordered.sort_values("day", kind="stable")
    columns = [ordered[c].to_numpy() for c in ("position", "day", "first_day", "last_day")]
    assessments = ordered["assessment"].to_numpy()
    return {
        name: tuple(column[assessments == name] for column in columns)
        for name in dict.fromkeys(assessments)
    }


def _match_visits(
    observed: np.ndarray, days: np.ndarray, first: np.ndarray, last: np.ndarray
) -> np.ndarray:
    """Position (in visits sorted by nominal ``days``, windows ``first``..``last``) of the visit
    each observed day belongs to.

    A day inside a visit's window belongs to that visit (windows never overlap); any other day
    belongs to the nearest visit by nominal day, ties to the earlier one.
    """
    right = np.clip(np.searchsorted(days, observed, side="left"), 0, len(days) - 1)
    left = np.clip(right - 1, 0, len(days) - 1)
    use_left = np.abs(observed - days[left]) <= np.abs(observed - days[right])
    nearest = np.where(use_left, left, right)
    inside = (observed[:, None] >= first[None, :]) & (observed[:, None] <= last[None, :])
    return np.where(inside.any(axis=1), inside.argmax(axis=1), nearest)


def summarize_visits(visit_status: pd.DataFrame) -> pd.DataFrame:
    """One row per subject × visit: overall status and the assessments not done in window.

    A visit is ``done`` when every assessment was, ``partial`` when some were, otherwise the
    shared status of its assessments (``missed``, ``due``, ``upcoming``, ``not_expected``), and
    ``out_of_window`` when nothing was done in the window but something outside it.
    """
    keys = ["subject_id", "visit_index", "visit", "day"]
    flags = visit_status[keys].assign(
        **{name: visit_status["status"].eq(name) for name in STATUSES}
    )
    grouped = flags.groupby(keys, sort=True)
    counts = grouped[list(STATUSES)].sum()
    out = grouped.size().rename("n_assessments").reset_index()
    n_done = counts["done"].to_numpy()
    out.insert(
        len(keys),
        "status",
        np.select(
            [n_done == out["n_assessments"].to_numpy()]
            + [counts[name].to_numpy() > 0 for name in STATUSES],
            ["done", "partial", "out_of_window", "missed", "due", "upcoming", "not_expected"],
            default="upcoming",
        ),
    )
    out["n_done"] = n_done
    flagged = visit_status[visit_status["status"].isin(["missed", "out_of_window"])]
    by_visit = flagged.groupby(["subject_id", "visit_index"], sort=True)
    not_done = pd.Series(
        [", ".join(names) for names in group_lists(by_visit, flagged["assessment"])],
        index=by_visit.size().index,
        dtype="str",
        name="not_done",
    )
    out = out.merge(not_done.reset_index(), on=["subject_id", "visit_index"], how="left")
    out["not_done"] = out["not_done"].fillna("")
    return out


def derive_infusion_status(
    protocol: Protocol,
    subjects: pd.DataFrame,
    infusions: pd.DataFrame,
    *,
    today: pd.Timestamp,
) -> pd.DataFrame:
    """Planned vs actual infusion per subject: planned_day, actual_day, status, days_late.

    Status: ``on_time``, ``late``, ``early``, ``missed`` (window closed, not given), ``due``,
    ``upcoming`` or ``not_expected`` (died or withdrawn before its window).
    """
    treated = subjects.dropna(subset=["first_infusion"])
    plan = plan_infusions(protocol)
    grid = treated[["subject_id"]].merge(plan, how="cross")
    given = infusions.dropna(subset=["start_time"])[["subject_id", "number", "study_day", "lot_id"]]
    grid = grid.merge(
        given.rename(columns={"study_day": "actual_day"}), on=["subject_id", "number"], how="left"
    )
    today_day, end_day = _today_and_end_days(grid, treated, today, protocol.study.timezone)
    actual = grid["actual_day"]
    grid["status"] = np.select(
        [
            actual.notna() & (actual > grid["last_day"]),
            actual.notna() & (actual < grid["first_day"]),
            actual.notna(),
            end_day <= grid["last_day"],
            today_day > grid["last_day"],
            today_day >= grid["first_day"],
        ],
        ["late", "early", "on_time", "not_expected", "missed", "due"],
        default="upcoming",
    )
    grid["days_late"] = (actual - grid["planned_day"]).astype("Int64")
    return grid.reset_index(drop=True)
