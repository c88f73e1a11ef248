"""Headline denominators count every treated patient and say why the others are missing
(issue 27, item 4): "fell in 3 of 5 treated patients (1 died before Day 14; 1 had no Day 14
value)", never "3 of 3"; the tests and estimates stay on the pairs available."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from celltrial.efficacy.analysis import summarize_efficacy
from celltrial.efficacy.baseline import derive_baseline, derive_change_from_baseline
from celltrial.efficacy.denominators import (
    Denominator,
    derive_follow_up_days,
    summarize_pair_denominator,
)
from celltrial.efficacy.responders import check_responder_rules, summarize_responders
from celltrial.study import init_study, read_study_frames
from tests.efficacy.handmade import observations

T0 = pd.Timestamp("2020-02-10 09:00", tz="UTC")


def _day(day: float, hours: float = 0) -> pd.Timestamp:
    return T0 + pd.Timedelta(days=day, hours=hours)


# --- the reasons, each at its boundary ----------------------------------------------------------


def _subjects(rows: list[tuple[str, float, float | None, float | None]]) -> pd.DataFrame:
    """(subject, first-infusion day, death day, withdrawal day) relative to T0."""
    return pd.DataFrame(
        {
            "subject_id": [r[0] for r in rows],
            "first_infusion": [_day(r[1]) for r in rows],
            "died": [pd.NaT if r[2] is None else _day(r[1] + r[2], 1) for r in rows],
            "withdrawn": [pd.NaT if r[3] is None else _day(r[1] + r[3], 1) for r in rows],
        }
    )


def _rows(values: list[tuple[str, str | None, float | None, float | None]]) -> pd.DataFrame:
    """(subject, visit, value, baseline) rows of CRP; values after the baseline time."""
    return pd.DataFrame(
        {
            "subject_id": [v[0] for v in values],
            "test": "CRP",
            "visit": pd.Series([v[1] for v in values], dtype=object),
            "value": [np.nan if v[2] is None else v[2] for v in values],
            "baseline": [np.nan if v[3] is None else v[3] for v in values],
            "time": _day(14),
            "baseline_time": _day(-1),
        }
    )


def test_each_reason_at_its_boundary() -> None:
    # Day 14, window days 12..16; today is day 17 for subjects infused on T0 (window closed)
    subjects = _subjects(
        [
            ("PAIR", 0, None, None),
            ("D13", 0, 13, None),  # died day 13 < 14: before Day 14
            ("D16", 0, 16, None),  # died day 16 = last day: in the window
            ("D17", 0, 17, None),  # died after the window closed: simply no value
            ("W09", 0, None, 9),  # withdrew day 9
            ("W14", 0, None, 14),  # withdrew on day 14: in the window
            ("T13", 4, None, None),  # today is its day 13: not yet at Day 14
            ("T16", 1, None, None),  # today is its day 16 = last day: window still open
            ("NOBASE", 0, None, None),  # a Day 14 value but no baseline
            ("NONE", 0, None, None),  # baseline, no Day 14 value, window closed
            ("DIEDPAIR", 0, 15, None),  # died day 15 after its Day 14 value: counted
            ("NOTHING", 0, None, None),  # no value at all
        ]
    )
    rows = _rows(
        [
            ("PAIR", "Day 14", 5.0, 10.0),
            ("DIEDPAIR", "Day 14", 6.0, 10.0),
            ("NOBASE", "Day 14", 5.0, None),
            ("NONE", "Day 10", 7.0, 10.0),
            ("D13", "Day 10", 7.0, 10.0),
            ("D17", "Day 10", 7.0, 10.0),
        ]
    )
    follow_up = derive_follow_up_days(subjects, today=_day(17, 3), zone="UTC")
    assert follow_up.loc["T13", "today"] == 13 and follow_up.loc["T16", "today"] == 16
    result = summarize_pair_denominator(
        rows, follow_up, test="CRP", visit="Day 14", day=14, last_day=16
    )
    assert result == Denominator(
        12,
        (
            ("died before Day 14", 1),
            ("died in the Day 14 window", 1),
            ("withdrew before Day 14", 1),
            ("withdrew in the Day 14 window", 1),
            ("not yet at Day 14", 1),
            ("still in the Day 14 window", 1),
            ("had no baseline value", 1),
            ("had no Day 14 value", 2),  # NONE and D17
            ("had no baseline or Day 14 value", 1),
        ),
    )
    assert result.n_missing == 10  # 12 treated, 2 pairs
    assert result.describe().startswith("1 died before Day 14; 1 died in the Day 14 window; ")


def test_untreated_subjects_are_not_in_the_denominator() -> None:
    subjects = _subjects([("A", 0, None, None)])
    subjects.loc[1] = ["LABONLY", pd.NaT, pd.NaT, pd.NaT]  # registered from a lab file
    follow_up = derive_follow_up_days(subjects, today=_day(40), zone="UTC")
    assert list(follow_up.index) == ["A"]
    rows = _rows([("A", "Day 14", 5.0, 10.0), ("LABONLY", "Day 14", 5.0, None)])
    result = summarize_pair_denominator(
        rows, follow_up, test="CRP", visit="Day 14", day=14, last_day=16
    )
    assert result == Denominator(1, ())
    assert result.describe() == ""


def test_responder_reasons_come_from_follow_up() -> None:
    rule = check_responder_rules(
        {
            "rules": [
                {
                    "id": "crp",
                    "kind": "percent_change",
                    "test": "CRP",
                    "threshold_pct": -50,
                    "by_day": 7,
                    "label": "CRP halved by day 7",
                }
            ]
        }
    )
    # W withdrew day 5; N was infused 6 days before today; K's day 7 has passed; X died day 5
    subjects = _subjects(
        [("W", 0, None, 5), ("N", 30, None, None), ("K", 0, None, None), ("X", 0, 5, None)]
    )
    follow_up = derive_follow_up_days(subjects, today=_day(36, 3), zone="UTC")
    obs = observations(
        [
            {"subject_id": s, "test": "CRP", "time": _day(first - 1), "value": 100.0}
            for s, first in (("W", 0), ("N", 30), ("K", 0), ("X", 0))
        ]
    ).assign(study_day=-1)
    first = subjects.set_index("subject_id")["first_infusion"]
    frame = derive_change_from_baseline(derive_baseline(obs, first_infusion=first, window_days=3))
    result = summarize_responders(
        frame, subjects=["W", "N", "K", "X"], rules=rule, follow_up=follow_up
    )
    listing = result.listing.set_index("subject_id")
    assert listing["reason"].to_dict() == {
        "W": "withdrew by day 7",
        "N": "not yet past day 7",
        "K": "had no value on days 1–7",
        "X": "died by day 7",  # death from the follow-up days when there is no clinical status
    }
    assert listing.loc["X", "status"] == "non-responder"
    row = result.summary.iloc[0]
    assert (row["responders"], row["evaluable"], row["not_evaluable"]) == (0, 1, 3)


# --- a small constructed study through the whole efficacy analysis ------------------------------


@pytest.fixture(scope="module")
def constructed(tmp_path_factory):
    """5 treated (A–E) and 1 registered but never treated (F); CRP baseline on day −1.

    A, B, C: Day 14 values (all fall); D died on day 10; E has values on days 10 and 28 only.
    Day 3 (responder rule "CRP fall ≥ 50 % by day 7"): A −55 %, B −37.5 %, C −66.7 %, D −22 %;
    E has no value on days 1–7.
    """
    handle = init_study(tmp_path_factory.mktemp("denominators") / "study", user="test")
    empty = read_study_frames(handle)
    ids = ["A", "B", "C", "D", "E", "F"]
    # 09:00 UTC is the same calendar day in the study zone as the day it is on in UTC
    first = {s: T0 for s in ids[:5]}
    subjects = pd.DataFrame(
        {
            "subject_id": ids,
            "first_infusion": [first.get(s, pd.NaT) for s in ids],
            "died": pd.Series([pd.NaT, pd.NaT, pd.NaT, _day(10), pd.NaT, pd.NaT]),
            "withdrawn": pd.Series([pd.NaT] * 6, dtype="datetime64[ns, UTC]"),
        }
    )
    subjects = subjects.reindex(columns=list(dict.fromkeys([*empty.subjects.columns, *subjects])))
    infusions = pd.DataFrame(
        {"subject_id": ids[:5], "number": 1, "start_time": [T0] * 5, "study_day": 0}
    ).reindex(columns=empty.infusions.columns)
    values = {
        "A": {-1: 100.0, 3: 45.0, 14: 40.0},
        "B": {-1: 80.0, 3: 50.0, 14: 30.0},
        "C": {-1: 60.0, 3: 20.0, 14: 50.0},
        "D": {-1: 90.0, 3: 70.0},
        "E": {-1: 100.0, 10: 60.0, 28: 20.0},
        "F": {-1: 70.0, 14: 10.0},
    }
    obs = pd.DataFrame(
        [
            {
                "subject_id": s,
                "time": _day(d),
                "study_day": d if s != "F" else np.nan,
                "test": "CRP",
                "value": v,
                "unit": "mg/L",
            }
            for s, days in values.items()
            for d, v in days.items()
        ]
    ).reindex(columns=empty.observations.columns)
    frames = dataclasses.replace(empty, subjects=subjects, infusions=infusions, observations=obs)
    return summarize_efficacy(frames, handle.protocol, today=_day(400))


def test_the_crp_finding_counts_every_treated_patient(constructed) -> None:
    analysis = constructed
    assert (analysis.n, analysis.n_treated) == (6, 5)
    text = next(f.text for f in analysis.findings if f.topic == "C-reactive protein")
    # by hand: log ratios ln .4, ln .375, ln (50/60); Walsh averages' median
    # (ln .4 + (ln .375 + ln(5/6)) / 2) / 2 → ratio 0.473 (−53 %); 3 pairs all falling: p = 2/8
    assert text.startswith(
        "C-reactive protein fell from baseline to Day 14 (the pre-specified key visit) in 3 of 5 "
        "treated patients (1 died before Day 14; 1 had no Day 14 value), the direction hoped "
        "for; on the 3 with both values, median ratio to baseline 0.47 (−53 %; "
    ), text
    assert "exact p = 0.25" in text
    assert analysis.denominators["CRP"] == Denominator(
        5, (("died before Day 14", 1), ("had no Day 14 value", 1))
    )


def test_the_statistics_stay_on_the_pairs(constructed) -> None:
    table = constructed.paired.summary.set_index(["test", "visit"])
    row = table.loc[("CRP", "Day 14")]
    assert row["n"] == 3
    assert row["p_value"] == pytest.approx(0.25, abs=1e-12)
    walsh = np.log([0.4, 0.375, 50 / 60])
    averages = [(walsh[i] + walsh[j]) / 2 for i in range(3) for j in range(i, 3)]
    assert row["hodges_lehmann"] == pytest.approx(np.exp(np.median(averages)), rel=1e-12)


def test_the_responder_finding_counts_every_treated_patient(constructed) -> None:
    text = next(f.text for f in constructed.findings if f.topic.startswith("CRP fall"))
    # A and C responded, B and D did not (D died day 10, after the rule's day 7), E had no value
    # on days 1–7; Clopper–Pearson 2/4: beta(0.025; 2, 3) = 0.068, beta(0.975; 3, 2) = 0.932
    assert text == (
        "CRP fall ≥ 50 % from baseline by day 7: 2 of 5 treated patients; 1 had no value on "
        "days 1–7; 2 of the 4 evaluable, exact 95 % CI 7 % to 93 %."
    )
    listing = constructed.responders.listing
    assert sorted(listing["subject_id"].unique()) == ["A", "B", "C", "D", "E"]  # F not treated


def test_the_design_statement_counts_the_treated(constructed) -> None:
    assert constructed.findings[-1].text.startswith("What the design allows: 5 patients")
