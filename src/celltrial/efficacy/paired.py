"""Before/after comparison of one marker in the same subjects (e.g. baseline vs day 14).

Primary: the Wilcoxon signed-rank test with the Hodges–Lehmann estimate and its exact
distribution-free interval — distribution-free, exact at n = 5, the analysis n allows. Secondary:
the paired t-test (on log values: the ratio of geometric means, what GraphPad Prism users expect).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

from celltrial.efficacy.observations import check_confidence, check_positive
from celltrial.efficacy.signedrank import (
    EXACT_LIMIT,
    ZeroMethod,
    compute_hodges_lehmann,
    compute_minimum_p_value,
    compute_signed_rank_p_value,
    compute_signed_ranks,
    compute_snapped,
    compute_walsh_interval,
)
from celltrial.errors import CelltrialError, DataError


@dataclass(frozen=True)
class PairedTTest:
    """Paired t-test on the analysis scale (log values when ``scale == "ratio"``)."""

    scale: str
    estimate: float
    ci: tuple[float, float]
    ci_level: float
    p_value: float
    t: float
    df: int
    sd: float


@dataclass(frozen=True)
class PairedComparison:
    """Result of :func:`compare_paired`. Effects are after relative to before.

    ``scale`` is ``"difference"`` (after − before) or ``"ratio"`` (after / before, from log
    values). ``n_ties`` counts non-zero differences whose absolute value equals another's
    (members of tie groups); ``statistic`` is T+, the sum of the (mid)ranks of the positive
    differences; ``min_p_value`` the smallest two-sided p the data could have given.
    """

    n: int
    n_missing: int
    n_zero: int
    n_ties: int
    scale: str
    hodges_lehmann: float
    ci: tuple[float, float]
    ci_level: float
    confidence: float
    p_value: float
    statistic: float
    exact: bool
    zero_method: str
    min_p_value: float
    t_test: PairedTTest
    method: str
    assumptions: tuple[str, ...]
    caveats: tuple[str, ...]

    @property
    def summary(self) -> pd.DataFrame:
        """One row per analysis: primary (signed-rank/HL) and secondary (t-test)."""
        t = self.t_test
        return pd.DataFrame(
            {
                "analysis": ["Wilcoxon signed-rank / Hodges–Lehmann", "paired t-test"],
                "scale": [self.scale, t.scale],
                "n": [self.n, self.n],
                "estimate": [self.hodges_lehmann, t.estimate],
                "ci_low": [self.ci[0], t.ci[0]],
                "ci_high": [self.ci[1], t.ci[1]],
                "ci_level": [self.ci_level, t.ci_level],
                "p_value": [self.p_value, t.p_value],
            }
        )


def _as_vector(values: ArrayLike | pd.Series, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1:
        raise DataError(f"{what} must be one-dimensional, got shape {array.shape}")
    if np.isinf(array).any():
        raise DataError(
            f"{what} holds an infinite value at #{int(np.flatnonzero(np.isinf(array))[0])}"
        )
    return array


def _paired_t(d: np.ndarray, *, log: bool, confidence: float) -> tuple[PairedTTest, list[str]]:
    n = d.size
    scale = "ratio" if log else "difference"
    back = np.exp if log else (lambda x: x)
    nan = float("nan")
    if n < 2:
        estimate = float(back(d[0])) if n else nan
        test = PairedTTest(scale, estimate, (nan, nan), confidence, nan, nan, 0, nan)
        return test, ["paired t-test needs at least 2 pairs"]
    mean = float(d.mean())
    sd = float(d.std(ddof=1))
    df = n - 1
    if np.ptp(compute_snapped(d)) == 0.0:  # equal up to floating-point noise
        test = PairedTTest(scale, float(back(mean)), (nan, nan), confidence, nan, nan, df, 0.0)
        return test, ["all differences are equal: the paired t-test is undefined"]
    se = sd / np.sqrt(n)
    t = mean / se
    half = float(stats.t.ppf(0.5 + confidence / 2.0, df)) * se
    test = PairedTTest(
        scale=scale,
        estimate=float(back(mean)),
        ci=(float(back(mean - half)), float(back(mean + half))),
        ci_level=confidence,
        p_value=float(2.0 * stats.t.sf(abs(t), df)),
        t=float(t),
        df=df,
        sd=sd,
    )
    return test, []


def compare_paired(
    before: ArrayLike | pd.Series,
    after: ArrayLike | pd.Series,
    *,
    log: bool = False,
    confidence: float = 0.95,
    zero_method: ZeroMethod = "wilcox",
    exact: bool | None = None,
) -> PairedComparison:
    """Compare paired values: Wilcoxon signed-rank p, Hodges–Lehmann estimate and exact CI.

    Pairs are matched by position (pandas Series must share their index). A pair with a missing
    value on either side is dropped and counted in ``n_missing``. With ``log=True`` the analysis
    runs on natural-log values and the estimate and interval are back-transformed to ratios
    (after/before); values ≤ 0 then raise :class:`DataError`.

    p-value: exact two-sided, from the sign-flip distribution of the observed midranks (exact with
    ties; zeros per ``zero_method``). Interval: ordered Walsh averages, level rule in
    :func:`~celltrial.efficacy.signedrank.compute_walsh_interval`. ``exact=None`` means exact up
    to :data:`~celltrial.efficacy.signedrank.EXACT_LIMIT` pairs, normal approximations above.
    """
    confidence = check_confidence(confidence)
    if zero_method not in ("wilcox", "pratt"):
        raise CelltrialError(f"zero_method must be 'wilcox' or 'pratt', got {zero_method!r}")
    if (
        isinstance(before, pd.Series)
        and isinstance(after, pd.Series)
        and not before.index.equals(after.index)
    ):
        raise DataError("before and after are Series with different indexes; align them first")
    x = _as_vector(before, "before")
    y = _as_vector(after, "after")
    if x.size != y.size:
        raise DataError(f"before has {x.size} values but after has {y.size}; they must pair up")
    complete = ~(np.isnan(x) | np.isnan(y))
    n_missing = int((~complete).sum())
    x, y = x[complete], y[complete]
    if log:
        check_positive(x, what="before")
        check_positive(y, what="after")
        d = np.log(y) - np.log(x)
    else:
        d = y - x
    n = int(d.size)
    use_exact = n <= EXACT_LIMIT if exact is None else bool(exact)

    # signs, zeros and ties are judged on snapped differences (lab rounding, not float noise)
    signed = compute_signed_ranks(compute_snapped(d), zero_method=zero_method)
    p_value = compute_signed_rank_p_value(signed, exact=use_exact) if n else float("nan")
    hl = compute_hodges_lehmann(d)
    low, high, level = compute_walsh_interval(d, confidence=confidence, exact=use_exact)
    t_test, t_caveats = _paired_t(d, log=log, confidence=confidence)
    if log:
        hl, low, high = float(np.exp(hl)), float(np.exp(low)), float(np.exp(high))
    min_p = compute_minimum_p_value(signed.n_nonzero)

    return PairedComparison(
        n=n,
        n_missing=n_missing,
        n_zero=signed.n_zero,
        n_ties=signed.n_tied,
        scale="ratio" if log else "difference",
        hodges_lehmann=hl,
        ci=(low, high),
        ci_level=level,
        confidence=confidence,
        p_value=p_value,
        statistic=signed.statistic,
        exact=use_exact,
        zero_method=zero_method,
        min_p_value=min_p,
        t_test=t_test,
        method=_method(log=log, exact=use_exact, zero_method=zero_method),
        assumptions=(
            "pairs are independent of one another (one pair per subject)",
            "differences"
            + (" of log values" if log else "")
            + " come from a continuous distribution symmetric about its centre (signed-rank, "
            "Hodges–Lehmann)",
            "paired t-test: differences" + (" of log values" if log else "") + " are normal",
        ),
        caveats=tuple(
            _caveats(
                n=n,
                n_missing=n_missing,
                n_nonzero=signed.n_nonzero,
                n_zero=signed.n_zero,
                n_ties=signed.n_tied,
                exact=use_exact,
                zero_method=zero_method,
                confidence=confidence,
                level=level,
                min_p=min_p,
            )
            + t_caveats
        ),
    )


def _method(*, log: bool, exact: bool, zero_method: str) -> str:
    zeros = (
        "zero differences dropped before ranking (Wilcoxon)"
        if zero_method == "wilcox"
        else "zero differences ranked, then their ranks dropped (Pratt)"
    )
    if exact:
        p_text = (
            "exact two-sided p from the sign-flip distribution of the observed midranks "
            "(exact also with ties)"
        )
        ci_text = "exact distribution-free interval from the ordered Walsh averages"
    else:
        p_text = "two-sided p by normal approximation (tie-corrected variance, continuity ½)"
        ci_text = "interval from the ordered Walsh averages, normal-approximation order"
    scale = (
        "natural-log values, estimate and interval back-transformed to ratios (after/before); "
        if log
        else "differences after − before; "
    )
    t_text = (
        "secondary: paired t-test on log values, ratio of geometric means with t interval"
        if log
        else "secondary: paired t-test, mean difference with t interval"
    )
    return (
        f"Wilcoxon signed-rank test on {scale}{p_text}; {zeros}; Hodges–Lehmann estimate (median "
        f"of the Walsh averages) with {ci_text} (Hollander & Wolfe); {t_text}"
    )


def _caveats(
    *,
    n: int,
    n_missing: int,
    n_nonzero: int,
    n_zero: int,
    n_ties: int,
    exact: bool,
    zero_method: str,
    confidence: float,
    level: float,
    min_p: float,
) -> list[str]:
    out: list[str] = []
    if n == 0:
        return ["no complete pairs: nothing to compare"]
    if n_missing:
        out.append(f"{n_missing} pair(s) with a missing value were dropped")
    alpha = 1.0 - confidence
    if exact and min_p > alpha:
        out.append(
            f"with {n_nonzero} non-zero paired difference(s) the smallest achievable two-sided "
            f"exact p is {min_p:.4g}: p < {alpha:g} is impossible whatever the effect"
        )
    if n_zero:
        rule = "dropped before ranking" if zero_method == "wilcox" else "handled by Pratt's rule"
        out.append(
            f"{n_zero} zero difference(s) {rule}; they still enter the Hodges–Lehmann estimate"
        )
    if n_ties:
        out.append(
            f"{n_ties} differences are tied in absolute value: midranks used; the p-value is exact "
            "for the observed ranks, the interval's level assumes continuous data"
        )
    if n == 1:
        out.append("with 1 pair no interval has positive coverage")
    elif level < confidence - 1e-12:
        out.append(
            f"no {confidence:.4g} interval exists with {n} pairs; the widest available (smallest "
            f"to largest difference) has level {level:.4g}"
        )
    if not exact:
        out.append(f"more than {EXACT_LIMIT} pairs: normal approximations used for p and interval")
    return out
