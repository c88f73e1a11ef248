"""Area under a marker's time course (trapezoidal rule over study day), per subject."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from celltrial.efficacy.observations import limit_caveat
from celltrial.errors import DataError
from celltrial.frames import check_columns


@dataclass(frozen=True, eq=False)
class AucSummary:
    """Per subject × test AUC (``summary``) with the interval it was computed over."""

    summary: pd.DataFrame
    start_day: float | None
    end_day: float | None
    n_subjects: int
    method: str
    caveats: tuple[str, ...]


def compute_auc(days: ArrayLike, values: ArrayLike) -> float:
    """Trapezoidal area under ``values`` over ``days`` (strictly increasing; NaN pairs skipped).

    Fewer than two points give NaN: there is no area to speak of.
    """
    x = np.asarray(days, dtype=float)
    y = np.asarray(values, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise DataError(f"days and values must be 1-D of equal length, got {x.shape} and {y.shape}")
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    if x.size < 2:
        return float("nan")
    if np.any(np.diff(x) <= 0):
        raise DataError("days must be strictly increasing for an AUC")
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def summarize_auc(
    observations: pd.DataFrame,
    *,
    start_day: float | None = None,
    end_day: float | None = None,
    day_column: str = "study_day",
) -> AucSummary:
    """Trapezoidal AUC of ``value`` over ``day_column`` per subject × test, within the interval.

    Only observed points inside [``start_day``, ``end_day``] are used (no extrapolation, no
    interpolation to the edges); values on the same day are averaged first, and missing values
    are skipped (the trapezoid bridges the gap). ``summary`` columns: subject_id, test, auc,
    auc_per_day (AUC / span: a time-averaged level, comparable across spans), first_day,
    last_day, n_points and covers_interval (observations reach both interval ends).
    """
    check_columns(observations, ("subject_id", "test", "value", day_column), what="observation")
    day = pd.to_numeric(observations[day_column], errors="coerce").to_numpy(float, na_value=np.nan)
    value = pd.to_numeric(observations["value"], errors="coerce").to_numpy(float, na_value=np.nan)
    used = ~(np.isnan(day) | np.isnan(value))
    if start_day is not None:
        used &= day >= start_day
    if end_day is not None:
        used &= day <= end_day
    frame = pd.DataFrame(
        {
            "subject_id": observations["subject_id"].to_numpy()[used],
            "test": observations["test"].to_numpy()[used],
            "day": day[used],
            "value": value[used],
        }
    )
    n_rows = len(frame)
    note = limit_caveat(observations[used])
    points = frame.groupby(["subject_id", "test", "day"], sort=True, as_index=False)["value"].mean()
    caveats: list[str] = []
    if len(points) < n_rows:
        caveats.append(f"{n_rows - len(points)} same-day value(s) were averaged before the AUC")

    same = (points["subject_id"].eq(points["subject_id"].shift())) & (
        points["test"].eq(points["test"].shift())
    )
    width = points["day"].diff().where(same, 0.0)
    height = ((points["value"] + points["value"].shift()) / 2.0).where(same, 0.0)
    points["_area"] = width * height
    grouped = points.groupby(["subject_id", "test"], sort=True)
    table = grouped.agg(
        auc=("_area", "sum"),
        first_day=("day", "min"),
        last_day=("day", "max"),
        n_points=("day", "size"),
    ).reset_index()
    table.loc[table["n_points"] < 2, "auc"] = np.nan
    span = table["last_day"] - table["first_day"]
    table.insert(3, "auc_per_day", table["auc"] / span.where(span > 0))
    covers = pd.Series(True, index=table.index)
    if start_day is not None:
        covers &= table["first_day"] <= start_day
    if end_day is not None:
        covers &= table["last_day"] >= end_day
    table["covers_interval"] = covers.to_numpy(dtype=bool)

    if note:
        caveats.append(note)
    if (table["n_points"] < 2).any():
        caveats.append("subjects with fewer than 2 points in the interval have no AUC")
    if not table["covers_interval"].all():
        caveats.append(
            f"{int((~table['covers_interval']).sum())} subject × test series do not reach both "
            "interval ends: their AUC covers a shorter span (compare auc_per_day)"
        )
    return AucSummary(
        summary=table,
        start_day=start_day,
        end_day=end_day,
        n_subjects=int(table["subject_id"].nunique()),
        method=(
            f"trapezoidal rule over {day_column} per subject and test, observed points only "
            "(no extrapolation); same-day values averaged; AUC per day = AUC / observed span"
        ),
        caveats=tuple(caveats),
    )
