"""Adverse events: checked against the controlled vocabulary and placed on the infusion timeline.

An event is infusion-related when its onset falls within the protocol's reaction window after the
start of an infusion (0 ≤ hours since start ≤ window); treatment-emergent when its onset is at or
after the first infusion. Time since the last infusion is kept for every event.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
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


@dataclass(frozen=True)
class AEProblem:
    """One problem of an adverse event: where (the file's row, header = line 1, or None for a
    single event entered by hand), the field, and what is wrong and what was expected."""

    row: int | None
    field: str
    text: str

    def __str__(self) -> str:
        where = self.field if self.row is None else f"row {self.row}, {self.field}"
        return f"{where}: {self.text}"


def show_value(value: Any, *, zone: str | None = None) -> str:
    """A field's value as a person reads it: text quoted, times to the minute in the study's
    time zone (labelled), "empty" for nothing."""
    if _empty(value):
        return "empty"
    if isinstance(value, datetime):
        return show_time(value, zone=zone)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return f"'{value}'"
    return str(value)


def _empty(value: Any) -> bool:
    if value is None or isinstance(value, bool):
        return value is None
    if isinstance(value, str):
        return not value.strip()
    missing = pd.isna(value)
    return bool(missing) if isinstance(missing, bool | np.bool_) else False


def show_time(value: datetime, *, zone: str | None = None) -> str:
    """ "2020-02-12 14:00 (Asia/Shanghai)"; with no zone, UTC with its offset."""
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is None:
        return stamp.strftime("%Y-%m-%d %H:%M")
    if zone is None:
        return stamp.tz_convert("UTC").isoformat("T", "minutes")
    return f"{stamp.tz_convert(zone).strftime('%Y-%m-%d %H:%M')} ({zone})"


def adverse_event_problems(
    events: pd.DataFrame,
    *,
    rows: Sequence[int] | None = None,
    subjects: pd.DataFrame | None = None,
    now: datetime | None = None,
    zone: str | None = None,
    death_rules: bool = False,
) -> list[AEProblem]:
    """Every problem of every event (see :func:`check_adverse_events` for the rules).

    ``rows``: each event's row in its file (header = line 1); without, a single event has none
    and several are numbered from 1. ``subjects`` (index: subject code; columns ``enrolled``,
    ``first_infusion``, ``died``, aware or NaT) adds the subject and timing rules; ``now`` (aware)
    the rule against onsets in the future. ``death_rules`` (an event entered by hand) adds the
    rules of :mod:`celltrial.safety.deaths` that a stored event is only listed for: a grade 5
    event is serious and its outcome is fatal (an empty outcome too).
    """
    check_columns(events, ("subject_id", "term", "onset", "grade", "serious"), what="events")
    vocabulary = load_ae_vocabulary()
    problems: list[AEProblem] = []
    if rows is None:
        rows = [None] if len(events) == 1 else list(range(1, len(events) + 1))

    def bad(index: int, field: str, value: Any, expected: str, *, shown: str | None = None) -> None:
        shown = show_value(value, zone=zone) if shown is None else shown
        problems.append(AEProblem(rows[index], field, f"{shown} — expected {expected}"))

    for index, event in enumerate(events.to_dict("records")):
        if not str(event.get("term") or "").strip():
            bad(index, "term", event.get("term"), "an adverse-event term")
        onset = event.get("onset")
        if onset is None or pd.isna(onset):
            bad(index, "onset", onset, "an onset date and time")
            onset = None
        elif getattr(onset, "tzinfo", None) is None:
            bad(index, "onset", onset, "a time with its time zone")
            onset = None
        grade = event.get("grade")
        if grade is not None and not pd.isna(grade) and grade not in GRADES:
            bad(index, "grade", grade, "a CTCAE grade 1–5")
        for field, allowed in (
            ("relatedness", vocabulary["relatedness"]),
            ("outcome", vocabulary["outcomes"]),
            ("action", vocabulary["actions"]),
        ):
            value = event.get(field)
            if value is not None and not pd.isna(value) and value not in allowed:
                bad(index, field, value, "one of " + ", ".join(allowed))
        criteria = split_criteria(event.get("serious_criteria"))
        unknown = [c for c in criteria if c not in vocabulary["serious_criteria"]]
        if unknown:
            bad(
                index,
                "serious_criteria",
                "; ".join(unknown),
                "ICH E2A criteria: " + ", ".join(vocabulary["serious_criteria"]),
            )
        serious = bool(event.get("serious")) if not pd.isna(event.get("serious")) else False
        if serious and not criteria:
            bad(
                index,
                "serious_criteria",
                event.get("serious_criteria"),
                "at least one criterion for a serious event",
            )
        if criteria and not serious:
            bad(index, "serious", event.get("serious"), "yes when seriousness criteria are given")
        resolved = event.get("resolved")
        if (
            resolved is not None
            and not pd.isna(resolved)
            and onset is not None
            and resolved < onset
        ):
            bad(
                index,
                "resolved",
                resolved,
                f"a time at or after onset {show_time(onset, zone=zone)}",
            )
        deaths = vocabulary["deaths"]
        if (
            event.get("outcome") == deaths["fatal_outcome"]
            and grade is not None
            and not pd.isna(grade)
            and grade != deaths["fatal_grade"]
        ):
            bad(index, "grade", grade, f"grade {deaths['fatal_grade']} for a fatal outcome")
        if death_rules:
            problems += _death_problems(rows[index], event, grade)
        if subjects is not None:
            _subject_problems(index, event, onset, subjects, bad, zone=zone)
        if now is not None and onset is not None and onset > now:
            bad(index, "onset", onset, f"a time that has passed (now: {show_time(now, zone=zone)})")
    return problems


def _death_problems(row: int | None, event: dict, grade: Any) -> list[AEProblem]:
    """The rules of a grade 5 event (:func:`celltrial.safety.deaths.load_death_rules`: what is
    wrong and what to fix, as data): serious, and fatal."""
    from celltrial.safety.deaths import load_death_rules  # deaths builds on this module

    rules = load_death_rules()
    if grade is None or pd.isna(grade) or grade != rules.fatal_grade:
        return []
    found = []
    serious = event.get("serious")
    if serious is None or pd.isna(serious) or not serious:
        text = rules.rules["grade_5_not_serious"]
        found.append(AEProblem(row, "serious", f"{text['problem']}: {text['fix']}"))
    outcome = event.get("outcome")
    if outcome != rules.fatal_outcome:
        text = rules.rules["grade_5_not_fatal"]
        shown = "not given" if _empty(outcome) else str(outcome)
        problem = text["problem"].format(outcome=shown)
        found.append(AEProblem(row, "outcome", f"{problem}: {text['fix']}"))
    return found


def _subject_problems(
    index: int, event: dict, onset: Any, subjects: pd.DataFrame, bad, *, zone: str | None
) -> None:
    """The subject is one of the study's, and the onset falls in the subject's time in it:
    not before enrolment (or, without an enrolment date, the first infusion), not after death."""
    code = event.get("subject_id")
    if code is None or (not isinstance(code, str) and pd.isna(code)) or not str(code).strip():
        bad(index, "subject_id", code, "a subject ID")
        return
    if code not in subjects.index:
        known = sorted(map(str, subjects.index))
        listed = ", ".join(known[:10]) + (f" and {len(known) - 10} more" if len(known) > 10 else "")
        expected = f"a subject of the study (known: {listed or 'none'})"
        bad(index, "subject_id", code, expected, shown=f"unknown subject '{code}'")
        return
    if onset is None:
        return
    dates = subjects.loc[code]
    enrolled, first, died = (dates.get(c) for c in ("enrolled", "first_infusion", "died"))
    if enrolled is not None and not pd.isna(enrolled):
        if onset < enrolled:
            bad(
                index,
                "onset",
                onset,
                f"a time at or after subject {code}'s enrolment, {show_time(enrolled, zone=zone)} "
                "(an event before enrolment is medical history; or is the date wrong?)",
            )
    elif first is not None and not pd.isna(first) and onset < first:
        bad(
            index,
            "onset",
            onset,
            f"a time at or after subject {code}'s first infusion, {show_time(first, zone=zone)}: "
            "the subject has no enrolment date to accept an earlier event against (record it "
            "first, or correct the date)",
        )
    if died is not None and not pd.isna(died) and onset > died:
        bad(
            index,
            "onset",
            onset,
            f"a time at or before subject {code}'s death, {show_time(died, zone=zone)}",
        )


def check_adverse_events(
    events: pd.DataFrame,
    *,
    source: str = "adverse events",
    rows: Sequence[int] | None = None,
    subjects: pd.DataFrame | None = None,
    now: datetime | None = None,
    zone: str | None = None,
) -> None:
    """Raise :class:`DataError` listing every problem of every event at once, each naming its
    row (``rows``: the file's lines, header = line 1) and field.

    Rules: a term and an aware onset time; grade 1–5 when given; relatedness, outcome and action
    from the vocabulary; a serious event names at least one ICH E2A criterion and a non-serious
    one none; resolution not before onset; a fatal outcome is grade 5. With ``subjects`` (see
    :func:`adverse_event_problems`): a subject of the study, an onset not before its enrolment
    (without an enrolment date: not before its first infusion) and not after its death; with
    ``now``: an onset not in the future.
    """
    problems = adverse_event_problems(events, rows=rows, subjects=subjects, now=now, zone=zone)
    if problems:
        raise DataError(describe_problems(source, problems))


def describe_problems(source: str, problems: Sequence[AEProblem | str]) -> str:
    """One message for all the problems: the source, how many, then one line each."""
    return f"{source}: {len(problems)} problem(s):\n" + "\n".join(f"  - {p}" for p in problems)


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
