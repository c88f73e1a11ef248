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

import numpy as np
import pandas as pd

from celltrial.protocol.model import Protocol
from celltrial.timeline import compute_study_days

STATUSES = ("done", "out_of_window", "missed", "due", "upcoming", "not_expected")


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


def subject_today(subjects: pd.DataFrame, today: pd.Timestamp, zone: str) -> pd.Series:
    """subject_id -> study day of ``today`` (missing for subjects without a first infusion)."""
    now = pd.Series([today] * len(subjects), index=subjects.index)
    days = compute_study_days(now, subjects["first_infusion"], zone)
    return pd.Series(days.to_numpy(), index=subjects["subject_id"].to_numpy())


def _end_day(subjects: pd.DataFrame, column: str, zone: str) -> pd.Series:
    days = compute_study_days(subjects[column], subjects["first_infusion"], zone)
    return pd.Series(days.to_numpy(), index=subjects["subject_id"].to_numpy())


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
    visit_index, day, first_day, last_day, assessment, status, actual_days.
    """
    zone = protocol.study.timezone
    treated = subjects.dropna(subset=["first_infusion"])
    plan = plan_visits(protocol)
    grid = treated[["subject_id"]].merge(plan, how="cross")
    if grid.empty:
        return grid.assign(status=pd.Series(dtype=str), actual_days=pd.Series(dtype=object))
    done = _assessment_days(observations, clinical_status, imaging)
    done = done[done["subject_id"].isin(treated["subject_id"])]

    # the listing visit whose window holds the day, else the nearest listing visit
    matched_parts = []
    for assessment, rows in done.groupby("assessment", sort=False):
        listing = plan[plan["assessment"] == assessment].sort_values("day")
        if listing.empty:
            continue
        matched_parts.append(
            rows.assign(
                visit_index=listing["visit_index"].to_numpy()[
                    _match_visits(rows["study_day"].to_numpy(), listing)
                ]
            )
        )
    if matched_parts:
        matched = pd.concat(matched_parts, ignore_index=True)
        matched = matched.merge(
            plan[["visit_index", "assessment", "first_day", "last_day"]],
            on=["visit_index", "assessment"],
        )
        matched["in_window"] = matched["study_day"].between(
            matched["first_day"], matched["last_day"]
        )
        summary = matched.groupby(["subject_id", "visit_index", "assessment"]).agg(
            any_in_window=("in_window", "any"),
            actual_days=("study_day", lambda s: tuple(sorted(set(s)))),
        )
        grid = grid.merge(
            summary.reset_index(), on=["subject_id", "visit_index", "assessment"], how="left"
        )
    else:
        grid["any_in_window"] = np.nan
        grid["actual_days"] = None

    today_day = grid["subject_id"].map(subject_today(treated, today, zone))
    end_day = pd.concat(
        [
            grid["subject_id"].map(_end_day(treated, "died", zone)),
            grid["subject_id"].map(_end_day(treated, "withdrawn", zone)),
        ],
        axis=1,
    ).min(axis=1)
    has_match = grid["any_in_window"].notna()
    status = np.select(
        [
            has_match & (grid["any_in_window"] == True),  # noqa: E712 - object column
            end_day.notna() & (end_day < grid["first_day"]),
            has_match,
            today_day > grid["last_day"],
            today_day >= grid["first_day"],
        ],
        ["done", "not_expected", "out_of_window", "missed", "due"],
        default="upcoming",
    )
    grid["status"] = status
    grid["actual_days"] = grid["actual_days"].apply(lambda v: v if isinstance(v, tuple) else ())
    return (
        grid.drop(columns=["any_in_window"])
        .sort_values(["subject_id", "visit_index", "assessment"], kind="stable")
        .reset_index(drop=True)
    )


def _match_visits(observed: np.ndarray, listing: pd.DataFrame) -> np.ndarray:
    """Row position in ``listing`` (sorted by day) of the visit each observed day belongs to.

    A day inside a visit's window belongs to that visit (windows never overlap); any other day
    belongs to the nearest visit by nominal day, ties to the earlier one.
    """
    days = listing["day"].to_numpy()
    first = listing["first_day"].to_numpy()
    last = listing["last_day"].to_numpy()
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

    def overall(statuses: pd.Series) -> str:
        values = set(statuses)
        if values == {"done"}:
            return "done"
        if "done" in values:
            return "partial"
        if "out_of_window" in values:
            return "out_of_window"
        for status in ("missed", "due", "upcoming", "not_expected"):
            if status in values:
                return status
        return "upcoming"

    grouped = visit_status.groupby(["subject_id", "visit_index", "visit", "day"], sort=True)
    out = grouped.agg(
        status=("status", overall),
        n_assessments=("status", "size"),
        n_done=("status", lambda s: int((s == "done").sum())),
    ).reset_index()
    not_done = (
        visit_status[visit_status["status"].isin(["missed", "out_of_window"])]
        .groupby(["subject_id", "visit_index"])["assessment"]
        .agg(lambda s: ", ".join(s))
        .rename("not_done")
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
    zone = protocol.study.timezone
    treated = subjects.dropna(subset=["first_infusion"])
    plan = plan_infusions(protocol)
    grid = treated[["subject_id"]].merge(plan, how="cross")
    given = infusions.dropna(subset=["start_time"])[["subject_id", "number", "study_day", "lot_id"]]
    grid = grid.merge(
        given.rename(columns={"study_day": "actual_day"}), on=["subject_id", "number"], how="left"
    )
    today_day = grid["subject_id"].map(subject_today(treated, today, zone))
    end_day = pd.concat(
        [
            grid["subject_id"].map(_end_day(treated, "died", zone)),
            grid["subject_id"].map(_end_day(treated, "withdrawn", zone)),
        ],
        axis=1,
    ).min(axis=1)
    actual = grid["actual_day"]
    grid["status"] = np.select(
        [
            actual.notna() & (actual > grid["last_day"]),
            actual.notna() & (actual < grid["first_day"]),
            actual.notna(),
            end_day.notna() & (end_day <= grid["last_day"]),
            today_day > grid["last_day"],
            today_day >= grid["first_day"],
        ],
        ["late", "early", "on_time", "not_expected", "missed", "due"],
        default="upcoming",
    )
    grid["days_late"] = (actual - grid["planned_day"]).astype("Int64")
    return grid.reset_index(drop=True)
