"""The Wilcoxon signed-rank test and its Hodges–Lehmann estimate, as pure array functions.

Everything here works on one vector of paired differences (after − before, or of log values):

* :func:`compute_signed_ranks` ranks |differences| with midranks and applies the zero rule;
* :func:`compute_signed_rank_null` is the exact null distribution of T+ (sum of positive ranks)
  for any set of (mid)ranks: every sign is + or − with probability ½, independently;
* :func:`compute_signed_rank_p_value` is the two-sided p-value from it (or from the normal
  approximation above :data:`EXACT_LIMIT` pairs);
* :func:`compute_walsh_averages`, :func:`compute_hodges_lehmann` and
  :func:`compute_walsh_interval` give the estimate and its distribution-free interval
  (Hollander, Wolfe & Chicken, *Nonparametric Statistical Methods*, 3rd ed., §3.2–3.3).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

#: Up to this many pairs p-values and intervals are exact; above it, normal approximations
#: (the exact values then differ from them by well under 0.001 and cost O(n³) to compute).
EXACT_LIMIT = 50

#: Differences are compared at this many significant digits of the largest one, so that values
#: rounded in a lab report tie (and cancel to zero) as they should, not by floating-point noise.
TIE_DIGITS = 12

ZeroMethod = Literal["wilcox", "pratt"]


@dataclass(frozen=True)
class SignedRanks:
    """Ranks of the non-zero |differences| and their signs, after the zero rule."""

    ranks: np.ndarray
    positive: np.ndarray
    n_zero: int
    n_tied: int

    @property
    def statistic(self) -> float:
        """T+: the sum of the ranks of the positive differences."""
        return float(self.ranks[self.positive].sum())

    @property
    def n_nonzero(self) -> int:
        return int(self.ranks.size)


def compute_snapped(differences: ArrayLike) -> np.ndarray:
    """Round ``differences`` to :data:`TIE_DIGITS` significant digits of the largest magnitude."""
    d = np.asarray(differences, dtype=float)
    scale = float(np.max(np.abs(d))) if d.size else 0.0
    if scale == 0.0 or not np.isfinite(scale):
        return d.copy()
    decimals = TIE_DIGITS - 1 - int(np.floor(np.log10(scale)))
    return np.round(d, decimals) + 0.0  # + 0.0 turns -0.0 into 0.0


def compute_signed_ranks(differences: ArrayLike, *, zero_method: ZeroMethod) -> SignedRanks:
    """Midranks of |differences| with the zero rule applied.

    ``"wilcox"`` drops zero differences before ranking (Wilcoxon 1945; R, SAS and scipy's
    default); ``"pratt"`` ranks them with the others and then drops their ranks (Pratt 1959).
    """
    d = np.asarray(differences, dtype=float)
    zero = d == 0.0
    if zero_method == "wilcox":
        nonzero = d[~zero]
        ranks = stats.rankdata(np.abs(nonzero), method="average")
    elif zero_method == "pratt":
        nonzero = d[~zero]
        ranks = stats.rankdata(np.abs(d), method="average")[~zero]
    else:
        raise ValueError(f"zero_method must be 'wilcox' or 'pratt', got {zero_method!r}")
    _, counts = np.unique(np.abs(nonzero), return_counts=True)
    return SignedRanks(
        ranks=ranks,
        positive=nonzero > 0,
        n_zero=int(zero.sum()),
        n_tied=int(counts[counts > 1].sum()),
    )


def compute_signed_rank_null(ranks: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Exact null distribution of T+ = Σ rᵢ·[sign i is +] with independent fair signs.

    ``ranks`` are positive multiples of ½ (midranks). Given the observed ranks this is the exact
    permutation (sign-flip) distribution, valid with ties; with ranks 1…n it is Wilcoxon's
    table. Returns ``(support, probabilities)`` with the support in steps of ½ from 0 to Σ rᵢ.
    """
    r = np.asarray(ranks, dtype=float)
    doubled = np.rint(r * 2.0).astype(np.int64)
    if np.any(doubled <= 0) or np.any(doubled != r * 2.0):
        raise ValueError("ranks must be positive multiples of 1/2")
    total = int(doubled.sum())
    prob = np.zeros(total + 1)
    prob[0] = 1.0
    top = 0
    for step in doubled:
        shifted = prob[: top + 1].copy()
        prob[: top + 1] *= 0.5
        prob[step : step + top + 1] += 0.5 * shifted
        top += int(step)
    return np.arange(total + 1) / 2.0, prob


