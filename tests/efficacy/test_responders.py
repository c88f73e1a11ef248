"""Responder rules (data) applied at their boundaries; exact intervals vs known values."""

from __future__ import annotations

import pandas as pd
import pytest

from celltrial.efficacy.baseline import derive_baseline, derive_change_from_baseline
from celltrial.efficacy.responders import (
    check_responder_rules,
    load_responder_rules,
    summarize_responders,
)
from celltrial.errors import CelltrialError
from tests.efficacy.handmade import T0, observations


def _frame(rows: list[tuple[str, str, int, float]]) -> pd.DataFrame:
    """(subject, test, study day, value) rows; day 0 = T0, baseline drawn on day -1."""
    obs = observations(
        [
            {
                "subject_id": s,
                "test": t,
                "study_day": d,
                "time": T0 + pd.Timedelta(days=d, hours=-2),
                "value": v,
                "ref_low": 1.1 if t == "LYM" else float("nan"),
                "ref_high": 3.2 if t == "LYM" else float("nan"),
            }
            for s, t, d, v in rows
        ]
    )
    first = pd.Series([T0] * obs["subject_id"].nunique(), index=sorted(obs["subject_id"].unique()))
    return derive_change_from_baseline(derive_baseline(obs, first_infusion=first, window_days=3))


RULES = check_responder_rules(
    {
        "rules": [
            {
                "id": "crp",
                "kind": "percent_change",
                "test": "CRP",
                "threshold_pct": -50,
                "by_day": 7,
                "label": "CRP halved by day 7",
            },
            {
                "id": "lym",
                "kind": "back_in_range",
                "test": "LYM",
                "by_day": 14,
                "label": "LYM in range by day 14",
            },
        ]
    }
)


def test_percent_change_rule_at_its_edges() -> None:
    frame = _frame(
        [
            ("A", "CRP", -1, 100.0),
            ("A", "CRP", 3, 50.0),  # exactly −50 %: responder
            ("B", "CRP", -1, 100.0),
            ("B", "CRP", 3, 50.1),  # −49.9 %: not
            ("C", "CRP", -1, 100.0),
            ("C", "CRP", 8, 10.0),  # after day 7: not evaluable
            ("D", "CRP", 3, 10.0),  # no baseline
        ]
    )
    result = summarize_responders(frame, subjects=["A", "B", "C", "D"], rules=RULES)
    status = result.listing[result.listing["rule"] == "crp"].set_index("subject_id")
    assert status.loc["A", "status"] == "responder" and status.loc["A", "day"] == 3
    assert status.loc["B", "status"] == "non-responder"
    assert status.loc["C", "status"] == "not evaluable"
    assert status.loc["D", "status"] == "not evaluable"
    row = result.summary.set_index("rule").loc["crp"]
    assert (row["responders"], row["evaluable"], row["not_evaluable"]) == (1, 2, 2)


def test_back_in_range_needs_abnormal_baseline() -> None:
    frame = _frame(
        [
            ("A", "LYM", -1, 0.5),
            ("A", "LYM", 10, 1.1),  # lower edge is inside: responder
            ("B", "LYM", -1, 0.5),
            ("B", "LYM", 10, 1.0),
            ("C", "LYM", -1, 1.5),
            ("C", "LYM", 10, 1.6),  # normal at baseline
            ("E", "LYM", -1, 0.5),
            ("E", "LYM", 15, 1.5),  # too late
        ]
    )
    result = summarize_responders(frame, subjects=["A", "B", "C", "E"], rules=RULES)
    status = result.listing[result.listing["rule"] == "lym"].set_index("subject_id")["status"]
    assert status.to_dict() == {
        "A": "responder",
        "B": "non-responder",
        "C": "not applicable",
        "E": "not evaluable",
    }


def test_clopper_pearson_interval_for_4_of_5() -> None:
    rows = []
    for i, end in enumerate([40.0, 30.0, 20.0, 10.0, 90.0]):
        rows += [(f"S{i}", "CRP", -1, 100.0), (f"S{i}", "CRP", 5, end)]
    result = summarize_responders(_frame(rows), subjects=[f"S{i}" for i in range(5)], rules=RULES)
    row = result.summary.set_index("rule").loc["crp"]
    # exact binomial: Beta(0.025; 4, 2) and Beta(0.975; 5, 1) = 0.025^(1/5) upper limit
    assert row["ci_low"] == pytest.approx(0.283582, abs=1e-6)
    assert row["ci_high"] == pytest.approx(0.975 ** (1 / 5), abs=1e-9)


def test_shipped_rules_load_and_bad_rules_are_refused() -> None:
    rules = load_responder_rules()
    assert {r.kind for r in rules.rules} == {"percent_change", "back_in_range", "who_improvement"}
    assert rules.favourable_direction["CRP"] == "down"
    with pytest.raises(CelltrialError, match="kind"):
        check_responder_rules({"rules": [{"kind": "magic", "by_day": 3}]})
