"""Parse result text as hospitals write it into a number, a qualifier and a status (vectorised).

"<0.5" → 0.5 with qualifier "<"; "≥1000" → 1000 with ">="; "0,8" (decimal comma) → 0.8;
"NA", "—", "" → no result; "pending", "see comment" → text, kept and reported, never a number;
"inf"/"-inf" → a detection limit without its number; "1,234" → ambiguous (thousands separator or
decimal comma?), reported, never guessed; "1e400" (beyond the largest number a computer stores,
about 1.8e308) → text, reported, never stored as infinity.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Status of a parsed cell.
OK = "ok"
EMPTY = "empty"  # blank or an explicit "no result" marker (NA, —, …): not a result
TEXT = "text"  # a non-numeric result (pending, cancelled, positive…)
AMBIGUOUS = "ambiguous"  # "1,234": thousands separator or decimal comma
LIMIT_ONLY = "limit_only"  # "inf", ">": beyond a detection limit, no number given

NO_RESULT_MARKERS = frozenset(
    {"", "na", "n/a", "n.a.", "nan", "null", "none", "-", "--", "—", "–", ".", "nd", "/", "无"}
)
_QUALIFIERS = {
    "<": "<",
    "<=": "<=",
    "≤": "<=",
    "=<": "<=",
    ">": ">",
    ">=": ">=",
    "≥": ">=",
    "=>": ">=",
}
_NUMBER = (
    r"^\s*(?P<q><=|>=|=<|=>|≤|≥|<|>)?\s*"
    r"(?P<n>[+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+)(?:[eE][+-]?\d+)?)\s*$"
)
_INF = r"^\s*(?P<sign>[+-])?\s*(?:inf|infinity|∞)\s*$"


def numbers_as_written(raw: pd.Series) -> pd.Series | None:
    """Cells that are plain numbers as numbers, NaN elsewhere (``pandas.to_numeric``, at C
    speed); None when a cell is a whole number beyond what a float holds."""
    try:
        return pd.to_numeric(raw, errors="coerce")
    except OverflowError:  # read as a Python int
        return None


def parse_values(raw: pd.Series, numbers: pd.Series | None = None) -> pd.DataFrame:
    """Columns ``value`` (float), ``qualifier`` ("" or <, <=, >, >=) and ``status`` per cell.

    Numeric input is taken as is (NaN → empty). Index is kept. ``numbers``: the text cells'
    :func:`numbers_as_written`, when the caller has them already.
    """
    if pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
        values = raw.astype("float64")
        finite = np.isfinite(values.to_numpy())
        status = np.where(values.isna(), EMPTY, np.where(finite, OK, LIMIT_ONLY))
        qualifier = np.where(values.to_numpy() == np.inf, ">", np.where(values == -np.inf, "<", ""))
        out_values = values.where(finite)
        return pd.DataFrame(
            {"value": out_values, "qualifier": qualifier, "status": status}, index=raw.index
        )
    if raw.dtype == object or pd.api.types.is_string_dtype(raw.dtype):
        quick = numbers if numbers is not None else numbers_as_written(raw)
        if quick is None:  # a whole number beyond what a float holds (read as a Python int)
            return _parse_text(raw.map(_text, na_action="ignore"))
        plain = np.isfinite(quick.to_numpy(dtype=float))
        if plain.all():
            return pd.DataFrame(
                {"value": quick.astype("float64"), "qualifier": "", "status": OK},
                index=raw.index,
            )
        if plain.any():
            rest = _parse_distinct(raw[~plain])
            out = pd.DataFrame(
                {"value": quick.astype("float64"), "qualifier": "", "status": OK},
                index=raw.index,
            ).astype({"qualifier": object, "status": object})
            out.loc[rest.index, ["value", "qualifier", "status"]] = rest
            return out
    return _parse_text(raw)


def _text(value: object) -> str:
    """A cell as text; a whole number too long for Python to print (4,300 digits) as a marker
    that parses as a number too large to store."""
    try:
        return str(value)
    except ValueError:
        return "1e99999"


def _parse_distinct(raw: pd.Series) -> pd.DataFrame:
    """:func:`_parse_text` of each distinct cell once, spread to its rows, when the cells are
    text (pandas' text dtype: equal cells are the same text; "<0.5" repeats on many rows);
    of every row otherwise (a workbook's mixed cells: 1 and True are equal but read apart)."""
    if raw.dtype == object or not pd.api.types.is_string_dtype(raw.dtype):
        return _parse_text(raw)
    codes, uniques = pd.factorize(raw.to_numpy(dtype=object))
    # code -1 (a missing cell) takes the missing cell appended last
    parsed = _parse_text(pd.Series([*uniques, None], dtype=object))
    return parsed.iloc[codes].set_axis(raw.index)


def _parse_text(raw: pd.Series) -> pd.DataFrame:
    """The regular-expression path for cells that are not plain numbers."""
    text = raw.astype("string").str.strip()
    missing = text.isna() | text.str.casefold().isin(NO_RESULT_MARKERS)
    parts = text.str.extract(_NUMBER)
    number = parts["n"]
    has_comma = number.str.contains(",", regex=False).fillna(False)
    ambiguous = has_comma & number.str.fullmatch(r"[+-]?\d{1,3},\d{3}").fillna(False)
    value = pd.to_numeric(number.str.replace(",", ".", regex=False), errors="coerce")
    qualifier = parts["q"].map(_QUALIFIERS).fillna("")
    inf = text.str.extract(_INF, flags=0)
    is_inf = text.str.fullmatch(r"\s*[+-]?\s*(?:inf|infinity|∞)\s*", case=False).fillna(False)
    is_inf |= text.isin(["<", ">"])
    qualifier = qualifier.where(~is_inf, np.where(inf["sign"].fillna("") == "-", "<", ">"))
    qualifier = qualifier.where(~text.isin(["<"]), "<")
    too_large = value.notna() & ~np.isfinite(value.to_numpy(dtype=float))
    status = np.select(
        [
            missing.to_numpy(),
            is_inf.to_numpy(),
            ambiguous.to_numpy(),
            too_large.to_numpy(),
            value.notna().to_numpy(),
        ],
        [EMPTY, LIMIT_ONLY, AMBIGUOUS, TEXT, OK],
        default=TEXT,
    )
    value = value.where(status == OK)
    return pd.DataFrame(
        {"value": value.astype("float64"), "qualifier": qualifier.astype(object), "status": status},
        index=raw.index,
    )
