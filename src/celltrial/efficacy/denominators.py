"""Who of the treated a headline counts, and why the others are missing from it.

"CRP fell in 4 of 4" hides the patients without a pair. A headline counts every treated subject
(one with a first infusion: the safety population) and says why each one without a pair is
missing, from the data, first reason that holds:

* died, or withdrew, on or before the last day of the visit window, with no value there;
* the window had not closed yet (the study is still running: today is on or before its last day);
* no baseline value (a value at the visit but none before the first infusion);
* no value at the visit (or neither).

Only the wording changes: tests and estimates stay on the pairs available.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from celltrial.protocol.schedule import subject_days


@dataclass(frozen=True)
class Denominator:
    """``treated`` subjects; ``missing``: (reason, count) for those not counted, in a fixed order
    (deaths, withdrawals, not yet reached, no baseline, no value)."""

    treated: int
    missing: tuple[tuple[str, int], ...] = ()

    @property
    def n_missing(self) -> int:
        return sum(count for _, count in self.missing)

    def describe(self) -> str:
        """The reasons in words: "1 died before Day 14; 1 had no Day 14 value" ("" if none)."""
        return "; ".join(f"{count} {reason}" for reason, count in self.missing)


def derive_follow_up_days(
    subjects: pd.DataFrame, *, today: pd.Timestamp, zone: str
) -> pd.DataFrame:
    """The treated subjects (a first infusion), indexed by subject_id, with the study day (float,
    NaN where none) of ``today`` and of their death (``died``) and withdrawal (``withdrawn``)."""
    frame = subjects.assign(subject_id=subjects["subject_id"].astype(str))
    for column in ("died", "withdrawn"):
        if column not in frame:
            frame[column] = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns, UTC]")
    treated = frame[frame["first_infusion"].notna()]
    if treated.empty:
        return pd.DataFrame(columns=["today", "died", "withdrawn"], dtype=float)
    return subject_days(treated, today, zone).astype(float)


def select_pair_rows(observations: pd.DataFrame) -> pd.Series:
    """Rows that pair with the baseline: scheduled (a nominal visit, not ``unscheduled``), after
    the baseline time, with a value and a baseline value (the rows of
    :func:`~celltrial.efficacy.changes.summarize_paired_changes` that have a value)."""
    keep = observations["visit"].notna() & observations["baseline"].notna()
    keep &= observations["value"].notna()
    keep &= (observations["time"] > observations["baseline_time"]).fillna(False).astype(bool)
    if "unscheduled" in observations.columns:
        keep &= ~observations["unscheduled"].fillna(False).astype(bool)
    return keep


def summarize_pair_denominator(
    rows: pd.DataFrame,
    follow_up: pd.DataFrame,
    *,
    test: str,
    visit: str,
    day: float,
    last_day: float,
) -> Denominator:
    """Every treated subject (``follow_up``: :func:`derive_follow_up_days`) against the
    baseline-vs-``visit`` pairs of ``test`` in ``rows`` (efficacy rows with nominal visits and
    baselines); ``day`` is the visit's nominal study day, ``last_day`` its window's last day."""
    part = rows[rows["test"] == test]
    ids = part["subject_id"].astype(str)
    at_visit = part["visit"].astype(object) == visit
    paired = set(ids[select_pair_rows(part) & at_visit])
    with_value = set(ids[at_visit & part["value"].notna()])
    with_baseline = set(ids[part["baseline"].notna()])
    treated = set(map(str, follow_up.index)) | paired
    days = follow_up.reindex(sorted(treated - paired))
    reasons: list[str] = []
    for subject, today, died, withdrawn in zip(
        days.index, days["today"], days["died"], days["withdrawn"], strict=True
    ):
        reasons.append(
            _pair_reason(
                subject in with_value,
                subject in with_baseline,
                today=today,
                died=died,
                withdrawn=withdrawn,
                visit=visit,
                day=day,
                last_day=last_day,
            )
        )
    return Denominator(len(treated), count_reasons(reasons, order=_pair_order(visit)))


def _pair_reason(
    has_value: bool,
    has_baseline: bool,
    *,
    today: float,
    died: float,
    withdrawn: float,
    visit: str,
    day: float,
    last_day: float,
) -> str:
    if not has_value:
        if died <= last_day:  # NaN compares false
            return f"died before {visit}" if died < day else f"died in the {visit} window"
        if withdrawn <= last_day:
            return (
                f"withdrew before {visit}" if withdrawn < day else f"withdrew in the {visit} window"
            )
        if not today > last_day:  # the window has not closed (or today unknown)
            return f"not yet at {visit}" if today < day else f"still in the {visit} window"
    if not has_baseline:
        return "had no baseline value" if has_value else f"had no baseline or {visit} value"
    return f"had no {visit} value"


def _pair_order(visit: str) -> tuple[str, ...]:
    return (
        f"died before {visit}",
        f"died in the {visit} window",
        f"withdrew before {visit}",
        f"withdrew in the {visit} window",
        f"not yet at {visit}",
        f"still in the {visit} window",
        "had no baseline value",
        f"had no {visit} value",
        f"had no baseline or {visit} value",
    )


def explain_unevaluable(
    subject: str, follow_up: pd.DataFrame | None, *, by_day: float
) -> str | None:
    """Why a subject with no value up to ``by_day`` (a responder rule's day) has none, when the
    data say: "withdrew by day 7", "not yet past day 7"; None otherwise."""
    if follow_up is None or subject not in follow_up.index:
        return None
    row = follow_up.loc[subject]
    if np.isfinite(row["withdrawn"]) and row["withdrawn"] <= by_day:
        return f"withdrew by day {by_day:g}"
    if np.isfinite(row["today"]) and row["today"] <= by_day:
        return f"not yet past day {by_day:g}"
    return None


def count_reasons(
    reasons: Iterable[str], *, order: Sequence[str] = ()
) -> tuple[tuple[str, int], ...]:
    """(reason, count): those in ``order`` first, in that order, then the rest alphabetically."""
    counts: dict[str, int] = {}
    for reason in reasons:
        counts[reason] = counts.get(reason, 0) + 1
    known = [r for r in order if r in counts]
    rest = sorted(r for r in counts if r not in order)
    return tuple((r, counts[r]) for r in (*known, *rest))
