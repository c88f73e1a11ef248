"""The raw long frame every reader produces, before validation.

One row per non-empty cell that may be a result: ``subject`` (as written), ``time`` (as written or
already a datetime), ``column`` (source column), ``name`` (test name as written), ``test``
(catalogue code or missing when not recognised), ``raw_value`` (cell as read: number or text),
``raw_unit`` (missing when not given), ``ref_low``/``ref_high``, ``specimen`` (missing when not
given) and ``source_row`` (row number as a person sees it in the file).
"""

from __future__ import annotations

from typing import overload

import numpy as np
import pandas as pd

RAW_COLUMNS: tuple[str, ...] = (
    "subject",
    "time",
    "column",
    "name",
    "test",
    "raw_value",
    "raw_unit",
    "ref_low",
    "ref_high",
    "specimen",
    "source_row",
)

#: What a reader may know about subjects (one row per subject; missing fields are NaN/NaT):
#: sex "M"/"F", age in completed years (a birth date becomes the age at admission, see
#: :mod:`celltrial.ingest.facts`), height in cm, weight in kg, admission/discharge/death times.
SUBJECT_FIELDS: tuple[str, ...] = (
    "subject",
    "sex",
    "age",
    "height_cm",
    "weight_kg",
    "admitted",
    "discharged",
    "died",
)


def empty_raw() -> pd.DataFrame:
    """A raw frame with no rows."""
    return pd.DataFrame({c: pd.Series(dtype=object) for c in RAW_COLUMNS})


def complete_raw(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every raw column (missing ones added empty), in order."""
    out = frame.copy(deep=False)  # copy-on-write: ``frame`` is never changed through ``out``
    for column in RAW_COLUMNS:
        if column not in out.columns:
            out[column] = None
    return out[list(RAW_COLUMNS)]


def empty_subjects() -> pd.DataFrame:
    """A subject-information frame with no rows."""
    return pd.DataFrame({c: pd.Series(dtype=object) for c in SUBJECT_FIELDS})


def map_unique(series: pd.Series, func) -> pd.Series:
    """``func`` applied to the distinct values of ``series`` only, then spread back (object
    dtype, None where ``series`` is missing).

    Hospital files repeat the same few subjects, test names, units and times on every row:
    working on distinct values turns a per-row Python loop into a hash lookup.
    ``func`` takes a Series of the distinct values and returns one of the same length.
    """
    # missing cells (None, NaN, pd.NA, NaT) all get code -1: no need to make them None first
    codes, uniques = pd.factorize(series.to_numpy(dtype=object))
    mapped = func(pd.Series(uniques, dtype=object))
    values = np.asarray(pd.Series(mapped).astype(object).to_numpy(na_value=None), dtype=object)
    out = np.full(len(codes), None, dtype=object)
    present = codes >= 0
    out[present] = values[codes[present]]
    return pd.Series(out, index=series.index, dtype=object)


@overload
def map_distinct(series: pd.Series, mapping: pd.Series) -> pd.Series: ...
@overload
def map_distinct(series: pd.Series, mapping: pd.DataFrame) -> list[pd.Series]: ...
def map_distinct(
    series: pd.Series, mapping: pd.Series | pd.DataFrame
) -> pd.Series | list[pd.Series]:
    """``series.map(mapping)`` (NaN where a cell is missing or not in ``mapping``'s index),
    looked up once per distinct cell: pandas maps its text dtype with a Python call per row.
    With a frame as ``mapping``: ``series.map`` of each of its columns, one lookup for all."""
    codes, uniques = pd.factorize(series.to_numpy(dtype=object))
    found = mapping.reindex(pd.Index(uniques, dtype=object))
    if isinstance(found, pd.DataFrame):
        return [
            pd.Series(found[column].array.take(codes, allow_fill=True), index=series.index)
            for column in found.columns
        ]
    return pd.Series(found.array.take(codes, allow_fill=True), index=series.index)


def strip_text(series: pd.Series) -> pd.Series:
    """Cells as stripped text (object dtype), None where missing or blank."""

    def strip(values: pd.Series) -> pd.Series:
        text = values.astype("string").str.strip()
        return text.where(text != "")

    return map_unique(series, strip)


def stripped_codes(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Each cell's text once stripped as an integer code (-1 where missing or blank) and the
    distinct texts in order of first appearance: :func:`strip_text` is the texts spread by
    the codes (None at -1). Each distinct cell is stripped once."""
    codes, uniques = pd.factorize(series.to_numpy(dtype=object))
    stripped = strip_text(pd.Series(uniques, dtype=object)).to_numpy()
    text_codes, texts = pd.factorize(stripped)  # cells that strip alike: one code; blank: -1
    return np.append(text_codes, -1)[codes], np.asarray(texts, dtype=object)


def group_codes(
    frame: pd.DataFrame, columns: tuple[str, ...]
) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """Each row's group of distinct values of ``columns`` as an integer code, numbered in order
    of first appearance (missing values of every kind are one value: pandas'
    ``groupby(columns, sort=False, dropna=False)``), and each column's cells with their codes
    (-1 where missing), to read a group's values from any of its rows. A groupby on these text
    columns hashes each row's tuple; integer codes per column are cheaper."""
    combined = np.zeros(len(frame), dtype="int64")
    cells = []
    for column in columns:
        values = frame[column].to_numpy(dtype=object)
        codes, uniques = pd.factorize(values)  # missing cells (None, NaN, pd.NA): code -1
        combined, _ = pd.factorize(combined * (len(uniques) + 1) + (codes + 1))
        cells.append((values, codes))
    return combined, cells
