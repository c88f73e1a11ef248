"""Signed-rank machinery against hand-worked distributions, a textbook example and scipy."""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from celltrial.efficacy.signedrank import (
    compute_hodges_lehmann,
    compute_minimum_p_value,
    compute_signed_rank_null,
    compute_signed_rank_p_value,
    compute_signed_ranks,
    compute_snapped,
    compute_walsh_averages,
    compute_walsh_interval,
    compute_walsh_level,
)

# Hollander, Wolfe & Chicken, Example 3.1 (Hamilton depression scale factor IV, 9 patients);
# also the example of R's wilcox.test: V = 40, one-sided p = 0.01953, two-sided 0.0390625.
HW_FIRST = np.array([1.83, 0.50, 1.62, 2.48, 1.68, 1.88, 1.55, 3.06, 1.30])
HW_SECOND = np.array([0.878, 0.647, 0.598, 2.05, 1.06, 1.29, 1.06, 3.14, 1.29])


def brute_force_p(differences: np.ndarray, *, zero_method: str) -> Fraction:
    """Two-sided p by listing every sign pattern (independent of the library's code)."""
    d = np.asarray(differences, float)
    if zero_method == "wilcox":
        d = d[d != 0]
        ranks = stats.rankdata(np.abs(d))
    else:
        ranks = stats.rankdata(np.abs(d))[d != 0]
        d = d[d != 0]
    ranks2 = [round(2 * r) for r in ranks]
    total = sum(ranks2)
    observed = sum(r for r, x in zip(ranks2, d, strict=True) if x > 0)
    extreme = 0
    for signs in itertools.product((0, 1), repeat=len(ranks2)):
        t = sum(r for r, s in zip(ranks2, signs, strict=True) if s)
        extreme += abs(2 * t - total) >= abs(2 * observed - total)
    return Fraction(extreme, 2 ** len(ranks2))


def test_null_distribution_n5_by_hand() -> None:
    # number of subsets of {1,…,5} with each sum 0…15: 2^5 = 32 sign patterns in all
    counts = [1, 1, 1, 2, 2, 3, 3, 3, 3, 3, 3, 2, 2, 1, 1, 1]
    support, prob = compute_signed_rank_null([1, 2, 3, 4, 5])
    integer = support == np.floor(support)
    assert prob[~integer].sum() == 0
    assert list(support[integer]) == list(range(16))
    assert list(prob[integer] * 32) == counts
    # P(T+ ≤ 0) = 1/32, so the most extreme two-sided p is 2/32
    assert prob[0] == 1 / 32
    assert compute_minimum_p_value(5) == 0.0625


def test_null_distribution_with_midranks_matches_enumeration() -> None:
    ranks = [1.5, 1.5, 3, 4.5, 4.5]
    _, prob = compute_signed_rank_null(ranks)
    expected: dict[float, int] = {}
    for signs in itertools.product((0, 1), repeat=5):
        t = sum(r for r, s in zip(ranks, signs, strict=True) if s)
        expected[t] = expected.get(t, 0) + 1
    for value, count in expected.items():
        assert prob[int(value * 2)] == count / 32
    assert prob.sum() == pytest.approx(1.0)


def test_null_rejects_ranks_off_the_half_grid() -> None:
    with pytest.raises(ValueError):
        compute_signed_rank_null([1.0, 2.3])


def test_all_positive_n5_two_sided_p_is_0_0625() -> None:
    signed = compute_signed_ranks(np.array([0.3, 1.2, 2.0, 0.7, 5.0]), zero_method="wilcox")
    assert signed.statistic == 15
    assert compute_signed_rank_p_value(signed, exact=True) == 0.0625


def test_textbook_example_hollander_wolfe() -> None:
    d = HW_FIRST - HW_SECOND
    signed = compute_signed_ranks(d, zero_method="wilcox")
    assert signed.statistic == 40  # negative differences have ranks 2 and 3: T+ = 45 − 5
    # P(T+ ≥ 40) = P(T+ ≤ 5) = 10/512 (subsets of 1…9 summing to ≤ 5, counted by hand)
    assert compute_signed_rank_p_value(signed, exact=True) == pytest.approx(2 * 10 / 512)
    assert compute_hodges_lehmann(d) == pytest.approx(0.46)
    low, high, level = compute_walsh_interval(d, confidence=0.95, exact=True)
    # P(T+ ≤ 5) = 10/512 → k = 6 gives 1 − 20/512 = 96.09 %; k = 7 would give 1 − 28/512 < 95 %
    assert level == pytest.approx(1 - 20 / 512)
    assert compute_walsh_level(9, 7, exact=True) == pytest.approx(1 - 28 / 512)
    walsh = sorted(
        (d[i] + d[j]) / 2 for i, j in itertools.combinations_with_replacement(range(9), 2)
    )
    assert (low, high) == pytest.approx((walsh[5], walsh[39]))
    assert (low, high) == pytest.approx((0.010, 0.786))


@pytest.mark.parametrize("seed", range(8))
def test_exact_p_matches_scipy_without_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    d = rng.normal(0.4, 1.0, size=int(rng.integers(3, 16)))
    signed = compute_signed_ranks(d, zero_method="wilcox")
    expected = stats.wilcoxon(d, method="exact").pvalue
    assert compute_signed_rank_p_value(signed, exact=True) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("zero_method", ["wilcox", "pratt"])
