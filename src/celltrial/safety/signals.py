"""Vital-sign signals of infusion reactions: changes in the window after each infusion start.

MSC infusion reactions mostly start 30-120 min into an infusion and may be delayed up to 24 h;
transient fever is the commonest. For each infusion and each signal this compares the readings in
``(start, start + window_hours]`` with the last reading at or before the start (no older than
``pre_window_hours``): SpO2 drop, FiO2 rise, systolic pressure drop and heart-rate rise against
that value; temperature against an absolute threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from celltrial.frames import check_columns
from celltrial.units import convert

__all__ = ["SIGNAL_COLUMNS", "InfusionSignalThresholds", "derive_infusion_signals"]

_EPS = 1e-9


class InfusionSignalThresholds(BaseModel):
    """Thresholds of the infusion-reaction signals (the protocol will carry them later)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    spo2_drop: float = Field(4.0, gt=0, description="SpO2 fall in percentage points")
    fio2_rise: float = Field(
        0.01, gt=0, description="FiO2 rise as a fraction; 0.01 (one point) is any recorded rise"
    )
    temperature: float = Field(38.0, description="body temperature in °C, absolute")
    sysbp_drop: float = Field(20.0, gt=0, description="systolic pressure fall in mmHg")
    hr_rise: float = Field(20.0, gt=0, description="heart-rate rise per minute")
    pre_window_hours: float = Field(
        24.0, gt=0, description="how old the last pre-infusion reading may be"
    )


@dataclass(frozen=True)
class _Signal:
    name: str
    test: str
    unit: str
    kind: str  # "drop" | "rise" | "absolute"
    threshold_field: str


_SIGNALS = (
    _Signal("spo2_drop", "SPO2", "%", "drop", "spo2_drop"),
    _Signal("fio2_rise", "FIO2", "1", "rise", "fio2_rise"),
    _Signal("fever", "TEMP", "degC", "absolute", "temperature"),
    _Signal("sysbp_drop", "SYSBP", "mmHg", "drop", "sysbp_drop"),
    _Signal("hr_rise", "HR", "1/min", "rise", "hr_rise"),
)

#: Columns of the frame returned by :func:`derive_infusion_signals`.
SIGNAL_COLUMNS: tuple[str, ...] = (
    "subject_id",
    "infusion_number",
    "start_time",
    "signal",
    "test",
    "unit",
    "threshold",
    "pre_value",
    "pre_time",
    "n_readings",
    "worst_value",
    "worst_time",
    "change",
    "assessable",
    "detected",
    "first_time",
    "hours_to_first",
    "reason",
)


def _utc(column: pd.Series) -> pd.Series:
    return pd.to_datetime(column, utc=True).dt.as_unit("ns")


def _readings(vitals: pd.DataFrame, signal: _Signal) -> pd.DataFrame:
    """The signal's readings, converted to its unit, sorted by time."""
    rows = vitals[(vitals["test"] == signal.test) & vitals["value"].notna()]
    values = rows["value"].to_numpy(dtype=np.float64)
    converted = np.empty(len(rows))
    units = rows["unit"].astype(str).to_numpy()
    for unit in np.unique(units):
        mask = units == unit
        converted[mask] = convert(values[mask], unit, signal.unit)
    out = pd.DataFrame(
        {
            "subject_id": rows["subject_id"].astype(str).array,
            "time": _utc(rows["time"]).array,
            "value": converted,
        }
    )
    return out.sort_values("time", kind="stable").reset_index(drop=True)


def _detected(kind: str, values: pd.Series, pre: pd.Series, threshold: float) -> pd.Series:
    if kind == "absolute":
        return values >= threshold - _EPS
    if kind == "drop":
        return (pre - values) >= threshold - _EPS
    return (values - pre) >= threshold - _EPS


