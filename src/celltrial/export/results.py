"""Results at their reported precision, and their place against the reference range.

Precision rule for ``--STRESN``/``--STRESC`` (the canonical value): a raw value written with
``d`` decimals (``38.9``: 1; ``1.2e3``: −2 + …) and converted to the canonical unit with scale
``s`` (canonical = raw × s + offset; 1 when no conversion) keeps ``d − floor(log10 |s|)``
decimals (never fewer than 0): the canonical value has the same decimal resolution as the
value written, so mg/dL × 10 loses one decimal, cells/µL ÷ 1000 gains three, °F → °C (× 5/9)
gains one. On top of that, no value keeps more than 10 significant digits, which removes binary
floating-point noise (``38.99999999999874`` → ``39``) also where the raw text is unknown.
"""

from __future__ import annotations

import math
import re
from functools import cache

import numpy as np
import pandas as pd

from celltrial.catalogue import load_catalogue
from celltrial.errors import CelltrialError

#: At most this many significant digits in a number exported.
SIGNIFICANT_DIGITS = 10
_NUMBER = re.compile(r"[-+]?(?P<int>\d*)(?:[.,](?P<frac>\d+))?(?:[eE](?P<exp>[-+]?\d+))?")


def parse_decimals(text: object) -> float:
    """Decimals a raw value is written with (``"38.9"`` → 1, ``"<0.50"`` → 2, ``"1.2e3"`` → −2,
    ``"550"`` → 0); NaN when the text holds no number."""
    if text is None or (not isinstance(text, str) and pd.isna(text)):
        return math.nan
    found = _NUMBER.search(str(text).strip().lstrip("<>=≤≥ "))
    if found is None or not (found.group("int") or found.group("frac")):
        return math.nan
    decimals = len(found.group("frac") or "")
    return float(decimals - int(found.group("exp") or 0))


@cache
def conversion_scale(test: str, raw_unit: str | None, unit: str | None) -> float:
    """Scale of the conversion of ``test`` from ``raw_unit`` to ``unit`` (1 when the same or
    either is unknown); NaN when celltrial cannot convert between them."""
    if not raw_unit or not unit or raw_unit == unit:
        return 1.0
    from celltrial.units import convert

    catalogue = load_catalogue()
    molar_mass = catalogue.get(test).molar_mass if test in catalogue else None
    try:
        ends = convert(np.array([0.0, 1.0]), raw_unit, unit, molar_mass=molar_mass)
    except (CelltrialError, ValueError, TypeError):
        return math.nan
    return float(ends[1] - ends[0])


def compute_reported_decimals(
    raw_values: pd.Series, tests: pd.Series, raw_units: pd.Series, units: pd.Series
) -> np.ndarray:
    """Decimals each canonical value is reported with (float array; NaN: no raw text to go by,
    only the significant-digit cap applies)."""
    decimals = np.array([parse_decimals(v) for v in raw_values.tolist()], dtype=float)
    scales = np.array(
        [
            conversion_scale(str(t), None if pd.isna(r) else str(r), None if pd.isna(u) else str(u))
            for t, r, u in zip(tests.tolist(), raw_units.tolist(), units.tolist(), strict=True)
        ],
        dtype=float,
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.floor(np.log10(np.abs(scales)))
    out = decimals - shift
    out[~np.isfinite(out)] = np.nan
    return np.maximum(out, 0)


def compute_rounded(
    values: np.ndarray | pd.Series, decimals: np.ndarray | None = None
) -> np.ndarray:
    """``values`` rounded to ``decimals`` (per value; NaN: no limit) and to at most
    :data:`SIGNIFICANT_DIGITS` significant digits; NaN stays NaN."""
    numbers = np.asarray(pd.to_numeric(pd.Series(values), errors="coerce"), dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        magnitude = np.floor(np.log10(np.abs(numbers)))
    significant = np.where(np.isfinite(magnitude), SIGNIFICANT_DIGITS - 1 - magnitude, np.nan)
    wanted = significant if decimals is None else np.fmin(decimals, significant)
    out = numbers.copy()
    finite = np.isfinite(numbers) & np.isfinite(wanted)
    for places in np.unique(wanted[finite]).astype(int):
        pick = finite & (wanted == places)
        out[pick] = np.round(numbers[pick], places)
    return out


def compute_result_text(
    rounded: np.ndarray, decimals: np.ndarray | None = None
) -> list[str | None]:
    """Rounded numbers as text, with the reported decimals when known (``38.90`` stays "38.90"),
    else the shortest text that reads back the same number; None where missing."""
    out: list[str | None] = []
    places = np.full(len(rounded), np.nan) if decimals is None else decimals
    for value, place in zip(rounded.tolist(), places.tolist(), strict=True):
        if not math.isfinite(value):
            out.append(None)
        elif math.isfinite(place) and place <= 15:
            out.append(f"{value:.{int(place)}f}")
        else:
            text = repr(float(value))
            out.append(text[:-2] if text.endswith(".0") else text)
    return out


def compute_reference_indicator(
    values: np.ndarray,
    qualifiers: pd.Series,
    low: np.ndarray,
    high: np.ndarray,
    *,
    plausible_low: np.ndarray,
    plausible_high: np.ndarray,
) -> list[str | None]:
    """``LBNRIND``: "LOW", "NORMAL" or "HIGH" against the reference range [low, high] (both
    limits are normal: a value equal to ``high`` is NORMAL); None when there is no value or no
    range, or when a value at a reporting limit ("<0.5") may lie on either side of a limit.

    A value at a reporting limit stands for the interval it names, narrowed to the test's
    plausible range (a concentration "<0.5" lies in [0, 0.5)).
    """
    values = np.asarray(values, dtype=float)
    qualifier = qualifiers.fillna("").astype(str).to_numpy()
    below = np.isin(qualifier, ["<", "<="])
    above = np.isin(qualifier, [">", ">="])
    lo = np.where(below, np.asarray(plausible_low, dtype=float), values)
    hi = np.where(above, np.asarray(plausible_high, dtype=float), values)
    open_hi = qualifier == "<"
    open_lo = qualifier == ">"
    low = np.where(np.isfinite(low), low, -np.inf)
    high = np.where(np.isfinite(high), high, np.inf)
    known = np.isfinite(values) & (np.isfinite(low) | np.isfinite(high))
    is_low = (hi < low) | ((hi == low) & open_hi)
    is_high = (lo > high) | ((lo == high) & open_lo)
    is_normal = (lo >= low) & (hi <= high)
    out: list[str | None] = []
    for ok, lw, hg, nm in zip(
        known.tolist(), is_low.tolist(), is_high.tolist(), is_normal.tolist(), strict=True
    ):
        out.append(None if not ok else "LOW" if lw else "HIGH" if hg else "NORMAL" if nm else None)
    return out


__all__ = [
    "SIGNIFICANT_DIGITS",
    "compute_reference_indicator",
    "compute_reported_decimals",
    "compute_result_text",
    "compute_rounded",
    "conversion_scale",
    "parse_decimals",
]
