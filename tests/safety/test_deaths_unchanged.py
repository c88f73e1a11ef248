"""The death-rule listing leaves the subjects without a fatal event out before grouping the
events (for speed); its rows must be exactly those of the per-subject version it replaced,
kept here as the reference, on simulated studies and on events built to hit every rule."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from celltrial.cohort import simulate
from celltrial.protocol import load_builtin_protocol
from celltrial.safety.deaths import (
    DEATH_PROBLEM_COLUMNS,
    _day,
    _describe,
    _given,
    _grade,
    _serious,
    list_death_problems,
    load_death_rules,
)
from celltrial.safety.events import derive_ae_timing, split_criteria


def reference_death_problems(adverse_events: pd.DataFrame) -> pd.DataFrame:
    """:func:`list_death_problems` as it was before the fatal-event filter (commit f59c173)."""
    rules = load_death_rules()
    absent = {c: None for c in ("onset", "serious", "outcome") if c not in adverse_events}
    events = adverse_events.assign(**absent)
    events["_onset"] = pd.to_datetime(events["onset"], utc=True)
    events = events.sort_values(["subject_id", "_onset"], kind="stable")
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

    for _, group in events.groupby("subject_id", sort=True):
        records = group.to_dict("records")
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


def same_as_reference(events: pd.DataFrame) -> pd.DataFrame:
    found = list_death_problems(events)
    assert_frame_equal(found, reference_death_problems(events), check_exact=True)
    return found


@pytest.mark.parametrize(("n", "seed"), [(5, 2020), (30, 2020), (30, 7)])
def test_simulated_studies(n: int, seed: int) -> None:
    """The demo's cohorts (5 subjects: S004 dies; 30: several deaths), timed as the analysis
    times them, as simulated and with every death recorded badly in turn."""
    protocol = load_builtin_protocol()
    cohort = simulate(protocol, n, seed=seed)
    timed = derive_ae_timing(
        cohort.adverse_events,
        cohort.infusions,
        reaction_window_hours=protocol.safety.infusion_reaction_window_hours,
        follow_up_days=protocol.safety.ae_follow_up_days,
    )
    fatal = timed["outcome"].eq("fatal") | timed["grade"].eq(5)
    assert fatal.any()
    same_as_reference(timed)
    bad = timed.copy()
    bad.loc[fatal, "grade"] = 4
    deaths = timed[fatal].assign(term="Death NOS", grade=5, outcome="fatal")
    found = same_as_reference(pd.concat([bad, deaths], ignore_index=True))
    assert {"fatal_not_grade_5", "duplicate_death"} <= set(found["rule"])
    unserious = timed.assign(serious=False, outcome="not recovered")
    found = same_as_reference(unserious)
    assert {"grade_5_not_serious", "grade_5_not_fatal"} <= set(found["rule"])


def _random_events(rng: random.Random, n: int) -> pd.DataFrame:
    subjects = ["S1", "S2", "S3", "S10", None, float("nan")]
    terms = ["ARDS", "Death NOS", " death nos ", "Sudden death NOS", "Sepsis", "Fever"]
    grades = [1, 3, 4, 5, 5.0, None, float("nan")]
    outcomes = ["fatal", "recovered", "not recovered", None, "", "  "]
    rows = []
    for _ in range(n):
        day = rng.choice([None, 0, 1, 3, 3, 8, 14])
        rows.append(
            {
                "subject_id": rng.choice(subjects),
                "term": rng.choice(terms),
                "onset": None
                if day is None
                else pd.Timestamp("2020-02-10", tz="UTC") + pd.Timedelta(days=day),
                "onset_day": day,
                "grade": rng.choice(grades),
                "serious": rng.choice([True, False, None]),
                "serious_criteria": rng.choice([None, "results in death", "hospitalisation"]),
                "outcome": rng.choice(outcomes),
            }
        )
    columns = ["subject_id", "term", "onset", "onset_day", "grade", "serious"]
    return pd.DataFrame(rows, columns=[*columns, "serious_criteria", "outcome"])


@pytest.mark.parametrize("seed", range(40))
def test_events_built_to_hit_every_rule(seed: int) -> None:
    rng = random.Random(seed)
    events = _random_events(rng, rng.randint(0, 25))
    same_as_reference(events)
    # grades as the store reads them (nullable integers), and in shuffled row order
    if len(events):
        graded = events.assign(grade=pd.array([_grade(g) for g in events["grade"]], dtype="Int64"))
        same_as_reference(graded.sample(frac=1, random_state=seed))


def test_every_rule_is_hit_by_the_built_events() -> None:
    rules = set(
        itertools.chain.from_iterable(
            same_as_reference(_random_events(random.Random(seed), 25))["rule"] for seed in range(40)
        )
    )
    assert rules == {
        "fatal_not_grade_5",
        "grade_5_not_serious",
        "grade_5_not_fatal",
        "duplicate_death",
    }


@pytest.mark.parametrize("drop", [(), ("outcome",), ("serious", "onset"), ("onset_day",)])
def test_events_without_some_columns(drop: tuple[str, ...]) -> None:
    events = _random_events(random.Random(1), 25).drop(columns=list(drop))
    same_as_reference(events)
