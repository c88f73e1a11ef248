"""Multiplicity: Holm-adjusted p-values and the caveat every multi-test result carries."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def compute_holm(p_values: ArrayLike) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values; NaN stays NaN and is not counted as a test.

    Controls the family-wise error rate under any dependence between the tests.
    """
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    present = np.flatnonzero(~np.isnan(p))
    m = present.size
    if m == 0:
        return adjusted
    order = present[np.argsort(p[present], kind="stable")]
    scaled = p[order] * (m - np.arange(m))
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted


def multiplicity_caveat(
    n_tests: int, *, alpha: float = 0.05, what: str = "markers × visits"
) -> str | None:
    """The caveat for ``n_tests`` unadjusted tests of ``what``, or ``None`` for a single test."""
    if n_tests <= 1:
        return None
    return (
        f"{n_tests} tests ({what}) were run; unadjusted p-values are descriptive: at "
        f"α = {alpha:g} about {n_tests * alpha:.1f} would fall below α by chance alone if nothing "
        "changed. Holm-adjusted p-values (family-wise error over these tests) are given alongside."
    )
