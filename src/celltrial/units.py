"""Unit conversion for laboratory values and vital signs, shared by the whole project.

Lab exports spell units in many ways ("10^9/L", "G/L", "cells/µL", "mg/dl", "°C"…).
:func:`normalize_unit` maps a spelling to a pint-parsable form (spellings are data, in
``units_aliases.yaml``); :func:`convert` converts numbers or numpy arrays between units with one
module-level pint registry. The conversion of a (from, to, molar mass, valence) combination is
worked out once and cached as ``value * scale + offset`` (offset is non-zero only for °C/°F/K), so
converting millions of values is a single vectorised multiply.

Mass ↔ amount conversions (mg/dL ↔ µmol/L) need the analyte's ``molar_mass`` (g/mol);
equivalents ↔ moles (mEq/L ↔ mmol/L) need its ``valence`` (1 for Na⁺/K⁺, 2 for Ca²⁺/Mg²⁺). Neither
is ever guessed: without them such a conversion raises :class:`~celltrial.errors.UnitError`.
"""

from __future__ import annotations

import re
from functools import cache, lru_cache
from importlib.resources import files
from typing import Any, overload

import numpy as np
import pint
import yaml

from celltrial.errors import UnitError

__all__ = ["convert", "describe_unit", "explain_unconvertible", "is_convertible", "normalize_unit"]

_SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹", "0123456789")
_SUPERSCRIPT_RUN = re.compile("([⁰¹²³⁴⁵⁶⁷⁸⁹]+)")
# "10^9/L", "x10^9/L", "10*9/L", "10E9/L", "10**9 / L", "10^9 cells/L"
_POWER_OF_TEN = re.compile(
    r"^(?:[xX]\s*)?10\s*(?:\^|\*\*|\*|[eE])\s*(\d{1,2})\s*(?:cells\s*)?(?:/|per\s+)\s*(.+)$"
)
_VOLUME_TOKENS = {"l": "L", "dl": "dL", "ml": "mL", "ul": "uL", "nl": "nL", "pl": "pL", "fl": "fL"}
_CUBED_LENGTH = re.compile(r"^(mm|cm|dm|um|m)(\d)$")
#: What a unit measures, in words a data manager uses, by its dimensions (pint's notation).
_QUANTITY_KINDS = (
    ("", "a ratio or percentage"),
    ("[mass] / [length] ** 3", "a concentration by mass"),
    ("[substance] / [length] ** 3", "a concentration by amount of substance (moles)"),
    ("[equivalent] / [length] ** 3", "a concentration in equivalents"),
    ("1 / [length] ** 3", "a count per volume"),
    ("[substance] / [time] / [length] ** 3", "an enzyme activity per volume"),
    ("[substance] / [time]", "an enzyme activity"),
    ("[mass] / [length] / [time] ** 2", "a pressure"),
    ("[temperature]", "a temperature"),
    ("[time]", "a duration"),
    ("1 / [time]", "a rate per unit of time"),
    ("[length] ** 3 / [time]", "a flow (volume per time)"),
    ("[length] ** 3", "a volume"),
    ("[length]", "a length"),
    ("[mass]", "a mass"),
    ("[substance]", "an amount of substance"),
    ("[substance] / [mass]", "an amount of substance per mass"),
    ("[mass] / [length] ** 2", "a mass per area"),
)
#: Spellings shown when a unit is not known (the commonest of lab exports).
UNIT_EXAMPLES = "mg/L, mg/dL, umol/L, 10^9/L, cells/uL, U/L, pg/mL, mmHg or %"


@cache
def _registry() -> pint.UnitRegistry:
    """The one pint registry of the process, with the two units labs need that pint lacks."""
    ureg = pint.UnitRegistry()
    ureg.define("cell = count = cells")
    ureg.define("equivalent = [equivalent] = Eq = eq")
    return ureg