def _one_signal(
    infusions: pd.DataFrame,
    readings: pd.DataFrame,
    signal: _Signal,
    threshold: float,
    window: pd.Timedelta,
    pre_window: pd.Timedelta,
) -> pd.DataFrame:
    base = infusions.sort_values("start_time", kind="stable").reset_index(drop=True)
    pre = pd.merge_asof(
        base,
        readings.rename(columns={"time": "pre_time", "value": "pre_value"}),
        left_on="start_time",
        right_on="pre_time",
        by="subject_id",
        direction="backward",
        allow_exact_matches=True,
        tolerance=pre_window,
    )
    post = base.merge(readings, on="subject_id", how="inner")
    post = post[(post["time"] > post["start_time"]) & (post["time"] <= post["start_time"] + window)]
    post = post.merge(pre[["key", "pre_value"]], on="key", how="left")
    ascending = signal.kind == "drop"
    worst = (
        post.sort_values(["key", "value", "time"], ascending=[True, ascending, True])
        .drop_duplicates("key")
        .set_index("key")
    )
    hits = post[_detected(signal.kind, post["value"], post["pre_value"], threshold)]
    first = hits.sort_values(["key", "time"]).drop_duplicates("key").set_index("key")["time"]
    counts = post.groupby("key").size()

    out = pre.set_index("key")
    out["n_readings"] = counts.reindex(out.index).fillna(0).astype("int64")
    out["worst_value"] = worst["value"].reindex(out.index)
    out["worst_time"] = worst["time"].reindex(out.index)
    out["change"] = out["worst_value"] - out["pre_value"]
    out["first_time"] = first.reindex(out.index)
    out["hours_to_first"] = (out["first_time"] - out["start_time"]) / pd.Timedelta(hours=1)
    needs_pre = signal.kind != "absolute"
    no_post = out["n_readings"] == 0
    no_pre = out["pre_value"].isna() if needs_pre else pd.Series(False, index=out.index)
    detected = out["first_time"].notna().to_numpy()
    unassessable = (no_post | no_pre).to_numpy()
    out["assessable"] = detected | ~unassessable
    out["detected"] = detected
    hours = pre_window / pd.Timedelta(hours=1)
    reason = np.where(
        no_pre.to_numpy() & ~detected,
        f"no {signal.test} reading in the {hours:g} h before the start",
        np.where(no_post.to_numpy(), f"no {signal.test} reading in the window", ""),
    )
    out["reason"] = pd.array(np.where(reason == "", None, reason), dtype="string")
    out["signal"] = signal.name
    out["test"] = signal.test
    out["unit"] = signal.unit
    out["threshold"] = threshold
    return out.reset_index(drop=True)


def derive_infusion_signals(
    vitals: pd.DataFrame,
    infusions: pd.DataFrame,
    *,
    window_hours: float = 24.0,
    thresholds: InfusionSignalThresholds | None = None,
) -> pd.DataFrame:
    """One row per infusion and signal (see :data:`SIGNAL_COLUMNS`), a new frame.

    ``vitals`` is observation-shaped (``subject_id``, ``time``, ``test``, ``value``, ``unit``;
    tests TEMP, SPO2, FIO2, SYSBP, HR, any convertible unit: FiO2 in % is converted to a
    fraction). ``infusions`` has ``subject_id``, ``number`` and ``start_time``; infusions without
    a start time are skipped. ``detected`` is True when a reading in the window met the
    threshold; ``assessable`` is False when the signal could not be assessed (no reading in the
    window, or no pre-infusion reading for a change signal), and ``reason`` then says why.
    """
    check_columns(vitals, ("subject_id", "time", "test", "value", "unit"), what="vitals")
    check_columns(infusions, ("subject_id", "number", "start_time"), what="infusion")
    limits = thresholds or InfusionSignalThresholds()
    window = pd.Timedelta(hours=window_hours)
    pre_window = pd.Timedelta(hours=limits.pre_window_hours)
    given = infusions[infusions["start_time"].notna()]
    base = pd.DataFrame(
        {
            "subject_id": given["subject_id"].astype(str).array,
            "infusion_number": given["number"].array,
            "start_time": _utc(given["start_time"]).array,
        }
    )
    base["key"] = np.arange(len(base))
    parts = [
        _one_signal(
            base,
            _readings(vitals, signal),
            signal,
            float(getattr(limits, signal.threshold_field)),
            window,
            pre_window,
        )
        for signal in _SIGNALS
    ]
    out = pd.concat(parts, ignore_index=True)
    out = out.sort_values(["subject_id", "infusion_number", "signal"], kind="stable")
    return out.loc[:, list(SIGNAL_COLUMNS)].reset_index(drop=True)