@pytest.mark.parametrize(
    "differences",
    [
        [1, 1, 2, -3, 0, 4],
        [2, 2, 2, -2, 5, 0, 0, 7],
        [0.5, -0.5, 1.5, 1.5, 1.5, 3.0, -4.0],
        [15, -7, 5, 20, 0, -9, 17, -12, 5, -10],  # Wikipedia's worked example (after − before)
    ],
)
def test_exact_p_with_ties_and_zeros_matches_enumeration(zero_method: str, differences) -> None:
    d = np.asarray(differences, float)
    signed = compute_signed_ranks(d, zero_method=zero_method)  # type: ignore[arg-type]
    got = compute_signed_rank_p_value(signed, exact=True)
    assert got == pytest.approx(float(brute_force_p(d, zero_method=zero_method)), abs=1e-15)
    perm = stats.wilcoxon(
        d, zero_method=zero_method, method=stats.PermutationMethod(n_resamples=np.inf)
    )
    assert got == pytest.approx(perm.pvalue, abs=1e-12)


def test_counts_of_zeros_and_ties() -> None:
    signed = compute_signed_ranks(np.array([1.0, -1.0, 2.0, 0.0, 0.0, 3.0]), zero_method="wilcox")
    assert signed.n_zero == 2
    assert signed.n_tied == 2
    assert list(signed.ranks) == [1.5, 1.5, 3.0, 4.0]
    pratt = compute_signed_ranks(np.array([1.0, -1.0, 2.0, 0.0, 0.0, 3.0]), zero_method="pratt")
    assert list(pratt.ranks) == [3.5, 3.5, 5.0, 6.0]


def test_normal_approximation_matches_scipy_approx() -> None:
    rng = np.random.default_rng(3)
    d = np.round(rng.normal(0.2, 1.0, 80), 1)  # rounding makes ties and zeros
    signed = compute_signed_ranks(d, zero_method="wilcox")
    expected = stats.wilcoxon(d, method="approx", correction=True).pvalue
    assert compute_signed_rank_p_value(signed, exact=False) == pytest.approx(expected, rel=1e-10)


def test_hodges_lehmann_by_hand() -> None:
    d = np.array([-1.0, 2.0, 4.0])
    # Walsh averages: -1, 0.5, 1.5, 2, 3, 4 → median (1.5 + 2) / 2
    assert sorted(compute_walsh_averages(d)) == [-1.0, 0.5, 1.5, 2.0, 3.0, 4.0]
    assert compute_hodges_lehmann(d) == 1.75


def test_interval_n5_is_full_range_at_93_75_percent() -> None:
    d = np.array([0.2, -0.1, 0.9, 0.4, 0.3])
    low, high, level = compute_walsh_interval(d, confidence=0.95, exact=True)
    assert (low, high) == (-0.1, 0.9)
    assert level == 1 - 2 / 32
    # 90 % is achievable with n = 5: k = 2 gives 1 − 2·P(T+ ≤ 1) = 1 − 4/32 = 87.5 % < 90 %,
    # so k = 1 stays; at 85 % k = 2 (87.5 %) is the shortest interval not below nominal
    assert compute_walsh_interval(d, confidence=0.85, exact=True)[2] == 1 - 4 / 32


def enumerated_cdf(n: int) -> list[Fraction]:
    counts = [0] * (n * (n + 1) // 2 + 1)
    for signs in itertools.product((0, 1), repeat=n):
        counts[sum(r for r, s in zip(range(1, n + 1), signs, strict=True) if s)] += 1
    return [Fraction(sum(counts[: t + 1]), 2**n) for t in range(len(counts))]


@pytest.mark.parametrize("n", [2, 3, 6, 8, 11])
@pytest.mark.parametrize("confidence", [0.8, 0.9, 0.95, 0.99])
def test_interval_rule_shortest_not_below_nominal(n: int, confidence: float) -> None:
    cdf = enumerated_cdf(n)
    levels = [1 - 2 * float(cdf[k - 1]) for k in range(1, (n * (n + 1) // 2 + 1) // 2 + 1)]
    d = np.arange(1.0, n + 1) ** 1.5  # distinct Walsh averages
    _, _, level = compute_walsh_interval(d, confidence=confidence, exact=True)
    reaching = [lv for lv in levels if lv >= confidence]
    assert level == pytest.approx(min(reaching) if reaching else levels[0])


def test_interval_with_one_pair_has_no_coverage() -> None:
    low, high, level = compute_walsh_interval(np.array([1.0]), confidence=0.95, exact=True)
    assert np.isnan(low) and np.isnan(high) and level == 0.0


def test_normal_interval_close_to_exact_at_50_pairs() -> None:
    d = np.random.default_rng(5).normal(size=50)
    exact = compute_walsh_interval(d, confidence=0.95, exact=True)
    approx = compute_walsh_interval(d, confidence=0.95, exact=False)
    assert approx[2] >= 0.95 and exact[2] >= 0.95
    assert approx[2] == pytest.approx(exact[2], abs=0.003)


def test_snapping_makes_rounded_lab_values_tie() -> None:
    raw = np.array([1.3 - 1.1, 2.5 - 2.3, 0.7 - 0.7, 1.0 - 0.9 - 0.1])
    assert raw[0] != raw[1] and raw[3] != 0.0  # floating-point noise
    snapped = compute_snapped(raw)
    assert snapped[0] == snapped[1]
    assert snapped[3] == 0.0 and not np.signbit(snapped[3])
