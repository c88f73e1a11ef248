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
    # lifelines' floats (exp of summed logs): 0.7500000000000001 for 3/4
    assert list(result.summary["survival"]) == pytest.approx([0.75, 0.5, 0.25, 0.0], abs=1e-15)
    assert result.median == 2.0
    assert any("only 4 subjects" in c for c in result.caveats)


def test_all_censored_median_not_reached() -> None:
    result = summarize_time_to_event(
        pd.DataFrame({"duration": [5, 28, 28], "event": [False, False, False]}), endpoint="x"
    )
    assert (result.summary["survival"] == 1.0).all()
    assert np.isnan(result.median)
    assert any("not reached" in c for c in result.caveats)


# --- issue 27 item 7: the median when S(t) is exactly 0.5 -------------------------------------


def _exact_median(durations, events) -> float:
    """By hand, in exact arithmetic: the smallest t with ∏ (n − d)/n ≤ 1/2 (NaN if none)."""
    from fractions import Fraction

    t, e = np.asarray(durations, float), np.asarray(events, bool)
    survival = Fraction(1)
    for x in np.unique(t):
        at_risk, died = int((t >= x).sum()), int(((t == x) & e).sum())
        survival *= Fraction(at_risk - died, at_risk)
        if survival <= Fraction(1, 2):
            return float(x)
    return float("nan")


def test_24_subjects_one_event_a_day_median_is_day_12() -> None:
    days = np.arange(1, 25)
    result = summarize_time_to_event(
        pd.DataFrame({"duration": days, "event": True}), endpoint="improvement"
    )
    # by hand: S(12) = (24 − 12)/24 = 1/2 exactly, S(11) = 13/24 > 1/2 → median 12 (the
    # hand-written float product gave 0.5000000000000001 at day 12, hence 13; lifelines' own
    # float curve gives 12 or 13 depending on the numpy/pandas versions: 13 on the floors)
    assert _exact_median(days, np.ones(24)) == 12.0
    assert result.median == 12.0
    assert result.survival_at(11) == pytest.approx(13 / 24)
    assert result.survival_at(12) == pytest.approx(0.5)


def test_lifelines_convention_is_the_smallest_time_with_s_at_most_half() -> None:
    from lifelines import KaplanMeierFitter

    # no exact 1/2 anywhere: S = 4/5, 3/5, 2/5 … → lifelines' median is the first S ≤ 0.5
    fitted = KaplanMeierFitter().fit([1, 2, 3, 4, 5], [1, 1, 1, 1, 1])
    assert fitted.median_survival_time_ == 3.0
    # censored at 2: S(1) = 3/4, S(3) = 3/4 · 1/2 = 3/8 → 3
    fitted = KaplanMeierFitter().fit([1, 2, 3, 4], [1, 0, 1, 1])
    assert fitted.median_survival_time_ == 3.0
    result = summarize_time_to_event(
        pd.DataFrame({"duration": [1, 2, 3, 4], "event": [1, 0, 1, 1]}), endpoint="x"
    )
    assert result.median == 3.0


@pytest.mark.parametrize("n", [2, 6, 8, 14, 18, 20, 24, 44, 100])
def test_an_exact_half_is_the_median_whatever_the_float(n: int) -> None:
    # one event a day: S(n/2) = 1/2 exactly; in floats it lands on 0.5 or just above it
    # (0.5000000000000001 for n = 6, 8, 14 … with lifelines 0.30 on numpy 2)
    days = np.arange(1, n + 1)
    result = summarize_time_to_event(pd.DataFrame({"duration": days, "event": True}), endpoint="x")
    assert result.median == _exact_median(days, np.ones(n)) == n / 2


def test_just_above_half_is_not_the_median() -> None:
    # 5 subjects: S(2) = 3/5 > 1/2, S(3) = 2/5 → median 3 (odd n: no exact half)
    result = summarize_time_to_event(
        pd.DataFrame({"duration": [1, 2, 3, 4, 5], "event": True}), endpoint="x"
    )
    assert result.median == 3.0


def test_censoring_and_ties_agree_with_exact_arithmetic() -> None:
    rng = np.random.default_rng(27)
    for _ in range(300):
        n = int(rng.integers(2, 30))
        durations = rng.integers(1, 15, n)
        events = rng.random(n) < 0.8
        result = summarize_time_to_event(
            pd.DataFrame({"duration": durations, "event": events}), endpoint="x"
        )
        expected = _exact_median(durations, events)
        assert (np.isnan(expected) and np.isnan(result.median)) or result.median == expected


def test_median_interval_is_lifelines_brookmeyer_crowley() -> None:
    from lifelines import KaplanMeierFitter
    from lifelines.utils import median_survival_times

    fitted = KaplanMeierFitter().fit(TIMES, EVENTS)
    low, high = median_survival_times(fitted.confidence_interval_).iloc[0]
    result = summarize_time_to_event(
        pd.DataFrame({"duration": TIMES, "event": EVENTS}), endpoint="relapse"
    )
    assert result.median_ci[0] == low
    assert np.isinf(high) and np.isnan(result.median_ci[1])  # not reached


def test_log_rank_matches_lifelines_and_a_hand_value() -> None:
    from lifelines.statistics import logrank_test

    from celltrial.efficacy.survival import compute_log_rank

    # two groups of two, events at 1, 2 (A) and 3, 4 (B), no censoring. By hand:
    # t=1: n=4, nA=2, d=1 → E_A=0.5, V=2·2·1·3/(16·3)=0.25; t=2: n=3, nA=1 → E=1/3, V=2/9;
    # t=3: n=2, nA=0 → E=0, V=0; t=4: n=1 → 0. O_A − E_A = 2 − 5/6 = 7/6, V = 0.25 + 2/9 = 17/36
    # chi² = (7/6)² / (17/36) = 49/17
    statistic, p = compute_log_rank([1, 2], [1, 1], [3, 4], [1, 1])
    assert statistic == pytest.approx(49 / 17)
    reference = logrank_test([1, 2], [3, 4], [1, 1], [1, 1])
    assert p == pytest.approx(reference.p_value)
    from scipy import stats

    assert p == pytest.approx(stats.chi2.sf(49 / 17, 1))
