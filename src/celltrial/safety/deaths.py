"""Deaths as adverse events: the rules a recorded death must keep, and the events that break them.

A death is recorded once, as the fatal outcome of the event that caused it, at CTCAE grade 5 and
serious ("results in death"). The rules and their wording are data (``adverse_events.yaml``,
``deaths``); :func:`list_death_problems` lists every stored event that breaks one, with the
subject, the event and what to fix — a data problem to query, never corrected here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import pandas as pd

from celltrial.frames import check_columns
from celltrial.safety.events import load_ae_vocabulary, split_criteria

#: Columns of :func:`list_death_problems`.
DEATH_PROBLEM_COLUMNS = (
    "subject_id",
    "term",
    "onset_day",
    "grade",
    "serious",
    "outcome",
    "rule",
    "problem",
    "fix",
)

#: The rules :func:`list_death_problems` applies, in the order it lists them per event.
RULES = ("fatal_not_grade_5", "grade_5_not_serious", "grade_5_not_fatal", "duplicate_death")


@dataclass(frozen=True)
class DeathRules:
    """The ``deaths`` part of ``adverse_events.yaml``."""

    fatal_outcome: str
    fatal_grade: int
    serious_criterion: str
    death_terms: frozenset[str]  # lower case
    rules: dict[str, dict[str, str]]  # rule -> {"problem": ..., "fix": ...}

    def is_death_term(self, term: Any) -> bool:
        return isinstance(term, str) and term.strip().lower() in self.death_terms


@cache
def load_death_rules() -> DeathRules:
    """The shipped rules, checked: every rule of :data:`RULES` has its problem and fix text."""
    vocabulary = load_ae_vocabulary()
    data = vocabulary["deaths"]
    rules = {name: dict(text) for name, text in data["rules"].items()}
    if set(rules) != set(RULES) or any(set(t) != {"problem", "fix"} for t in rules.values()):
        raise ValueError(
            f"adverse_events.yaml, deaths.rules: expected {', '.join(RULES)}, each with a "
            "problem and a fix"
        )
    if data["fatal_outcome"] not in vocabulary["outcomes"]:
        raise ValueError("adverse_events.yaml, deaths.fatal_outcome: not one of the outcomes")
    if data["serious_criterion"] not in vocabulary["serious_criteria"]:
        raise ValueError("adverse_events.yaml, deaths.serious_criterion: not an ICH E2A criterion")
    return DeathRules(
        fatal_outcome=data["fatal_outcome"],
        fatal_grade=int(data["fatal_grade"]),
        serious_criterion=data["serious_criterion"],
        death_terms=frozenset(t.strip().lower() for t in data["death_terms"]),
        rules=rules,
    )


def _given(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, str):
        return bool(value.strip())
    missing = pd.isna(value)
    return not bool(missing) if isinstance(missing, bool | np.bool_) else True


def _is_subject(code: Any) -> bool:
    """Whether ``code`` names a subject (events without one are in no subject's group)."""
    missing = pd.isna(code)
    return not bool(missing) if isinstance(missing, bool | np.bool_) else True


def _grade(value: Any) -> int | None:
    return int(value) if _given(value) else None


def _day(value: Any) -> int | None:
    return int(value) if _given(value) else None


def _serious(value: Any) -> bool:
    return bool(value) if _given(value) else False


#: The columns of the adverse events :func:`list_death_problems` reads.
_READ = (
    "subject_id",
    "term",
    "onset",
    "onset_day",
    "grade",
    "serious",
    "serious_criteria",
    "outcome",
)


def list_death_problems(
    adverse_events: pd.DataFrame, *, rules: DeathRules | None = None
) -> pd.DataFrame:
    """Every event that breaks a death rule, one row per event and rule (columns
    :data:`DEATH_PROBLEM_COLUMNS`), by subject and onset.

    Rules: an event with a fatal outcome is grade 5 (``fatal_not_grade_5``; an event without a
    grade is not flagged: the grade is missing, not wrong); a grade 5 event is serious
    (``grade_5_not_serious``) and its outcome, when given, is fatal (``grade_5_not_fatal``); an
    event whose term records the death itself ("Death NOS") beside another event of the same
    subject that is fatal (fatal outcome or grade 5) records the death twice
    (``duplicate_death``, on the death-term event; of two death-term events, on the later).

    ``adverse_events``: columns subject_id, term, grade and, read as missing when absent, onset,
    serious, outcome (``onset_day`` when present is shown).
    """
    check_columns(adverse_events, ("subject_id", "term", "grade"), what="adverse events")
    rules = rules or load_death_rules()
    absent = {c: None for c in ("onset", "serious", "outcome") if c not in adverse_events}
    # the columns the rules read (copying the others, and making records of them, costs)
    events = adverse_events[[c for c in _READ if c in adverse_events.columns]].assign(**absent)
    events["_onset"] = pd.to_datetime(events["onset"], utc=True)
    events = events.sort_values(["subject_id", "_onset"], kind="stable")
    # every rule is about a fatal event (fatal outcome or grade 5) and names only fatal events
    # of its subject beside it: the others are left out before the events are grouped (most
    # subjects have none, and grouping costs per subject)
    fatal = [
        _is_subject(code) and (outcome == rules.fatal_outcome or _grade(grade) == rules.fatal_grade)
        for code, outcome, grade in zip(
            events["subject_id"], events["outcome"], events["grade"], strict=True
        )
    ]
    events = events[np.array(fatal, dtype=bool)]
    has_day = "onset_day" in events.columns
    rows: list[dict[str, Any]] = []

    def add(event: dict, rule: str, **values: Any) -> None:
        text = rules.rules[rule]
        rows.append(
            {
                "subject_id": event["subject_id"],
                "term": event["term"],
                "onset_day": _day(event["onset_day"]) if has_day else None,
                "grade": _grade(event["grade"]),
                "serious": _serious(event["serious"]),
                "outcome": event["outcome"] if _given(event["outcome"]) else None,
                "rule": rule,
                "problem": text["problem"].format(**values),
                "fix": text["fix"].format(**values),
            }
        )

    every = events.to_dict("records")  # once: a frame's records cost per call, not per row
    for positions in events.groupby("subject_id", sort=True).indices.values():
        records = [every[i] for i in positions]
        fatal = [
            r
            for r in records
            if r["outcome"] == rules.fatal_outcome or _grade(r["grade"]) == rules.fatal_grade
        ]
        first_death_term = next((r for r in fatal if rules.is_death_term(r["term"])), None)
        for event in records:
            grade, outcome = _grade(event["grade"]), event["outcome"]
            if outcome == rules.fatal_outcome and grade is not None and grade != rules.fatal_grade:
                add(event, "fatal_not_grade_5", grade=grade)
            if grade == rules.fatal_grade:
                criteria = split_criteria(event.get("serious_criteria"))
                if not _serious(event["serious"]):
                    add(event, "grade_5_not_serious", criteria="; ".join(criteria) or "none")
                if _given(outcome) and outcome != rules.fatal_outcome:
                    add(event, "grade_5_not_fatal", outcome=outcome)
            if rules.is_death_term(event["term"]) and any(r is event for r in fatal):
                others = [r for r in fatal if r is not event and not rules.is_death_term(r["term"])]
                if not others and first_death_term is not None and first_death_term is not event:
                    others = [first_death_term]
                if others:
                    add(event, "duplicate_death", other=_describe(others[0], has_day))
    out = pd.DataFrame(rows, columns=list(DEATH_PROBLEM_COLUMNS))
    out["onset_day"] = out["onset_day"].astype("Int64")
    out["grade"] = out["grade"].astype("Int64")
    return out


def _describe(event: dict, has_day: bool) -> str:
    """ "Acute respiratory distress syndrome (day 8)"; the onset date without a study day."""
    if has_day and _given(event.get("onset_day")):
        return f"{event['term']} (day {int(event['onset_day'])})"
    if _given(event.get("_onset")):
        return f"{event['term']} ({event['_onset']:%Y-%m-%d})"
    return str(event["term"])


__all__ = ["DEATH_PROBLEM_COLUMNS", "DeathRules", "list_death_problems", "load_death_rules"]
