"""Find reporting limits hidden as plain numbers: a column's floor or ceiling repeated many times.

A laboratory that reports "> 21" as "21" leaves a tell-tale spike of identical values at the top
of a column (D-dimer: 172 of 630 results are exactly 21). Such values are censored, not measured.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MIN_REPEATS = 3
MIN_SHARE = 0.005  # of the column's results
MAX_BEYOND = 0.02  # share of results allowed beyond the limit (re-runs after dilution)
SPIKE = 3.0  # times the typical repeat count of neighbouring values
MIN_RESULTS = 20


def compute_reporting_limits(values: np.ndarray) -> tuple[float | None, float | None]:
    """(floor, ceiling) of plain numbers in ``values``; ``None`` where there is no such spike.

    Only positive values can be limits (0 is a physical bound, e.g. eosinophils 0 %; negatives are
    sentinels).
    """
    finite = values[np.isfinite(values)]
    n = len(finite)
    if n < MIN_RESULTS:
        return None, None
    counts = pd.Series(finite).value_counts().sort_index()
    levels = counts.index.to_numpy(dtype=float)
    sizes = counts.to_numpy()
    below = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    above = n - below - sizes
    floor = _spike(levels, sizes, below, n, np.quantile(finite, 0.1), lower=True)
    ceiling = _spike(levels, sizes, above, n, np.quantile(finite, 0.9), lower=False)
    return floor, ceiling


def _spike(
    levels: np.ndarray, sizes: np.ndarray, beyond: np.ndarray, n: int, edge: float, *, lower: bool
) -> float | None:
    eligible = (
        (beyond <= MAX_BEYOND * n) & (sizes >= max(MIN_REPEATS, MIN_SHARE * n)) & (levels > 0)
    )
    if not eligible.any():
        return None
    index = int(np.flatnonzero(eligible)[np.argmax(sizes[eligible])])
    level = levels[index]
    region = (levels <= edge) if lower else (levels >= edge)
    region[index] = False
    typical = float(np.quantile(sizes[region], 0.9)) if region.any() else 1.0
    return float(level) if sizes[index] >= SPIKE * max(typical, 1.0) else None