def compute_signed_rank_p_value(signed: SignedRanks, *, exact: bool) -> float:
    """Two-sided p-value P(|T+ − E T+| ≥ |t − E T+|) under the null.

    Exact: from :func:`compute_signed_rank_null` of the observed (mid)ranks. Otherwise normal
    approximation with the exact conditional variance Σ rᵢ²/4 (tie-corrected) and a continuity
    correction of ½ (as R's ``wilcox.test``).
    """
    ranks = signed.ranks
    if ranks.size == 0:
        return 1.0
    twice_total = int(np.rint(ranks.sum() * 2.0))
    twice_stat = int(np.rint(signed.statistic * 2.0))
    if exact:
        _, prob = compute_signed_rank_null(ranks)
        twice_support = np.arange(twice_total + 1)
        # |T − S/2| ≥ |t − S/2|  ⇔  |4T − 2S| ≥ |4t − 2S|, all integers in half-rank units
        extreme = np.abs(2 * twice_support - twice_total) >= abs(2 * twice_stat - twice_total)
        return float(min(1.0, prob[extreme].sum()))
    centre = ranks.sum() / 2.0
    sd = float(np.sqrt((ranks**2).sum() / 4.0))
    z = max(abs(signed.statistic - centre) - 0.5, 0.0) / sd
    return float(min(1.0, 2.0 * stats.norm.sf(z)))


def compute_minimum_p_value(n_nonzero: int) -> float:
    """Smallest two-sided exact p reachable with ``n_nonzero`` non-zero differences: 2/2^m.

    All signs alike is the unique most extreme pattern, whatever the ties.
    """
    return float(min(1.0, 2.0 ** (1 - n_nonzero))) if n_nonzero > 0 else 1.0


def compute_walsh_averages(differences: ArrayLike) -> np.ndarray:
    """All n(n+1)/2 Walsh averages (dᵢ + dⱼ)/2, i ≤ j (each difference with itself included)."""
    d = np.asarray(differences, dtype=float)
    i, j = np.triu_indices(d.size)
    return (d[i] + d[j]) / 2.0


def compute_hodges_lehmann(differences: ArrayLike) -> float:
    """Hodges–Lehmann estimate of the centre of symmetry: the median of the Walsh averages."""
    walsh = compute_walsh_averages(differences)
    return float(np.median(walsh)) if walsh.size else float("nan")


@lru_cache(maxsize=64)
def _untied_cdf(n: int) -> np.ndarray:
    """P(T+ ≤ t), t = 0…n(n+1)/2, for ranks 1…n (read-only, cached)."""
    _, prob = compute_signed_rank_null(np.arange(1, n + 1))
    cdf = np.cumsum(prob[::2])  # integer support only: odd half-steps carry no mass
    cdf.setflags(write=False)
    return cdf


def compute_walsh_level(n: int, k: int, *, exact: bool) -> float:
    """Coverage of [W₍ₖ₎, W₍ₘ₊₁₋ₖ₎] among M = n(n+1)/2 ordered Walsh averages: 1 − 2·P(T+ ≤ k−1).

    Exact from Wilcoxon's null distribution of T+ with n untied ranks, or its normal
    approximation with continuity correction.
    """
    if exact:
        return float(1.0 - 2.0 * _untied_cdf(n)[k - 1])
    mean = n * (n + 1) / 4.0
    sd = np.sqrt(n * (n + 1) * (2 * n + 1) / 24.0)
    return float(1.0 - 2.0 * stats.norm.cdf((k - 0.5 - mean) / sd))


def compute_walsh_interval(
    differences: ArrayLike, *, confidence: float, exact: bool
) -> tuple[float, float, float]:
    """Distribution-free interval for the centre of symmetry: ``(low, high, achieved level)``.

    The interval is [W₍ₖ₎, W₍ₘ₊₁₋ₖ₎] of the M ordered Walsh averages. Rule: the largest k (the
    shortest interval) whose achieved level is ≥ ``confidence``; when even k = 1 — the full range
    of the differences — falls short, that widest interval and its level (n = 5: 1 − 2/32 =
    93.75 %). This is R's ``wilcox.test`` rule. An interval whose level is 0 (n = 1) is not
    given: (NaN, NaN, 0).
    """
    d = np.asarray(differences, dtype=float)
    n = d.size
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    m = n * (n + 1) // 2
    k_max = (m + 1) // 2
    if exact:
        levels = 1.0 - 2.0 * _untied_cdf(n)[:k_max]
        reaching = np.flatnonzero(levels >= confidence - 1e-12)
        k = int(reaching[-1]) + 1 if reaching.size else 1
    else:
        mean = n * (n + 1) / 4.0
        sd = np.sqrt(n * (n + 1) * (2 * n + 1) / 24.0)
        z = stats.norm.ppf((1.0 - confidence) / 2.0)
        k = int(np.clip(np.floor(mean + 0.5 + z * sd), 1, k_max))
    level = compute_walsh_level(n, k, exact=exact)
    if level <= 0.0:
        return float("nan"), float("nan"), 0.0
    walsh = np.partition(compute_walsh_averages(d), (k - 1, m - k))
    return float(walsh[k - 1]), float(walsh[m - k]), level
