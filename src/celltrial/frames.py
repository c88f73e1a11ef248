"""The long, CDISC-like frame shapes every analysis works on.

Only :mod:`celltrial.store` talks to the database; everything downstream receives pandas frames in
the shapes defined here (one row per subject × test × time), so analyses are pure functions that are
easy to test with small hand-made frames.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from celltrial.errors import DataError

#: One row per measured value (lab result or vital sign).
#: ``time`` is timezone-aware (UTC); ``study_day`` counts calendar days in the study's time zone
#: from the subject's first infusion (day 0), NaN before a first infusion exists.
#: ``value`` and ``unit`` are canonical (catalogue unit); ``raw_value``/``raw_unit`` keep
#: the source.
#: ``qualifier`` is "" or one of "<", "<=", ">", ">=" (value at a reporting limit).
OBSERVATION_COLUMNS: tuple[str, ...] = (
    "subject_id",
    "time",
    "study_day",
    "test",
    "value",
    "unit",
    "raw_value",
    "raw_unit",
    "qualifier",
    "ref_low",
    "ref_high",
    "specimen",
    "source",
)

#: One row per infusion given or planned-and-recorded.
INFUSION_COLUMNS: tuple[str, ...] = (
    "subject_id",
    "number",
    "lot_id",
    "planned_time",
    "start_time",
    "end_time",
    "study_day",
    "cells_given",
    "volume_ml",
    "completed",
    "stop_reason",
)

#: One row per adverse event.
ADVERSE_EVENT_COLUMNS: tuple[str, ...] = (
    "subject_id",
    "term",
    "onset",
    "resolved",
    "onset_day",
    "grade",
    "serious",
    "serious_criteria",
    "relatedness",
    "expected",
    "action",
    "outcome",
)

#: One row per subject and day of clinical status.
CLINICAL_STATUS_COLUMNS: tuple[str, ...] = (
    "subject_id",
    "time",
    "study_day",
    "who_scale",
    "oxygen_support",
    "fio2",
)

#: One row per subject (pseudonymous).
SUBJECT_COLUMNS: tuple[str, ...] = (
    "subject_id",
    "site",
    "cohort",
    "sex",
    "age",
    "weight_kg",
    "height_cm",
    "enrolled",
    "baseline_who_scale",
    "first_infusion",
    "discharged",
    "died",
)


def check_columns(frame: pd.DataFrame, required: Iterable[str], *, what: str) -> None:
    """Raise :class:`DataError` naming the columns of ``required`` that ``frame`` lacks."""
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataError(
            f"{what} frame is missing column(s) {', '.join(missing)}; "
            f"it has {', '.join(map(str, frame.columns)) or 'no columns'}"
        )


def lookup(keys: pd.Series, table: pd.Series) -> pd.Series:
    """``keys.map(table)``, also when ``table`` is empty.

    pandas 3 cannot map through an empty datetime Series (it casts the mapper to float and fails),
    which is the everyday case of a new study with no infusions or no subjects yet; the missing
    values then keep ``table``'s dtype (NaT for times).
    """
    if len(table):
        return keys.map(table)
    return pd.Series(table.reindex(keys.to_numpy()).array, index=keys.index, name=keys.name)


def same_columns(one: pd.DataFrame, other: pd.DataFrame, columns: Iterable[str]) -> bool:
    """Whether ``columns`` of the two frames hold the same values in the same rows and types
    (an update then counts a frame whose other columns changed as unchanged for them)."""
    columns = list(columns)
    if not all(c in one.columns and c in other.columns for c in columns):
        return False
    return one[columns].reset_index(drop=True).equals(other[columns].reset_index(drop=True))


def put_subjects_in_place(
    kept: pd.DataFrame,
    derived: pd.DataFrame,
    codes: set[str],
    position: pd.Index | None = None,
) -> pd.DataFrame | None:
    """``kept`` with its rows of subjects ``codes`` replaced by ``derived`` (those subjects'
    rows, in the order deriving gives them): subjects in the order of ``position`` (their
    subject codes in frame order), else sorted by code; each subject's rows in their order.

    None when either side has no rows or their columns or types differ (deriving all at once
    would then type a column otherwise).
    """
    others = kept[~kept["subject_id"].isin(codes)]
    if (
        others.empty
        or derived.empty
        or list(others.columns) != list(derived.columns)
        or not others.dtypes.equals(derived.dtypes)
    ):
        return None
    both = pd.concat([others, derived], ignore_index=True)
    if position is None:
        return both.sort_values("subject_id", kind="stable").reset_index(drop=True)
    order = np.argsort(position.get_indexer(both["subject_id"]), kind="stable")
    return both.take(order).reset_index(drop=True)
