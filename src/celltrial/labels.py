"""Words people read instead of column names, codes and ASCII units (data in ``labels.yaml``).

The terminal tables take their headers, coded values and units from here, so that a study team
reads "Onset day" and "×10⁹/L", never ``onset_day`` or ``10^9/L``.
"""

from __future__ import annotations

import re
from functools import cache, lru_cache

from celltrial.catalogue import load_catalogue
from celltrial.datafiles import read_shipped_yaml


@cache
def _labels() -> dict[str, dict[str, str]]:
    data = read_shipped_yaml("celltrial", "labels.yaml")
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


def header_label(name: str) -> str:
    """A table header: a listed column label, a test code as its name with its unit, else
    :func:`column_label`."""
    if name in _labels()["columns"]:
        return _labels()["columns"][name]
    if name in _labels()["assessments"] or name in load_catalogue():
        label = assessment_label(name, unit=True)
        return label[:1].upper() + label[1:]
    if _SYMBOL.match(name):  # p, n pairs, t-test: statistical symbols keep their case
        return name
    return column_label(name)


def assessment_label(code: str, *, unit: bool = False) -> str:
    """An assessment code as people name it: a catalogued test (with its unit when ``unit``),
    or WHO → "WHO clinical progression scale", CT → "chest CT"; other text as it is."""
    listed = _labels()["assessments"].get(code)
    if listed is not None:
        return listed
    if code in load_catalogue():
        return test_label(code) if unit else marker_label(code)[0]
    return code


@lru_cache(maxsize=8192)
def name_codes(text: str) -> str:
    """Every catalogued test code written in ``text`` as its name: "Day 1: PLAT not done" →
    "Day 1: Platelets not done" (whole upper-case words only, so other text is left alone).
    Kept per text: pages name the same deviations on every view."""
    catalogue = load_catalogue()
    return _CODE.sub(
        lambda m: marker_label(m.group(0))[0] if m.group(0) in catalogue else m.group(0), text
    )


def plain_words(text: str) -> str:
    """Analysis text as a reader reads it: variable names in words (``log_LYM`` → "log
    lymphocytes", ``days_since_admission`` → "days since admission"), units as people write them
    (10^9/L → ×10⁹/L) and ≥/≤ for >=/<=."""
    text = _NAME.sub(lambda m: _variable_words(m.group(0)), text)
    text = text.replace(" >= ", " ≥ ").replace(" <= ", " ≤ ")
    return _UNIT.sub(lambda m: display_unit(m.group(0)), text)


def _variable_words(name: str) -> str:
    if name.startswith("log_") and "_" not in name[4:]:
        return f"log {_lower_first(marker_label(name[4:])[0])}"
    listed = _labels()["columns"].get(name)
    return _lower_first(listed) if listed else name.replace("_", " ")


def _lower_first(words: str) -> str:
    """ "Lymphocytes" → "lymphocytes", but "C-reactive protein" and "CD4+ T cells" stay."""
    return words[:1].lower() + words[1:] if words[1:2].islower() else words


_NAME = re.compile(r"(?<![\w/.])[a-z][a-z0-9]*(?:_[A-Za-z0-9]+)+(?!\w|/|\.\w)")
_UNIT = re.compile(r"(?<![\w×])(?:10\^\d+/L|cells/uL|ug/L|umol/L|ug/mL)(?!\w)")
_SYMBOL = re.compile(r"[a-z](?:$|[ -])")
_CODE = re.compile(r"(?<![\w+-])[A-Z][A-Z0-9]+(?![\w+-])")
