"""The raw long frame every reader produces, before validation.

One row per non-empty cell that may be a result: ``subject`` (as written), ``time`` (as written or
already a datetime), ``column`` (source column), ``name`` (test name as written), ``test``
(catalogue code or missing when not recognised), ``raw_value`` (cell as read: number or text),
``raw_unit`` (missing when not given), ``ref_low``/``ref_high``, ``specimen`` (missing when not
given) and ``source_row`` (row number as a person sees it in the file).
"""

from __future__ import annotations

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

#: What a reader may know about subjects (one row per subject; missing fields are NaN/NaT).
SUBJECT_FIELDS: tuple[str, ...] = ("subject", "sex", "age", "admitted", "discharged", "died")


def empty_raw() -> pd.DataFrame:
    """A raw frame with no rows."""
    return pd.DataFrame({c: pd.Series(dtype=object) for c in RAW_COLUMNS})


def complete_raw(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every raw column (missing ones added empty), in order."""
    out = frame.copy()
    for column in RAW_COLUMNS:
        if column not in out.columns:
            out[column] = None
    return out[list(RAW_COLUMNS)]


def empty_subjects() -> pd.DataFrame:
    """A subject-information frame with no rows."""
    return pd.DataFrame({c: pd.Series(dtype=object) for c in SUBJECT_FIELDS})
