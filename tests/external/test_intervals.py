"""Intervals of the external comparison: against scipy, statsmodels and hand computation at their
boundaries, and their coverage under the null at the sizes celltrial meets (2 vs 2 to 5 vs 15).

The coverage simulations are vectorised: 2,000 replicates per size run in milliseconds. The larger
simulation (and the percentile bootstrap it replaced) is ``benchmarks/bench_external_coverage.py``.
"""

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from celltrial.external.compare import summarize_changes
from celltrial.external.intervals import (
    compute_kish_n,
    compute_koopman_ratio,
    compute_log_ratio_interval,
    compute_newcombe_difference,
    compute_welch_difference,
    compute_wilson,
)
from celltrial.external.spec import load_target_trial

REPLICATES = 2000


# ---- Welch on the log scale -------------------------------------------------------------------
def test_welch_matches_scipy_with_unit_weights():
    t = np.log([0.8, 1.9, 1.1])
    c = np.log([1.2, 0.7, 0.9, 1.6, 0.5])
    r = compute_log_ratio_interval(t, c)
    test = stats.ttest_ind(t, c, equal_var=False)
    ci = test.confidence_interval(0.95)
    assert r.log_difference == pytest.approx(t.mean() - c.mean())
    assert (np.log(r.low), np.log(r.high)) == pytest.approx((ci.low, ci.high))
    assert r.p_value == pytest.approx(test.pvalue)
    assert r.df == pytest.approx(test.df)
    assert r.ratio == pytest.approx(np.exp(t.mean() - c.mean()))


def test_welch_two_versus_two_by_hand():
    # log folds 0, 1 vs 0, 0.5: variances 0.5 and 0.125, se² = 0.25 + 0.0625 = 0.3125,
    # df = 0.3125² / (0.25² + 0.0625²) = 1.470588...
    r = compute_log_ratio_interval(np.array([0.0, 1.0]), np.array([0.0, 0.5]))
    df = 0.3125**2 / (0.25**2 + 0.0625**2)
    q = stats.t.ppf(0.975, df)
    assert r.df == pytest.approx(df)
    assert np.log(r.low) == pytest.approx(0.25 - q * np.sqrt(0.3125))
    assert np.log(r.high) == pytest.approx(0.25 + q * np.sqrt(0.3125))


def test_weighted_controls_use_kish_effective_size():
    t = np.array([0.1, -0.3, 0.4])
    c = np.array([0.0, 0.5, -0.2, 0.3])
    w = np.array([1.0, 1 / 3, 1 / 3, 4 / 3])  # matching with replacement: one control reused
    n_eff = w.sum() ** 2 / (w**2).sum()
    assert compute_kish_n(w) == pytest.approx(n_eff)
    mean_c = (w * c).sum() / w.sum()
    var_c = (w * (c - mean_c) ** 2).sum() / (w.sum() - (w**2).sum() / w.sum())
    a, b = t.var(ddof=1) / 3, var_c / n_eff
    df = (a + b) ** 2 / (a**2 / 2 + b**2 / (n_eff - 1))
    half = stats.t.ppf(0.975, df) * np.sqrt(a + b)
    r = compute_log_ratio_interval(t, c, control_weights=w)
    assert r.log_difference == pytest.approx(t.mean() - mean_c)
    assert np.log(r.high) - np.log(r.low) == pytest.approx(2 * half)
    assert r.df == pytest.approx(df)
    # equal weights (1:3 matching, each 1/3) are the unweighted interval
    equal = compute_log_ratio_interval(t, c, control_weights=np.full(4, 1 / 3))
    plain = compute_log_ratio_interval(t, c)
    assert (equal.low, equal.high) == pytest.approx((plain.low, plain.high))


def test_welch_not_estimable_edges():
    one = compute_log_ratio_interval(np.array([0.2]), np.array([0.0, 0.1, 0.3]))
    assert np.isfinite(one.ratio) and np.isnan(one.low) and np.isnan(one.high)
    single_control = compute_log_ratio_interval(np.array([0.2, 0.4]), np.array([0.1]))
    assert np.isnan(single_control.low)
    flat = compute_log_ratio_interval(np.array([0.2, 0.2]), np.array([0.1, 0.1]))
    assert flat.ratio == pytest.approx(np.exp(0.1)) and np.isnan(flat.low)


