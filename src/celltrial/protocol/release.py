"""Cell-product lot release: does a lot meet the protocol's release criteria?"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from celltrial.protocol.model import ReleaseCriteria


def check_lot_release(lot: Mapping[str, Any], criteria: ReleaseCriteria) -> list[str]:
    """Every way ``lot`` fails ``criteria`` (empty when it meets them all).

    A result that is missing counts as a failure: a lot cannot be shown to meet an untested
    criterion.
    """
    failures: list[str] = []
    viability = lot.get("viability_pct")
    if _missing(viability):
        failures.append("viability not tested")
    elif viability < criteria.viability_min_pct:
        failures.append(f"viability {viability:g} % < {criteria.viability_min_pct:g} %")
    markers = lot.get("markers_pct") or {}
    for marker, minimum in criteria.positive_markers_min_pct.items():
        value = markers.get(marker)
        if _missing(value):
            failures.append(f"{marker} not tested")
        elif value < minimum:
            failures.append(f"{marker} {value:g} % < {minimum:g} %")
    for marker, maximum in criteria.negative_markers_max_pct.items():
        value = markers.get(marker)
        if _missing(value):
            failures.append(f"{marker} not tested")
        elif value > maximum:
            failures.append(f"{marker} {value:g} % > {maximum:g} %")
    for test, needed in (("sterility", criteria.sterility), ("mycoplasma", criteria.mycoplasma)):
        result = _text(lot.get(test))
        if result.lower() != needed:
            failures.append(f"{test} {result or 'not tested'} (need {needed})")
    return failures


def compute_endotoxin_dose(
    endotoxin_eu_per_ml: float, volume_ml: float, weight_kg: float, duration_h: float
) -> float:
    """Endotoxin given in EU per kg body weight per hour of infusion."""
    return endotoxin_eu_per_ml * volume_ml / weight_kg / duration_h


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and pd.isna(value))


def _text(value: Any) -> str:
    """A text result as written, "" when missing (None, NaN or blank)."""
    return "" if _missing(value) else str(value).strip()
