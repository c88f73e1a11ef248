"""Input checks and catalogue look-ups shared by the efficacy analyses of observation frames."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from celltrial.catalogue import load_catalogue
from celltrial.errors import CelltrialError, DataError


def check_confidence(confidence: float) -> float:
    """``confidence`` as a float strictly between 0 and 1, else :class:`CelltrialError`."""
    value = float(confidence)
    if not 0.0 < value < 1.0:
        raise CelltrialError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")
    return value


def check_tz_aware(times: pd.Series, *, what: str) -> None:
    """Raise :class:`DataError` unless ``times`` holds timezone-aware timestamps."""
    if not isinstance(times.dtype, pd.DatetimeTZDtype):
        raise DataError(
            f"{what} must hold timezone-aware timestamps (dtype datetime64[ns, tz]); "
            f"got dtype {times.dtype}"
        )


def is_log_normal(test: str, overrides: Mapping[str, bool] | None = None) -> bool:
    """Whether ``test`` is summarised on the log scale: ``overrides`` first, then the catalogue.

    Tests the catalogue does not know are treated as not log-normal.
    """
    if overrides is not None and test in overrides:
        return bool(overrides[test])
    catalogue = load_catalogue()
    return test in catalogue and catalogue.get(test).log_normal


def reference_range(test: str) -> tuple[float, float]:
    """The catalogue's default reference range of ``test``, or (NaN, NaN) when unknown."""
    catalogue = load_catalogue()
    if test in catalogue:
        low, high = catalogue.get(test).reference
        return float(low), float(high)
    return float("nan"), float("nan")


def limit_caveat(frame: pd.DataFrame) -> str | None:
    """Caveat for values reported at a limit (qualifier ``<``, ``<=``, ``>``, ``>=``), else None.

    Such values enter the statistics as equal to the limit (simple substitution).
    """
    if "qualifier" not in frame.columns or frame.empty:
        return None
    # (an all-missing column is float: made text first, as filling it with "" would need)
    qualifier = frame["qualifier"].astype(object).fillna("").astype(str).str.strip()
    marked = qualifier[qualifier != ""]
    if marked.empty:
        return None
    kinds = ", ".join(sorted(set(marked)))
    return (
        f"{len(marked)} value(s) were reported at a limit ({kinds}) and are analysed as equal to "
        "the limit: statistics near that limit are biased toward it"
    )


def check_positive(values: np.ndarray, *, what: str) -> None:
    """Raise :class:`DataError` when a non-missing value is ≤ 0 (it has no logarithm)."""
    bad = np.flatnonzero(~np.isnan(values) & (values <= 0))
    if bad.size:
        shown = ", ".join(f"#{i} = {values[i]:g}" for i in bad[:5])
        more = f" and {bad.size - 5} more" if bad.size > 5 else ""
        raise DataError(
            f"{what}: log scale needs values > 0, but found {shown}{more} "
            "(values at or below zero: impute a reporting limit explicitly or analyse unlogged)"
        )