def _nominal(folds: dict[str, list[float]]) -> pd.DataFrame:
    rows = []
    for subject, (base, day7) in folds.items():
        arm = "treated" if subject.startswith("T") else "external"
        for day, value in ((0, base), (7, day7)):
            rows.append(
                {"subject_id": subject, "arm": arm, "marker": "CRP", "nominal_day": day}
                | {"value": value}
            )
    return pd.DataFrame(rows)


def test_changes_table_names_its_interval():
    spec = load_target_trial()
    spec = spec.model_copy(
        update={
            "outcomes": spec.outcomes.model_copy(
                update={"trajectory_markers": ("CRP",), "change_days": {7: 1}}
            )
        }
    )
    nominal = _nominal(
        {"T1": [100, 20], "T2": [80, 40], "C1": [120, 60], "C2": [90, 90], "C3": [50, 25]}
    )
    weights = pd.Series({"C1": 1.0, "C2": 0.5, "C3": 0.5})
    table = summarize_changes(nominal, weights, spec=spec)
    row = table.iloc[0]
    t = np.log([0.2, 0.5])
    c = np.log([0.5, 1.0, 0.5])
    expected = compute_log_ratio_interval(t, c, control_weights=np.array([1.0, 0.5, 0.5]))
    assert row["interval"] == "Welch t, log scale"
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((expected.low, expected.high))
    assert row["n_effective_control"] == pytest.approx(2.0**2 / 1.5)
    # a single treated subject: the ratio, no interval, and why
    table = summarize_changes(nominal[nominal["subject_id"] != "T2"], weights, spec=spec)
    assert np.isnan(table["ci_low"].iloc[0])
    assert table["interval"].iloc[0] == "not estimable: fewer than 2 treated subjects"


# ---- coverage under the null -----------------------------------------------------------------
def _lognormal_folds(rng, replicates: int, n: int) -> np.ndarray:
    """Log fold changes of log-normal marker values (baseline and day 7, subject effect shared),
    the same distribution in both arms (the null)."""
    subject = rng.normal(0.0, 0.8, (replicates, n))
    base = np.exp(np.log(60.0) + subject + rng.normal(0.0, 0.4, (replicates, n)))
    day7 = np.exp(np.log(15.0) + subject + rng.normal(0.0, 0.4, (replicates, n)))
    return np.log(day7 / base)


@pytest.mark.parametrize(
    ("n_treated", "n_controls", "weights"),
    [
        (2, 2, None),
        (3, 3, None),
        (5, 15, None),
        (5, 15, np.full(15, 1 / 3)),  # 1:3 matching without replacement
        (3, 7, np.array([1.0, 2 / 3, 1 / 3, 1 / 3, 1 / 3, 1 / 3, 2 / 3])),  # with reuse
    ],
)
def test_welch_interval_holds_95_percent_under_the_null(n_treated, n_controls, weights):
    rng = np.random.default_rng(20200210 + n_treated * 100 + n_controls)
    t = _lognormal_folds(rng, REPLICATES, n_treated)
    c = _lognormal_folds(rng, REPLICATES, n_controls)
    r = compute_welch_difference(t, c, control_weights=weights)
    covered = (r["low"] <= 0.0) & (r["high"] >= 0.0)
    assert np.isfinite(r["low"]).all()
    assert covered.mean() >= 0.93, f"coverage {covered.mean():.3f} at {n_treated} vs {n_controls}"


# ---- proportions ------------------------------------------------------------------------------
def test_wilson_matches_statsmodels_and_zero_cells():
    from statsmodels.stats.proportion import proportion_confint

    for k, n in ((0, 3), (1, 3), (3, 3), (4, 17), (0, 1)):
        assert compute_wilson(k, n) == pytest.approx(proportion_confint(k, n, method="wilson"))
    assert compute_wilson(0, 3)[0] == 0.0 and compute_wilson(0, 3)[1] > 0.4
    assert np.isnan(compute_wilson(0, 0)).all()


