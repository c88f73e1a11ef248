"""Words people read instead of column names, codes and ASCII units (data in ``labels.yaml``).

The terminal tables take their headers, coded values and units from here, so that a study team
reads "Onset day" and "×10⁹/L", never ``onset_day`` or ``10^9/L``.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import yaml

from celltrial.catalogue import load_catalogue


@cache
def _labels() -> dict[str, dict[str, str]]:
    text = resources.files("celltrial").joinpath("labels.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    return {part: {str(k): str(v) for k, v in data[part].items()} for part in data}


def display_unit(unit: str) -> str:
    """A catalogue unit as people write it: 10^9/L → ×10⁹/L, cells/uL → cells/µL."""
    return _labels()["units"].get(unit, unit)


def marker_label(test: str) -> tuple[str, str]:
    """(name, display unit) of a catalogued test; the code itself and "" when unknown."""
    catalogue = load_catalogue()
    if test in catalogue:
        item = catalogue.get(test)
        return item.name, display_unit(item.unit)
    return test, ""


def test_label(test: str) -> str:
    """A test code as its name with its unit: CRP → "C-reactive protein (mg/L)"."""
    name, unit = marker_label(test)
    return f"{name} ({unit})" if unit else name


def column_label(name: str) -> str:
    """The header of a column: a listed label, else the name with spaces, capitalised."""
    label = _labels()["columns"].get(name)
    if label is not None:
        return label
    text = name.replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def value_label(value: str) -> str:
    """A coded value (``infusion_late``) as words; other text is returned as it is."""
    label = _labels()["values"].get(value)
    if label is not None:
        return label
    if "_" in value and " " not in value and value.islower():
        return value.replace("_", " ")
    return value