@cache
def _aliases() -> dict[str, str]:
    text = files("celltrial").joinpath("units_aliases.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    return {str(k): str(v) for k, v in data["aliases"].items()}


def _fold(text: str) -> str:
    text = text.strip().replace("µ", "u").replace("μ", "u").replace("×", "x")
    text = _SUPERSCRIPT_RUN.sub(lambda m: "^" + m.group(1).translate(_SUPERSCRIPTS), text)
    return re.sub(r"\s+", " ", text)


def _normalize_token(token: str) -> str:
    lowered = token.lower()
    if lowered in _VOLUME_TOKENS:
        return _VOLUME_TOKENS[lowered]
    cubed = _CUBED_LENGTH.match(token)
    if cubed:
        return f"{cubed.group(1)}**{cubed.group(2)}"
    return token


@lru_cache(maxsize=1024)
def normalize_unit(text: str) -> str:
    """Map a lab spelling of a unit to a pint-parsable form ("10³/µL" → "1e3/uL", "%" → "percent").

    Raises :class:`UnitError` when the result is still not a unit pint knows.
    """
    if not isinstance(text, str):
        raise UnitError(f"unknown unit {text!r}: a unit is text, e.g. {UNIT_EXAMPLES}")
    aliases = _aliases()
    folded = _fold(text)
    if folded in aliases:
        result = aliases[folded]
    else:
        power = _POWER_OF_TEN.match(folded)
        if power:
            rest = normalize_unit(power.group(2))
            result = f"1e{int(power.group(1))}/{rest}"
        else:
            compact = re.sub(r"\s*/\s*", "/", folded)
            if compact.startswith("/"):
                compact = "1" + compact
            result = "/".join(_normalize_token(tok.strip()) for tok in compact.split("/"))
            result = aliases.get(result, result)
    _parse(result, original=text)
    return result


@lru_cache(maxsize=1024)
def _parse(unit: str, *, original: str | None = None) -> tuple[float, Any]:
    """(numeric factor, pint Unit) of a normalised unit string; "1e9/L" is (1e9, 1/L)."""
    ureg = _registry()
    if unit in ("1", ""):
        return 1.0, ureg.dimensionless
    try:
        parsed = ureg.parse_expression(unit)
    except Exception as exc:  # pint raises several unrelated types for bad input
        shown = original if original is not None else unit
        raise UnitError(
            f"unknown unit {shown!r}: not a unit celltrial knows; expected a unit such as "
            f"{UNIT_EXAMPLES}"
        ) from exc
    try:  # a "unit" that is a number beyond what a float holds (a 400-digit cell)
        factor = float(parsed.magnitude if isinstance(parsed, pint.Quantity) else parsed)
    except (OverflowError, TypeError, ValueError):
        shown = original if original is not None else unit
        raise UnitError(
            f"unknown unit {shown[:40]!r}: not a unit celltrial knows; expected a unit such as "
            f"{UNIT_EXAMPLES}"
        ) from None
    return factor, parsed.units if isinstance(parsed, pint.Quantity) else ureg.dimensionless


def _is_temperature(unit: Any) -> bool:
    """Temperatures (°C, °F, K) convert affinely; every other unit is a pure scale."""
    return str(_registry().Quantity(1.0, unit).dimensionality) == "[temperature]"


@cache
def _kinds() -> dict[Any, str]:
    ureg = _registry()
    return {ureg.get_dimensionality(dims): words for dims, words in _QUANTITY_KINDS}


def _kind(unit: Any) -> str:
    """What ``unit`` (parsed) measures, in plain words."""
    dimensionality = _registry().Quantity(1.0, unit).dimensionality
    return _kinds().get(dimensionality, "a quantity of another kind")


def describe_unit(text: str) -> str:
    """What a unit measures, in plain words ("mmol/L" → "a concentration by amount of
    substance (moles)"); "a unit celltrial does not know" when it cannot be read."""
    try:
        return _kind(_parse(normalize_unit(text))[1])
    except UnitError:
        return "a unit celltrial does not know"


def _why_not(
    src: Any,
    dst: Any,
    molar_mass: float | None,
    valence: int | None,
    names: tuple[str, str],
    analyte: str | None,
) -> str:
    """Why ``src`` cannot be converted to ``dst``, in plain words: what each measures and the
    missing fact (molar mass, valence), if that is all that is missing."""
    ureg = _registry()
    a, b = (ureg.Quantity(1.0, u).dimensionality for u in (src, dst))
    ratio = a / b
    what = f"{names[0]!r} is {_kind(src)} and {names[1]!r} {_kind(dst)}"
    whose = f"{analyte}'s" if analyte else "the analyte's"

    def differ_by(dims: str) -> bool:
        target = ureg.get_dimensionality(dims)
        return ratio in (target, 1 / target)

    if differ_by("[mass]/[substance]") and molar_mass is None:
        return f"{what}; converting them needs {whose} molar mass, which is not known"
    if differ_by("[equivalent]/[substance]") and valence is None:
        return f"{what}; converting them needs the ion's valence (charge), which is never guessed"
    if differ_by("[mass]/[equivalent]") and (molar_mass is None or valence is None):
        return f"{what}; converting them needs both {whose} molar mass and its valence"
    if _kind(src) == _kind(dst):  # e.g. two "quantities of another kind"
        return f"{what}, but of different dimensions"
    return f"{what}: different kinds of quantity"


def explain_unconvertible(
    from_unit: str,
    to_unit: str,
    *,
    molar_mass: float | None = None,
    valence: int | None = None,
    analyte: str | None = None,
) -> str | None:
    """Why ``from_unit`` cannot be converted to ``to_unit``, in plain words, or None when it can
    ("'mmol/L' is a concentration by amount of substance (moles) and 'mg/L' a concentration by
    mass; converting them needs CRP's molar mass, which is not known"). ``analyte`` names the
    test in that sentence."""
    try:
        _affine(from_unit, to_unit, None if molar_mass is None else float(molar_mass), valence)
    except UnitError as exc:
        if str(exc).startswith("unknown unit"):
            return str(exc)
        (_, src), (_, dst) = (_parse(normalize_unit(u)) for u in (from_unit, to_unit))
        return _why_not(src, dst, molar_mass, valence, (from_unit, to_unit), analyte)
    return None


@lru_cache(maxsize=4096)
def _affine(
    from_unit: str, to_unit: str, molar_mass: float | None, valence: int | None
) -> tuple[float, float]:
    """(scale, offset) with ``to = from * scale + offset``; raises :class:`UnitError`."""
    src_norm, dst_norm = normalize_unit(from_unit), normalize_unit(to_unit)
    (src_mag, src), (dst_mag, dst) = _parse(src_norm), _parse(dst_norm)
    ureg = _registry()
    Q = ureg.Quantity
    if _is_temperature(src) or _is_temperature(dst):
        try:
            at0 = Q(0.0, src).to(dst).magnitude
            at1 = Q(1.0, src).to(dst).magnitude
        except pint.DimensionalityError as exc:
            raise UnitError(
                f"cannot convert {from_unit!r} to {to_unit!r}: "
                f"{_why_not(src, dst, molar_mass, valence, (from_unit, to_unit), None)}"
            ) from exc
        return float(at1 - at0), float(at0)
    mass_bridges = [Q(1.0, ureg.dimensionless)]
    if molar_mass is not None:
        if not molar_mass > 0:
            raise UnitError(f"molar_mass must be positive (g/mol), got {molar_mass!r}")
        mass_bridges += [Q(1.0 / molar_mass, "mol/g"), Q(molar_mass, "g/mol")]
    charge_bridges = [Q(1.0, ureg.dimensionless)]
    if valence is not None:
        if valence <= 0:
            raise UnitError(f"valence must be a positive integer, got {valence!r}")
        charge_bridges += [Q(float(valence), "eq/mol"), Q(1.0 / valence, "mol/eq")]
    bridges = [m * c for m in mass_bridges for c in charge_bridges]  # the plain one first
    target = Q(1.0, dst).dimensionality
    for bridge in bridges:
        quantity = Q(src_mag, src) * bridge
        if quantity.dimensionality == target:
            return float(quantity.to(dst).magnitude) / dst_mag, 0.0
    raise UnitError(
        f"cannot convert {from_unit!r} to {to_unit!r}: "
        f"{_why_not(src, dst, molar_mass, valence, (from_unit, to_unit), None)}"
    )


@overload
def convert(
    value: float,
    from_unit: str,
    to_unit: str,
    *,
    molar_mass: float | None = None,
    valence: int | None = None,
) -> float: ...
@overload
def convert(
    value: np.ndarray,
    from_unit: str,
    to_unit: str,
    *,
    molar_mass: float | None = None,
    valence: int | None = None,
) -> np.ndarray: ...
def convert(
    value: float | np.ndarray,
    from_unit: str,
    to_unit: str,
    *,
    molar_mass: float | None = None,
    valence: int | None = None,
) -> float | np.ndarray:
    """Convert ``value`` (a number or an array) from ``from_unit`` to ``to_unit``.

    ``molar_mass`` (g/mol) allows mass ↔ amount conversions (mg/dL ↔ µmol/L); ``valence``
    allows equivalents ↔ moles (mEq/L ↔ mmol/L; 1 for Na⁺/K⁺, 2 for Ca²⁺/Mg²⁺). Raises
    :class:`UnitError` naming both units and the reason when the conversion is impossible.
    Arrays come back as new float arrays (never the input object).
    """
    mm = None if molar_mass is None else float(molar_mass)
    scale, offset = _affine(from_unit, to_unit, mm, valence)
    if isinstance(value, np.ndarray):
        with np.errstate(over="ignore"):  # a value too large becomes inf: the caller refuses it
            out = np.multiply(value, scale, dtype=np.float64)
        if offset:
            out += offset
        return out
    if isinstance(value, (int, float, np.floating, np.integer)):
        return float(value) * scale + offset
    result = value * scale  # pandas Series and other array-likes keep their type
    return result + offset if offset else result


def is_convertible(
    from_unit: str,
    to_unit: str,
    *,
    molar_mass: float | None = None,
    valence: int | None = None,
) -> bool:
    """Whether :func:`convert` can convert between the two units with the given facts."""
    try:
        _affine(from_unit, to_unit, None if molar_mass is None else float(molar_mass), valence)
    except UnitError:
        return False
    return True