@pytest.mark.parametrize(
    ("x1", "n1", "x2", "n2"),
    [(0, 3, 2, 6), (2, 3, 0, 6), (1, 5, 4, 15), (0, 3, 0, 6), (3, 3, 6, 6), (1, 2, 1, 2)],
)
def test_newcombe_matches_statsmodels(x1, n1, x2, n2):
    from statsmodels.stats.proportion import confint_proportions_2indep

    expected = confint_proportions_2indep(x1, n1, x2, n2, method="newcomb", compare="diff")
    assert compute_newcombe_difference(x1, n1, x2, n2) == pytest.approx(expected)


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
@pytest.mark.parametrize(
    ("x1", "n1", "x2", "n2"),
    [(0, 3, 2, 6), (2, 3, 0, 6), (1, 5, 4, 15), (1, 2, 1, 2), (0, 5, 1, 15)],
)
def test_koopman_matches_statsmodels(x1, n1, x2, n2):
    from statsmodels.stats.proportion import confint_proportions_2indep

    # statsmodels' score interval without the N / (N - 1) factor is Koopman's
    low, high = confint_proportions_2indep(
        x1, n1, x2, n2, method="score", compare="ratio", correction=False
    )
    mine = compute_koopman_ratio(x1, n1, x2, n2)
    assert mine[0] == pytest.approx(low, abs=1e-9)
    assert mine[1] == pytest.approx(high, rel=1e-8)


def _score_by_brute_force(theta, x1, n1, x2, n2):
    """Score statistic with the restricted MLE found numerically (not the closed form)."""

    def nll(p2):
        p1 = theta * p2
        first = x1 * np.log(p1) + (n1 - x1) * np.log1p(-p1)
        return -(first + x2 * np.log(p2) + (n2 - x2) * np.log1p(-p2))

    p2 = optimize.minimize_scalar(
        nll,
        bounds=(1e-12, min(1.0, 1.0 / theta) - 1e-12),
        method="bounded",
        options={"xatol": 1e-13},
    ).x
    p1 = theta * p2
    return (x1 / n1 - theta * x2 / n2) ** 2 / (p1 * (1 - p1) / n1 + theta**2 * p2 * (1 - p2) / n2)


@pytest.mark.parametrize(("x1", "n1", "x2", "n2"), [(3, 3, 6, 6), (5, 5, 3, 15)])
def test_koopman_with_a_full_arm_by_brute_force(x1, n1, x2, n2):
    # statsmodels' closed form breaks when x1 = n1; the limits still solve score = chi2(0.95, 1)
    low, high = compute_koopman_ratio(x1, n1, x2, n2)
    limit = stats.chi2.ppf(0.95, 1)
    for theta in (low, high):
        assert _score_by_brute_force(theta, x1, n1, x2, n2) == pytest.approx(limit, rel=1e-5)
    assert low < (x1 / n1) / (x2 / n2) < high


def test_koopman_not_estimable_without_events():
    assert np.isnan(compute_koopman_ratio(0, 3, 0, 6)).all()
    assert np.isnan(compute_koopman_ratio(1, 0, 1, 3)).all()


@pytest.mark.parametrize(("n1", "n2"), [(3, 9), (5, 15)])
def test_score_intervals_exact_coverage(n1, n2):
    """Exact coverage (enumerating every outcome) of the risk difference and ratio intervals
    under equal risks of 10, 30 and 50 %."""
    for p in (0.1, 0.3, 0.5):
        rd = rr = rr_total = 0.0
        for x1 in range(n1 + 1):
            for x2 in range(n2 + 1):
                prob = stats.binom.pmf(x1, n1, p) * stats.binom.pmf(x2, n2, p)
                low, high = compute_newcombe_difference(x1, n1, x2, n2)
                rd += prob * (low <= 0.0 <= high)
                low, high = compute_koopman_ratio(x1, n1, x2, n2)
                if not np.isnan(low):
                    rr_total += prob
                    rr += prob * (low <= 1.0 <= high)
        assert rd >= 0.93 and rr / rr_total >= 0.93, (n1, n2, p, rd, rr / rr_total)
