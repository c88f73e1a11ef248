"""compare_paired: the primary signed-rank/HL analysis and the secondary paired t-test."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from celltrial.efficacy import compare_paired
from celltrial.errors import CelltrialError, DataError

# t(0.975, 4) from a printed t table (e.g. Fisher & Yates): 2.776
T_975_DF4 = 2.776445105


def test_five_patients_all_improving() -> None:
    before = [120.0, 80.0, 150.0, 60.0, 95.0]
    after = [30.0, 40.0, 20.0, 35.0, 50.0]
    result = compare_paired(before, after)
    d = np.array(after) - np.array(before)
    assert result.n == 5 and result.n_missing == 0 and result.n_zero == 0
    assert result.p_value == 0.0625  # all 5 differences negative: 2 × 1/32
    assert result.min_p_value == 0.0625
    assert result.ci == (d.min(), d.max())
    assert result.ci_level == 0.9375
    assert result.exact
    assert any("smallest achievable two-sided exact p is 0.0625" in c for c in result.caveats)
    assert any("widest available" in c and "0.9375" in c for c in result.caveats)
    walsh = [(d[i] + d[j]) / 2 for i in range(5) for j in range(i, 5)]
    assert result.hodges_lehmann == np.median(walsh)
    assert "exact" in result.method and "Wilcoxon" in result.method


def test_missing_pairs_dropped_and_counted() -> None:
    result = compare_paired([1.0, np.nan, 3.0, 4.0, 2.0], [2.0, 5.0, np.nan, 6.5, 2.5])
    assert result.n == 3 and result.n_missing == 2
    assert any("2 pair(s) with a missing value" in c for c in result.caveats)


def test_log_scale_reports_ratios_and_geometric_mean_ratio_by_hand() -> None:
    before = np.array([10.0, 40.0, 5.0, 80.0, 20.0])
    after = np.array([5.0, 10.0, 2.5, 40.0, 4.0])
    result = compare_paired(before, after, log=True)
    ratios = after / before  # 0.5, 0.25, 0.5, 0.5, 0.2
    logs = np.log(ratios)
    walsh = [(logs[i] + logs[j]) / 2 for i in range(5) for j in range(i, 5)]
    assert result.scale == "ratio"
    assert result.hodges_lehmann == pytest.approx(math.exp(np.median(walsh)))
    assert result.ci == pytest.approx((0.2, 0.5))  # full range of the ratios
    assert "back-transformed to ratios" in result.method
    # ratio of geometric means = geometric mean of the ratios = (0.5³ · 0.25 · 0.2)^(1/5)
    gmr = (0.5**3 * 0.25 * 0.2) ** (1 / 5)
    t = result.t_test
    assert t.scale == "ratio" and t.df == 4
    assert t.estimate == pytest.approx(gmr)
    sd = math.sqrt(sum((x - logs.mean()) ** 2 for x in logs) / 4)
    half = T_975_DF4 * sd / math.sqrt(5)
    assert t.ci == pytest.approx((gmr * math.exp(-half), gmr * math.exp(half)), rel=1e-8)
    t_stat = logs.mean() / (sd / math.sqrt(5))
    assert t.t == pytest.approx(t_stat)
    assert t.p_value == pytest.approx(2 * stats.t.sf(abs(t_stat), 4))


def test_paired_t_on_raw_scale_matches_scipy() -> None:
    before = [7.1, 6.2, 9.0, 5.5, 8.8, 6.0]
    after = [6.0, 6.6, 7.1, 4.9, 8.0, 5.2]
    result = compare_paired(before, after)
    reference = stats.ttest_rel(after, before)
    assert result.t_test.p_value == pytest.approx(reference.pvalue)
    ci = reference.confidence_interval(0.95)
    assert result.t_test.ci == pytest.approx((ci.low, ci.high))
    assert result.t_test.estimate == pytest.approx(np.mean(np.subtract(after, before)))


def test_zero_and_tied_differences_are_counted_and_explained() -> None:
    before = [5.0, 6.0, 7.0, 8.0, 9.0, 4.0]
    after = [5.0, 5.0, 8.0, 7.0, 12.0, 6.0]  # d = 0, −1, 1, −1, 3, 2
    wilcox = compare_paired(before, after)
    assert wilcox.n_zero == 1 and wilcox.n_ties == 3
    expected = stats.wilcoxon(
        np.subtract(after, before), method=stats.PermutationMethod(n_resamples=np.inf)
    )
    assert wilcox.p_value == pytest.approx(expected.pvalue)
    assert any("zero difference" in c for c in wilcox.caveats)
    assert any("midranks" in c for c in wilcox.caveats)
    pratt = compare_paired(before, after, zero_method="pratt")
    assert "Pratt" in pratt.method
    # ranks among all six: |0| → 1, the three |1| → midrank 3, |2| → 5, |3| → 6; T+ = 3 + 6 + 5
    assert pratt.statistic == 14.0
    assert wilcox.statistic == 2.0 + 5.0 + 4.0  # zero dropped: |1| → midrank 2, |2| → 4, |3| → 5


def test_rounded_lab_values_tie_exactly() -> None:
    result = compare_paired([1.1, 2.3, 0.7, 3.0], [1.3, 2.5, 0.7, 3.9])
    assert result.n_zero == 1 and result.n_ties == 2


def test_large_sample_uses_normal_approximation() -> None:
    rng = np.random.default_rng(11)
    before = rng.normal(10, 2, 60)
    after = before + rng.normal(0.5, 1, 60)
    result = compare_paired(before, after)
    assert not result.exact
    expected = stats.wilcoxon(after - before, method="approx", correction=True).pvalue
    assert result.p_value == pytest.approx(expected)
    assert result.ci_level >= 0.95
    assert any("normal approximations" in c for c in result.caveats)
    forced = compare_paired(before, after, exact=True)
    assert forced.exact
    assert forced.p_value == pytest.approx(stats.wilcoxon(after - before, method="exact").pvalue)


def test_pandas_series_must_share_index() -> None:
    a = pd.Series([1.0, 2.0, 3.0], index=["S1", "S2", "S3"])
    b = pd.Series([1.5, 2.5, 3.5], index=["S2", "S1", "S3"])
    with pytest.raises(DataError, match="different indexes"):
        compare_paired(a, b)
    assert compare_paired(a, b.sort_index()).n == 3


@pytest.mark.parametrize(
    ("before", "after", "kwargs", "error", "match"),
    [
        ([1.0, 2.0], [1.0], {}, DataError, "pair up"),
        ([1.0, 0.0], [1.0, 2.0], {"log": True}, DataError, "log scale needs values > 0"),
        ([1.0, np.inf], [1.0, 2.0], {}, DataError, "infinite"),
        ([1.0, 2.0], [1.0, 2.0], {"confidence": 1.0}, CelltrialError, "confidence"),
        ([1.0, 2.0], [1.0, 2.0], {"zero_method": "zsplit"}, CelltrialError, "zero_method"),
    ],
)
def test_bad_input_raises(before, after, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        compare_paired(before, after, **kwargs)


def test_degenerate_sizes_do_not_crash() -> None:
    empty = compare_paired([np.nan], [1.0])
    assert empty.n == 0 and math.isnan(empty.p_value)
    assert "no complete pairs" in empty.caveats[0]
    one = compare_paired([1.0], [2.0])
    assert one.p_value == 1.0 and math.isnan(one.ci[0])
    assert any("no interval" in c for c in one.caveats)
    same = compare_paired([1.0, 2.0, 3.0], [2.0, 3.0, 4.0])
    assert math.isnan(same.t_test.p_value)
    assert any("t-test is undefined" in c for c in same.caveats)
    halved = compare_paired([2.4, 1.8, 0.3], [1.2, 0.9, 0.15], log=True)  # log ratios: float noise
    assert math.isnan(halved.t_test.p_value) and halved.t_test.estimate == pytest.approx(0.5)


def test_summary_frame_has_both_analyses() -> None:
    summary = compare_paired([1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 2.5, 3.9, 4.2, 6.0]).summary
    assert list(summary["analysis"]) == ["Wilcoxon signed-rank / Hodges–Lehmann", "paired t-test"]
    assert {"estimate", "ci_low", "ci_high", "ci_level", "p_value"} <= set(summary.columns)


def test_result_is_frozen() -> None:
    result = compare_paired([1.0, 2.0], [2.0, 3.0])
    with pytest.raises(AttributeError):
        result.p_value = 0.0  # type: ignore[misc]
