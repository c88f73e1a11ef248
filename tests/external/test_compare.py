"""Kaplan-Meier, risk difference and ratio, exact intervals against independent references."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from celltrial.efficacy.survival import compute_kaplan_meier
from celltrial.external.compare import (
    compute_clopper_pearson,
    compute_km_risk,
    compute_weighted_kaplan_meier,
    derive_survival_times,
    summarize_mortality,
)
from celltrial.external.spec import load_target_trial
from tests.external.handmade import hours

DUR = np.array([1.0, 2.0, 2.0, 3.0, 4.0])
EVT = np.array([1, 1, 0, 1, 0], dtype=bool)


def test_weighted_km_by_hand_and_against_efficacy():
    table = compute_weighted_kaplan_meier(DUR, EVT)
    # S(1) = 4/5; S(2) = 0.8 * 3/4; S(3) = 0.6 * 1/2 (event before censoring at t = 2)
    assert table["survival"].tolist() == pytest.approx([0.8, 0.6, 0.3, 0.3])
    reference = compute_kaplan_meier(DUR, EVT)
    np.testing.assert_allclose(table["survival"], reference["survival"])


def test_integer_weights_equal_repeated_rows():
    weights = np.array([2.0, 1.0, 3.0, 1.0, 1.0])
    table = compute_weighted_kaplan_meier(DUR, EVT, weights)
    counts = weights.astype(int)
    repeated = compute_kaplan_meier(np.repeat(DUR, counts), np.repeat(EVT, counts))
    np.testing.assert_allclose(table["survival"], repeated["survival"])
    for horizon in (0.5, 1, 2.5, 3, 10):
        before = table.loc[table["time"] <= horizon, "survival"]
        expected = 1 - before.iloc[-1] if len(before) else 0.0
        assert compute_km_risk(DUR, EVT, weights, horizon) == pytest.approx(expected)


def test_clopper_pearson_matches_scipy():
    for k, n in ((0, 3), (1, 3), (3, 3), (4, 17)):
        expected = stats.binomtest(k, n).proportion_ci(method="exact")
        assert compute_clopper_pearson(k, n) == pytest.approx((expected.low, expected.high))


def _times(discharge: str):
    spec = load_target_trial()
    spec = spec.model_copy(
        update={"outcomes": spec.outcomes.model_copy(update={"discharge": discharge})}
    )
    cohort = pd.DataFrame(
        {
            "subject_id": ["T1", "T2", "C1", "C2", "C3", "C4"],
            "arm": ["treated"] * 2 + ["external"] * 4,
            "time_zero": [hours(0)] * 6,
            "died": [pd.NaT, hours(24 * 10), hours(24 * 5), pd.NaT, pd.NaT, hours(24 * 40)],
            "discharged": [hours(24 * 12), pd.NaT, pd.NaT, hours(24 * 3), pd.NaT, pd.NaT],
            "records_end": [
                hours(24 * 12),
                hours(24 * 10),
                hours(24 * 5),
                hours(24 * 3),
                hours(24 * 20),
                hours(24 * 40),
            ],
        }
    )
    for column in ("died", "discharged", "records_end", "time_zero"):
        cohort[column] = pd.to_datetime(cohort[column], utc=True)
    return derive_survival_times(cohort, spec=spec), spec


def test_survival_times_and_censoring_rules():
    times, _ = _times("censor")
    assert times["duration"].tolist() == [12, 10, 5, 3, 20, 28]
    assert times["event"].tolist() == [False, True, True, False, False, False]  # C4 dies after 28
    times, _ = _times("alive")
    assert times["duration"].tolist() == [28, 10, 5, 28, 20, 28]


def test_weighted_km_by_hand_with_fractional_weights():
    # matching weights 1/3: at t = 1 one death of weight 1/3 among 5/3 at risk
    weights = np.full(5, 1 / 3)
    table = compute_weighted_kaplan_meier(DUR, EVT, weights)
    assert table["n_at_risk"].iloc[0] == pytest.approx(5 / 3)
    np.testing.assert_allclose(table["survival"], [0.8, 0.6, 0.3, 0.3])


def test_risk_difference_and_ratio_with_score_intervals():
    times, spec = _times("alive")
    weights = pd.Series({"C1": 1.0, "C2": 1.0, "C3": 1.0, "C4": 1.0})
    result = summarize_mortality(times, weights, spec=spec)
    risk = result.summary.set_index("arm")["km_risk"]
    assert risk["treated"] == pytest.approx(0.5)
    assert risk["external"] == pytest.approx(0.25)  # one death of four, C3 censored at day 20
    assert result.risk_difference == pytest.approx(0.25)
    assert result.risk_ratio == pytest.approx(2.0)
    # effective counts: treated 1 of 2; controls 0.25 x 3 (C3's status at day 28 is unknown)
    counts = result.summary.set_index("arm")["effective_n"]
    assert counts.tolist() == pytest.approx([2.0, 3.0])
    assert result.rd_ci[0] < result.risk_difference < result.rd_ci[1]
    assert result.rr_ci[0] < result.risk_ratio < result.rr_ci[1]
    assert "Newcombe" in result.rd_interval and "Koopman" in result.rr_interval


def _simple(treated_deaths: int, n_treated: int, control_deaths: int, n_controls: int):
    spec = load_target_trial()
    arms = ["treated"] * n_treated + ["external"] * n_controls
    events = [i < treated_deaths for i in range(n_treated)]
    events += [i < control_deaths for i in range(n_controls)]
    times = pd.DataFrame(
        {
            "subject_id": [f"S{i}" for i in range(len(arms))],
            "arm": arms,
            "duration": [5.0 if e else 28.0 for e in events],
            "event": events,
        }
    )
    return summarize_mortality(times, pd.Series(dtype=float), spec=spec)


def test_zero_cells_give_score_intervals_not_zero_width():
    from statsmodels.stats.proportion import confint_proportions_2indep

    # 0 of 3 treated vs 2 of 6 controls died: before, "CI 0 to 0" style bootstrap limits
    result = _simple(0, 3, 2, 6)
    rd = confint_proportions_2indep(0, 3, 2, 6, method="newcomb", compare="diff")
    assert result.rd_ci == pytest.approx(rd)
    assert result.rd_ci[0] < -0.5 and result.rd_ci[1] > 0.2
    rr = confint_proportions_2indep(0, 3, 2, 6, method="score", compare="ratio", correction=False)
    assert result.risk_ratio == 0.0
    assert result.rr_ci[0] == 0.0
    assert result.rr_ci[1] == pytest.approx(rr[1], rel=1e-8)  # Koopman, 2.600
    # no control death: the ratio is not estimable, its lower limit still is
    result = _simple(2, 3, 0, 6)
    assert np.isnan(result.risk_ratio) and "not estimable" in result.rr_interval
    assert result.rr_ci[1] == np.inf
    assert result.rr_ci[0] == pytest.approx(1.32097, abs=1e-5)
    # nobody died: difference 0 with a Newcombe interval; ratio not estimable
    result = _simple(0, 3, 0, 6)
    assert result.risk_difference == 0.0
    assert result.rd_ci == pytest.approx(
        confint_proportions_2indep(0, 3, 0, 6, method="newcomb", compare="diff")
    )
    assert np.isnan(result.rr_ci).all() and "no deaths in either arm" in result.rr_interval
