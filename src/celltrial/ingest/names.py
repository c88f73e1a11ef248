"""Recognise test names (English, Chinese, local spellings) against the catalogue's aliases."""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass
from functools import cache

from celltrial.catalogue import load_catalogue

_SPACE = re.compile(r"\s+")
_SPACE_AROUND = re.compile(r"\s*([()\[\]/,:;+\-])\s*")
_LOOSE_DROP = re.compile(r"[\s\-_.,:;'\"]")
_TRAILING_UNIT = re.compile(r"^(?P<name>.+?)\s*[(\[](?P<unit>[^()\[\]]+)[)\]]\s*$")


def fold_name(text: str) -> str:
    """Fold a column or test name for matching: NFKC, case folding, whitespace collapsed.

    "%" and "#" are kept: "淋巴细胞(%)" (a percentage) and "淋巴细胞(#)" (a count) stay different.
    """
    folded = unicodedata.normalize("NFKC", str(text)).casefold().strip()
    folded = _SPACE.sub(" ", folded)
    return _SPACE_AROUND.sub(r"\1", folded)


def _loose(text: str) -> str:
    return _LOOSE_DROP.sub("", fold_name(text))


@dataclass(frozen=True)
class NameMatch:
    """A recognised test: its catalogue code, the unit the name carried, and how sure we are."""

    code: str
    unit: str | None
    confidence: float
    how: str  # exact | loose | with unit | similar


@cache
def _alias_tables() -> tuple[dict[str, str], dict[str, str]]:
    exact: dict[str, str] = {}
    loose: dict[str, str] = {}
    for test in load_catalogue().tests:
        for name in (test.code, test.name, *test.aliases):
            exact.setdefault(fold_name(name), test.code)
            loose.setdefault(_loose(name), test.code)
    return exact, loose


def match_test(name: str, *, similar: bool = False) -> NameMatch | None:
    """The catalogue test ``name`` denotes, or ``None``.

    Tries the exact (folded) alias, then a looser form without spaces and dashes, then the name
    with a trailing "(unit)" split off. With ``similar``, also proposes the closest alias by
    spelling (used for mapping suggestions only, never for a silent import).
    """
    exact, loose = _alias_tables()
    folded = fold_name(name)
    if folded in exact:
        return NameMatch(exact[folded], None, 1.0, "exact")
    if _loose(name) in loose:
        return NameMatch(loose[_loose(name)], None, 0.95, "loose")
    split = _TRAILING_UNIT.match(str(name).strip())
    if split:
        inner = match_test(split.group("name"))
        if inner is not None and _is_unit(split.group("unit")):
            return NameMatch(inner.code, split.group("unit").strip(), 0.9, "with unit")
    if similar:
        candidates = difflib.get_close_matches(folded, list(exact), n=1, cutoff=0.8)
        if candidates:
            ratio = difflib.SequenceMatcher(None, folded, candidates[0]).ratio()
            return NameMatch(exact[candidates[0]], None, round(0.8 * ratio, 2), "similar")
    return None


def _is_unit(text: str) -> bool:
    from celltrial.errors import UnitError
    from celltrial.units import normalize_unit

    try:
        normalize_unit(text.strip())
    except UnitError:
        return False
    return True
