"""Kaplan-Meier, risk difference and exact intervals against independent references."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from celltrial.efficacy.survival import compute_kaplan_meier
from celltrial.external.compare import (
    _risk_at,
    compute_clopper_pearson,
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
        assert _risk_at(DUR, EVT, weights, horizon) == pytest.approx(expected)


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


def test_risk_difference_and_bootstrap():
    times, spec = _times("alive")
    weights = pd.Series({"C1": 1.0, "C2": 1.0, "C3": 1.0, "C4": 1.0})
    result = summarize_mortality(times, weights, spec=spec)
    risk = result.summary.set_index("arm")["km_risk"]
    assert risk["treated"] == pytest.approx(0.5)
    assert risk["external"] == pytest.approx(0.25)  # one death of four, C3 censored at day 20
    assert result.risk_difference == pytest.approx(0.25)
    assert result.rd_ci[0] <= result.risk_difference <= result.rd_ci[1]
    again = summarize_mortality(times, weights, spec=spec)
    assert again.rd_ci == result.rd_ci  # seeded: deterministic
