"""Kaplan–Meier against published values (Freireich 6-MP arm) and hand-worked cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from celltrial.efficacy.survival import compute_kaplan_meier, summarize_time_to_event

# Freireich et al. (1963) 6-MP arm, remission times in weeks; 0 = censored (Kleinbaum & Klein,
# Survival Analysis, 3rd ed., table 2.1; Klein & Moeschberger, §4.2).
TIMES = [6, 6, 6, 6, 7, 9, 10, 10, 11, 13, 16, 17, 19, 20, 22, 23, 25, 32, 32, 34, 35]
EVENTS = [1, 1, 1, 0, 1, 0, 1, 0, 0, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0]
# published S(t) and Greenwood standard errors at the event times (R survfit gives the same)
PUBLISHED = {
    6: (0.8571, 0.0764),
    7: (0.8067, 0.0869),
    10: (0.7529, 0.0963),
    13: (0.6902, 0.1068),
    16: (0.6275, 0.1141),
    22: (0.5378, 0.1282),
    23: (0.4482, 0.1346),
}


def test_product_limit_matches_published_6mp_table() -> None:
    table = compute_kaplan_meier(TIMES, EVENTS).set_index("time")
    for time, (survival, se) in PUBLISHED.items():
        assert table.loc[time, "survival"] == pytest.approx(survival, abs=5e-5)
        assert table.loc[time, "se"] == pytest.approx(se, abs=5e-5)
    assert table.loc[6, "n_at_risk"] == 21 and table.loc[6, "n_events"] == 3
    assert table.loc[6, "n_censored"] == 1  # event before censoring at the tied time


def test_log_log_interval_worked_by_hand() -> None:
    # t = 6: S = 18/21, Greenwood sum = 3/(21·18); σ = sqrt(sum)/|log S|; S^exp(±1.96σ)
    s = 18 / 21
    sigma = np.sqrt(3 / (21 * 18)) / abs(np.log(s))
    z = 1.959963984540054
    table = compute_kaplan_meier(TIMES, EVENTS).set_index("time")
    assert table.loc[6, "ci_low"] == pytest.approx(s ** np.exp(z * sigma), rel=1e-9)
    assert table.loc[6, "ci_high"] == pytest.approx(s ** np.exp(-z * sigma), rel=1e-9)
    assert table.loc[6, "ci_low"] == pytest.approx(0.620, abs=5e-4)  # lifelines/R log-log value
    assert table.loc[6, "ci_high"] == pytest.approx(0.952, abs=5e-4)


def test_median_and_its_interval() -> None:
    result = summarize_time_to_event(
        pd.DataFrame({"duration": TIMES, "event": EVENTS}), endpoint="relapse"
    )
    assert result.median == 23.0
    low, high = result.median_ci
    table = result.summary
    # lower bound: first time the lower pointwise bound is ≤ 0.5; upper: never (not reached)
    assert low == float(table.loc[table["ci_low"] <= 0.5, "time"].iloc[0])
    assert np.isnan(high)
    assert result.n == 21 and result.n_events == 9 and result.n_censored == 12
    assert result.survival_at(5.9) == 1.0
    assert result.survival_at(6.5) == pytest.approx(0.8571, abs=5e-5)


def test_everyone_has_the_event_reaches_zero() -> None:
    result = summarize_time_to_event(
        pd.DataFrame({"duration": [1, 2, 3, 4], "event": [1, 1, 1, 1]}), endpoint="x"
    )
    assert list(result.summary["survival"]) == [0.75, 0.5, 0.25, 0.0]
    assert result.median == 2.0
    assert any("only 4 subjects" in c for c in result.caveats)


def test_all_censored_median_not_reached() -> None:
    result = summarize_time_to_event(
        pd.DataFrame({"duration": [5, 28, 28], "event": [False, False, False]}), endpoint="x"
    )
    assert (result.summary["survival"] == 1.0).all()
    assert np.isnan(result.median)
    assert any("not reached" in c for c in result.caveats)
