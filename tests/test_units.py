"""celltrial.units against independent reference factors (not computed by the code under test)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from celltrial.errors import UnitError
from celltrial.units import convert, is_convertible, normalize_unit

SPELLINGS = [
    ("10^9/L", "1e9/L"),
    ("10*9/L", "1e9/L"),
    ("x10^9/L", "1e9/L"),
    ("×10⁹/L", "1e9/L"),
    ("10^3/µL", "1e3/uL"),
    ("10³/uL", "1e3/uL"),
    ("10^12/L", "1e12/L"),
    ("G/L", "1e9/L"),
    ("cells/µL", "cells/uL"),
    ("/uL", "1/uL"),
    ("/mm3", "1/mm**3"),
    ("µmol/L", "umol/L"),
    ("μmol/L", "umol/L"),  # Greek mu
    ("umol/l", "umol/L"),
    ("mg/dl", "mg/dL"),
    ("g/dl", "g/dL"),
    ("g/L", "g/L"),  # never G/L (giga): lookups are case-sensitive
    ("%", "percent"),
    ("U/L", "U/L"),
    ("IU/L", "U/L"),
    ("°C", "degC"),
    ("degC", "degC"),
    ("°F", "degF"),
    ("/min", "1/min"),
    ("bpm", "1/min"),
    ("mmHg", "mmHg"),
    ("kPa", "kPa"),
    ("s", "s"),
    ("sec", "s"),
    ("ratio", "1"),
    ("1", "1"),
    ("", "1"),
    ("ng/mL", "ng/mL"),
    ("µg/L", "ug/L"),
    ("pg/mL", "pg/mL"),
    ("mEq/L", "mEq/L"),
]


@pytest.mark.parametrize(("text", "expected"), SPELLINGS)
def test_normalize_unit_spellings(text: str, expected: str) -> None:
    assert normalize_unit(text) == expected


# (value, from, to, molar mass, expected) — reference factors from clinical conversion tables
REFERENCE = [
    (1.0, "mg/dL", "umol/L", 113.12, 88.4),  # creatinine
    (88.4, "µmol/L", "mg/dl", 113.12, 1.0),
    (1.0, "mg/dL", "umol/L", 584.66, 17.1),  # bilirubin
    (1.0, "mmol/L", "mg/dL", 180.156, 18.0),  # glucose
    (1.0, "mmol/L", "mg/dL", 40.078, 4.008),  # calcium
    (1.0, "mmol/L", "mg/dL", 24.305, 2.43),  # magnesium
    (1.0, "mmol/L", "mg/dL", 885.7, 88.57),  # triglycerides
    (1.0, "mmol/L", "mg/dL", 386.65, 38.67),  # cholesterol
    (13.5, "g/dL", "g/L", None, 135.0),  # hemoglobin g/dL × 10 = g/L
    (10.0, "g/dL", "mmol/L", 16114.5, 6.206),  # hemoglobin (monomer) 10 g/dL ≈ 6.2 mmol/L
    (5.0, "mg/dL", "mg/L", None, 50.0),  # CRP mg/dL × 10
    (1.0, "kPa", "mmHg", None, 7.50062),  # PaO2
    (500.0, "cells/µL", "10^9/L", None, 0.5),
    (1.0, "10^3/µL", "10^9/L", None, 1.0),
    (1.0, "G/L", "10^9/L", None, 1.0),
    (800.0, "/mm3", "10^9/L", None, 0.8),
    (40.0, "%", "1", None, 0.40),  # FiO2 percent → fraction
    (0.21, "1", "%", None, 21.0),
    (1.0, "µg/L", "ng/mL", None, 1.0),
    (7.0, "pg/mL", "ng/L", None, 7.0),
    (1.0, "IU/L", "U/L", None, 1.0),
    (1.0, "min", "s", None, 60.0),
    (60.0, "bpm", "/min", None, 60.0),
]


@pytest.mark.parametrize(("value", "src", "dst", "mm", "expected"), REFERENCE)
def test_reference_factors(value: float, src: str, dst: str, mm: float | None, expected: float):
    assert convert(value, src, dst, molar_mass=mm) == pytest.approx(expected, rel=2e-3)


@pytest.mark.parametrize(
    ("value", "src", "dst", "expected"),
    [
        (37.0, "°C", "°F", 98.6),
        (0.0, "degC", "degF", 32.0),
        (100.0, "degC", "degF", 212.0),
        (98.6, "degF", "degC", 37.0),
        (38.0, "degC", "degF", 100.4),
        (310.15, "K", "degC", 37.0),
    ],
)
def test_temperature_is_affine(value: float, src: str, dst: str, expected: float) -> None:
    assert convert(value, src, dst) == pytest.approx(expected, abs=1e-9)


def test_temperature_arrays() -> None:
    out = convert(np.array([36.0, 37.0, 40.0]), "degC", "degF")
    np.testing.assert_allclose(out, [96.8, 98.6, 104.0], atol=1e-9)


@pytest.mark.parametrize(
    ("value", "src", "dst", "valence", "expected"),
    [
        (4.0, "mEq/L", "mmol/L", 1, 4.0),  # potassium: monovalent, mEq = mmol
        (140.0, "mmol/L", "mEq/L", 1, 140.0),  # sodium
        (5.0, "mEq/L", "mmol/L", 2, 2.5),  # calcium: divalent, mEq/L = 2 × mmol/L
        (1.0, "mmol/L", "meq/l", 2, 2.0),  # magnesium
    ],
)
def test_equivalents_need_valence(
    value: float, src: str, dst: str, valence: int, expected: float
) -> None:
    assert convert(value, src, dst, valence=valence) == pytest.approx(expected)
    with pytest.raises(UnitError, match="valence"):
        convert(value, src, dst)


def test_mass_to_equivalents_needs_both_facts() -> None:
    # calcium 10 mg/dL = 2.495 mmol/L = 4.99 mEq/L
    assert convert(10.0, "mg/dL", "mEq/L", molar_mass=40.078, valence=2) == pytest.approx(
        4.99, rel=1e-3
    )
    with pytest.raises(UnitError, match="molar mass"):
        convert(10.0, "mg/dL", "mEq/L", valence=2)


@pytest.mark.parametrize(
    ("src", "dst", "why"),
    [
        ("mg/dL", "umol/L", "needs the analyte's molar mass"),
        ("mmol/L", "mg/dL", "needs the analyte's molar mass"),
        ("mg/dL", "10^9/L", "a concentration by mass and '10^9/L' a count per volume"),
        ("degC", "mmHg", "a temperature and 'mmHg' a pressure"),
        ("U/L", "mg/dL", "an enzyme activity per volume and 'mg/dL' a concentration by mass"),
        ("cells/uL", "%", "a count per volume and '%' a ratio"),  # never a percentage
    ],
)
def test_impossible_conversions_name_both_units(src: str, dst: str, why: str) -> None:
    with pytest.raises(UnitError) as err:
        convert(1.0, src, dst)
    message = str(err.value)
    assert src in message and dst in message and why in message
    assert "[" not in message and "**" not in message  # no pint notation
    assert not is_convertible(src, dst)


@pytest.mark.parametrize("text", ["foo", "mg/L FEU", "10^9/Q"])
def test_unknown_units_raise(text: str) -> None:
    with pytest.raises(UnitError, match="unknown unit") as err:
        normalize_unit(text)
    assert "pint" not in str(err.value) and "registry" not in str(err.value)
    with pytest.raises(UnitError):
        convert(1.0, text, "mg/L")
    assert not is_convertible(text, "mg/L")


def test_is_convertible() -> None:
    assert is_convertible("mg/dL", "umol/L", molar_mass=113.12)
    assert not is_convertible("mg/dL", "umol/L")
    assert is_convertible("%", "1")
    assert is_convertible("mEq/L", "mmol/L", valence=1)


def test_scalars_stay_scalars_and_arrays_stay_arrays() -> None:
    assert isinstance(convert(1, "g/dL", "g/L"), float)
    values = np.array([1.0, 2.0, np.nan])
    out = convert(values, "g/dL", "g/L")
    assert isinstance(out, np.ndarray) and out is not values
    np.testing.assert_array_equal(out, [10.0, 20.0, np.nan])
    np.testing.assert_array_equal(values, [1.0, 2.0, np.nan])  # input untouched


def test_large_arrays_are_one_multiply() -> None:
    values = np.random.default_rng(0).random(2_000_000) * 3
    factor = convert(1.0, "mg/dL", "umol/L", molar_mass=113.12)
    start = time.perf_counter()
    out = convert(values, "mg/dL", "umol/L", molar_mass=113.12)
    elapsed = time.perf_counter() - start
    np.testing.assert_array_equal(out, values * factor)
    assert elapsed < 0.5  # a single vectorised multiply, not a per-value pint call


@pytest.mark.parametrize(
    ("src", "dst", "options", "expected"),
    [
        ("mg/dL", "mg/L", {}, None),
        (
            "mmol/L",
            "mg/L",
            {"analyte": "CRP"},
            "'mmol/L' is a concentration by amount of substance (moles) and 'mg/L' a "
            "concentration by mass; converting them needs CRP's molar mass, which is not known",
        ),
        ("mmol/L", "mg/dL", {"molar_mass": 113.12}, None),
        ("furlongz", "mg/L", {}, "unknown unit 'furlongz'"),
    ],
)
def test_explain_unconvertible_in_plain_words(src, dst, options, expected) -> None:
    from celltrial.units import explain_unconvertible

    reason = explain_unconvertible(src, dst, **options)
    if expected is None:
        assert reason is None
    else:
        assert reason.startswith(expected)
