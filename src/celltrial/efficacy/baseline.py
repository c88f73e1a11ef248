"""Baseline (the last value before the first infusion) and change from baseline."""

from __future__ import annotations

import numpy as np
import pandas as pd

from celltrial.efficacy.observations import check_tz_aware
from celltrial.errors import CelltrialError, DataError
from celltrial.frames import check_columns


def derive_baseline(
    observations: pd.DataFrame, *, first_infusion: pd.Series, window_days: float
) -> pd.DataFrame:
    """Return a new frame with each subject × test's baseline (ADaM BASE/ABLFL-like columns).

    Baseline is the last non-missing value strictly before the subject's first infusion and no
    earlier than ``window_days`` before it: ``first − window ≤ time < first``. A value taken at
    the very time of the first infusion is not baseline (it may already reflect the cells).
    Among values at the same latest time the last row in frame order is taken. Subjects without a
    first infusion (absent from ``first_infusion`` or NaT) get no baseline.

    Added columns: ``baseline`` (value, NaN when none), ``baseline_time`` and ``is_baseline``
    (True on the one row chosen).
    """
    is_baseline = select_baseline_rows(
        observations, first_infusion=first_infusion, window_days=window_days
    )
    out = observations.copy()
    base = out.loc[is_baseline, ["subject_id", "test", "value", "time"]].rename(
        columns={"value": "baseline", "time": "baseline_time"}
    )
    keys = pd.MultiIndex.from_frame(out[["subject_id", "test"]])
    lookup = base.set_index(["subject_id", "test"])
    out["baseline"] = lookup["baseline"].reindex(keys).to_numpy()
    out["baseline_time"] = lookup["baseline_time"].reindex(keys).array
    out["is_baseline"] = is_baseline
    return out


def select_baseline_rows(
    observations: pd.DataFrame, *, first_infusion: pd.Series, window_days: float
) -> np.ndarray:
    """Which rows are baseline (boolean array in frame order), as :func:`derive_baseline`
    chooses them, without adding its columns."""
    check_columns(observations, ("subject_id", "time", "test", "value"), what="observation")
    check_tz_aware(observations["time"], what="observation column 'time'")
    check_tz_aware(first_infusion, what="first_infusion")
    if not first_infusion.index.is_unique:
        raise DataError("first_infusion: a subject appears twice; give one first infusion each")
    window = float(window_days)
    if not (np.isfinite(window) and window > 0):
        raise CelltrialError(f"window_days must be a positive number of days, got {window_days!r}")

    # reindex, not map: map fails on an empty datetime Series (no infusion given yet)
    first = pd.Series(
        first_infusion.reindex(observations["subject_id"]).array, index=observations.index
    )
    start = first - pd.Timedelta(days=window)
    time = observations["time"]
    candidate = observations["value"].notna() & (time < first) & (time >= start)
    chosen = (
        observations.loc[candidate, ["subject_id", "test", "time"]]
        .assign(_position=np.flatnonzero(candidate.to_numpy()))
        .sort_values(["time", "_position"], kind="stable")
        .drop_duplicates(["subject_id", "test"], keep="last")
    )
    is_baseline = np.zeros(len(observations), dtype=bool)
    is_baseline[chosen["_position"].to_numpy()] = True
    return is_baseline


def derive_change_from_baseline(observations: pd.DataFrame) -> pd.DataFrame:
    """Return a new frame with change, percentage change and fold change from baseline.

    Computed for rows after the baseline time only (ADaM CHG is empty on and before baseline):
    ``change = value − baseline``; ``pct_change = 100 · change / baseline`` (NaN when baseline
    is 0); ``fold_change = value / baseline`` (NaN unless baseline > 0). Needs the columns of
    :func:`derive_baseline`.
    """
    check_columns(
        observations,
        ("time", "value", "baseline", "baseline_time"),
        what="observation (run derive_baseline first)",
    )
    out = observations.copy()
    after = (out["time"] > out["baseline_time"]).fillna(False).to_numpy(dtype=bool)
    value = out["value"].to_numpy(float)
    base = out["baseline"].to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        change = np.where(after, value - base, np.nan)
        pct = np.where(after & (base != 0), 100.0 * change / base, np.nan)
        fold = np.where(after & (base > 0), value / base, np.nan)
    out["change"] = change
    out["pct_change"] = pct
    out["fold_change"] = fold
    return out
