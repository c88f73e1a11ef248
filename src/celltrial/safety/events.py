"""Adverse events: checked against the controlled vocabulary and placed on the infusion timeline.

An event is infusion-related when its onset falls within the protocol's reaction window after the
start of an infusion (0 ≤ hours since start ≤ window); treatment-emergent when its onset is at or
after the first infusion. Time since the last infusion is kept for every event.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Any

import numpy as np
import pandas as pd
import yaml

from celltrial.errors import DataError
from celltrial.frames import check_columns

GRADES = (1, 2, 3, 4, 5)


@cache
def load_ae_vocabulary() -> dict[str, Any]:
    """Seriousness criteria, relatedness scale, outcomes and actions (``adverse_events.yaml``)."""
    text = files("celltrial.safety").joinpath("adverse_events.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def split_criteria(text: Any) -> list[str]:
    """Seriousness criteria written as one text, separated by ';'."""
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return []
    return [part.strip() for part in str(text).split(";") if part.strip()]


def check_adverse_events(events: pd.DataFrame, *, source: str = "adverse events") -> None:
    """Raise :class:`DataError` listing every row whose values break the AE rules.

    Rules: a term and an aware onset time; grade 1–5 when given; relatedness, outcome and action
    from the vocabulary; a serious event names at least one ICH E2A criterion and a non-serious
    one none; resolution not before onset; a fatal outcome is grade 5.
    """
    check_columns(events, ("subject_id", "term", "onset", "grade", "serious"), what=source)
    vocabulary = load_ae_vocabulary()
    problems: list[str] = []

    def bad(row: int, field: str, value: Any, expected: str) -> None:
        problems.append(f"row {row + 1}, {field}: {value!r} — expected {expected}")

    for row, event in enumerate(events.to_dict("records")):
        if not str(event.get("term") or "").strip():
            bad(row, "term", event.get("term"), "an adverse-event term")
        onset = event.get("onset")
        if onset is None or pd.isna(onset):
            bad(row, "onset", onset, "an onset date and time")
        elif getattr(onset, "tzinfo", None) is None:
            bad(row, "onset", onset, "a time with its time zone")
        grade = event.get("grade")
        if grade is not None and not pd.isna(grade) and grade not in GRADES:
            bad(row, "grade", grade, "a CTCAE grade 1–5")
        for field, allowed in (
            ("relatedness", vocabulary["relatedness"]),
            ("outcome", vocabulary["outcomes"]),
            ("action", vocabulary["actions"]),
        ):
            value = event.get(field)
            if value is not None and not pd.isna(value) and value not in allowed:
                bad(row, field, value, "one of " + ", ".join(allowed))
        criteria = split_criteria(event.get("serious_criteria"))
        unknown = [c for c in criteria if c not in vocabulary["serious_criteria"]]
        if unknown:
            bad(
                row,
                "serious_criteria",
                "; ".join(unknown),
                "ICH E2A criteria: " + ", ".join(vocabulary["serious_criteria"]),
            )
        serious = bool(event.get("serious")) if not pd.isna(event.get("serious")) else False
        if serious and not criteria:
            bad(
                row,
                "serious_criteria",
                event.get("serious_criteria"),
                "at least one criterion for a serious event",
            )
        if criteria and not serious:
            bad(row, "serious", event.get("serious"), "True when seriousness criteria are given")
        resolved = event.get("resolved")
        if (
            resolved is not None
            and not pd.isna(resolved)
            and onset is not None
            and not pd.isna(onset)
            and resolved < onset
        ):
            bad(row, "resolved", resolved, f"a time at or after onset {onset}")
        if (
            event.get("outcome") == "fatal"
            and grade is not None
            and not pd.isna(grade)
            and grade != 5
        ):
            bad(row, "grade", grade, "grade 5 for a fatal outcome")
    if problems:
        raise DataError(
            f"{source}: {len(problems)} problem(s):\n" + "\n".join(f"  - {p}" for p in problems)
        )


def derive_ae_timing(
    adverse_events: pd.DataFrame,
    infusions: pd.DataFrame,
    *,
    reaction_window_hours: float,
    follow_up_days: float | None = None,
) -> pd.DataFrame:
    """A copy of ``adverse_events`` with its place on the infusion timeline.

    Added columns: ``last_infusion`` (number of the latest infusion started at or before onset),
    ``hours_since_infusion``, ``infusion_related`` (onset within ``reaction_window_hours`` after
    that start), ``treatment_emergent`` (onset at or after the first infusion), ``related``
    (relatedness possibly/probably/definitely) and, with ``follow_up_days``, ``in_follow_up``.
    """
    out = adverse_events.copy()
    related = set(load_ae_vocabulary()["related"])
    out["related"] = out["relatedness"].isin(related) if "relatedness" in out else False
    starts = infusions.dropna(subset=["start_time"])[["subject_id", "number", "start_time"]]
    if out.empty:
        for column, dtype in (
            ("last_infusion", "Int64"),
            ("hours_since_infusion", float),
            ("infusion_related", bool),
            ("treatment_emergent", bool),
        ):
            out[column] = pd.Series(dtype=dtype)
        return out
    last, hours = _last_infusion(out, starts)
    out["last_infusion"] = last
    out["hours_since_infusion"] = hours
    out["infusion_related"] = hours <= reaction_window_hours
    onset = pd.to_datetime(out["onset"], utc=True).array
    first_of_subject = pd.to_datetime(starts.groupby("subject_id")["start_time"].min(), utc=True)
    first = pd.DatetimeIndex(first_of_subject.reindex(out["subject_id"]))
    out["treatment_emergent"] = (onset >= first) & ~pd.isna(first)
    if follow_up_days is not None:
        end = first + pd.Timedelta(days=follow_up_days)
        out["in_follow_up"] = out["treatment_emergent"] & (onset <= end)
    return out


def _last_infusion(
    adverse_events: pd.DataFrame, starts: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray]:
    """For each event: the number of its subject's latest infusion started at or before onset
    (from an ``Int64`` array) and the hours since that start (NaN when none)."""
    left = (
        adverse_events[["subject_id", "onset"]]
        .assign(_order=np.arange(len(adverse_events)))
        .sort_values("onset")
    )
    right = starts.sort_values("start_time").rename(columns={"number": "last_infusion"})
    # no infusion yet: an empty column of another type than the AEs' subject ids
    right["subject_id"] = right["subject_id"].astype(left["subject_id"].dtype)
    left["onset"] = pd.to_datetime(left["onset"], utc=True).astype("datetime64[ns, UTC]")
    right["start_time"] = right["start_time"].astype("datetime64[ns, UTC]")
    matched = pd.merge_asof(
        left, right, left_on="onset", right_on="start_time", by="subject_id", direction="backward"
    )
    matched = matched.iloc[np.argsort(matched["_order"].to_numpy())]
    hours = (matched["onset"] - matched["start_time"]).dt.total_seconds() / 3600.0
    return matched["last_infusion"].astype("Int64").to_numpy(), hours.to_numpy()
