"""Nominal visits: which protocol visit each observation stands for, by study-day windows."""

from __future__ import annotations

import numpy as np
import pandas as pd

from celltrial.errors import DataError
from celltrial.frames import check_columns

#: Columns of the visit table (one row per protocol visit; days and windows in days).
VISIT_COLUMNS: tuple[str, ...] = ("visit", "day", "window_before", "window_after")


def check_visits(visits: pd.DataFrame) -> pd.DataFrame:
    """Validate the visit table and return it sorted by nominal day (stable)."""
    check_columns(visits, VISIT_COLUMNS, what="visit")
    if visits["visit"].isna().any():
        raise DataError("visit table: every visit needs a label (column 'visit')")
    duplicated = visits["visit"][visits["visit"].duplicated()]
    if not duplicated.empty:
        raise DataError(
            f"visit table: visit label(s) appear twice: {', '.join(map(str, duplicated))}"
        )
    table = visits.loc[:, list(VISIT_COLUMNS)].copy()
    for column in VISIT_COLUMNS[1:]:
        numbers = pd.to_numeric(table[column], errors="coerce")
        bad = ~np.isfinite(numbers.to_numpy(float))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"visit table row {row} ({table['visit'].iloc[row]}): {column} must be a finite "
                f"number of days, got {table[column].iloc[row]!r}"
            )
        table[column] = numbers.astype(float)
    negative = (table["window_before"] < 0) | (table["window_after"] < 0)
    if negative.any():
        label = table.loc[negative, "visit"].iloc[0]
        raise DataError(f"visit table: visit {label}: windows must be ≥ 0 days")
    return table.sort_values("day", kind="stable").reset_index(drop=True)


def derive_nominal_visits(observations: pd.DataFrame, visits: pd.DataFrame) -> pd.DataFrame:
    """Assign each observation to a protocol visit; return a new frame with visit columns.

    An observation on study day d falls in a visit's window when
    ``day − window_before ≤ d ≤ day + window_after`` (both edges inclusive). When several windows
    hold it, the visit with the nearest nominal day wins, ties to the earlier visit. Within one
    subject × test × visit the observation that represents the visit is the one with a value,
    then closest to the nominal day, then earliest in time, then first in frame order; every
    other observation is kept and flagged ``unscheduled`` (so is one outside every window, or
    without a study day).

    Added columns: ``visit`` (label of the visit it represents, missing when unscheduled),
    ``visit_day`` (its nominal day), ``window_visit`` (the visit whose window holds it, even when
    unscheduled) and ``unscheduled`` (bool).
    """
    check_columns(
        observations, ("subject_id", "time", "study_day", "test", "value"), what="observation"
    )
    table = check_visits(visits)
    out = observations.copy()
    days = pd.to_numeric(out["study_day"], errors="coerce").to_numpy(float, na_value=np.nan)
    nominal = table["day"].to_numpy()
    low = nominal - table["window_before"].to_numpy()
    high = nominal + table["window_after"].to_numpy()

    n_rows = len(out)
    best = np.full(n_rows, -1, dtype=np.int64)
    best_distance = np.full(n_rows, np.inf)
    # visits in day order: a strict "<" keeps the earlier visit on equal distance
    for index in range(len(table)):
        inside = (days >= low[index]) & (days <= high[index])
        distance = np.abs(days - nominal[index])
        better = inside & (distance < best_distance)
        best[better] = index
        best_distance[better] = distance[better]
    has_window = best >= 0

    labels = table["visit"].to_numpy(dtype=object)
    window_visit = np.where(has_window, labels[np.maximum(best, 0)], None)

    keys = pd.DataFrame(
        {
            "subject_id": out["subject_id"].to_numpy(),
            "test": out["test"].to_numpy(),
            "visit_index": best,
            "missing": pd.isna(out["value"]).to_numpy(),
            "distance": best_distance,
            "time": out["time"].array,
            "position": np.arange(n_rows),
        }
    )[has_window]
    ordered = keys.sort_values(
        ["subject_id", "test", "visit_index", "missing", "distance", "time", "position"],
        kind="stable",
        na_position="last",
    )
    first = ordered.loc[~ordered.duplicated(["subject_id", "test", "visit_index"]), "position"]
    chosen = np.zeros(n_rows, dtype=bool)
    chosen[first.to_numpy()] = True

    out["visit"] = pd.Series(np.where(chosen, window_visit, None), index=out.index, dtype=object)
    out["visit_day"] = np.where(chosen, nominal[np.maximum(best, 0)], np.nan)
    out["window_visit"] = pd.Series(window_visit, index=out.index, dtype=object)
    out["unscheduled"] = ~chosen
    return out
