"""Vital-sign signals of infusion reactions: changes in the window after each infusion start.

MSC infusion reactions mostly start 30-120 min into an infusion and may be delayed up to 24 h;
transient fever is the commonest. For each infusion and each signal this compares the readings in
``(start, start + window_hours]`` with the last reading at or before the start (no older than
``pre_window_hours``): SpO2 drop, FiO2 rise, systolic pressure drop and heart-rate rise against
that value; temperature against an absolute threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from celltrial.frames import check_columns
from celltrial.units import convert

__all__ = ["SIGNAL_COLUMNS", "InfusionSignalThresholds", "derive_infusion_signals"]

_EPS = 1e-9
#: NaT as int64 nanoseconds.
_NAT = np.iinfo(np.int64).min


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


def _nanoseconds(column: pd.Series) -> np.ndarray:
    """Times as int64 nanoseconds since the epoch (UTC; NaT as :data:`_NAT`)."""
    return _utc(column).to_numpy(dtype="datetime64[ns]").view(np.int64)


def _as_utc(nanoseconds: np.ndarray) -> pd.arrays.DatetimeArray:
    """int64 nanoseconds since the epoch as aware UTC times."""
    return pd.DatetimeIndex(nanoseconds.view("datetime64[ns]")).tz_localize("UTC").array


def _take(values: np.ndarray, positions: np.ndarray, missing: Any) -> np.ndarray:
    """``values[positions]``, with ``missing`` where the position is -1."""
    out = np.full(len(positions), missing, dtype=values.dtype)
    found = positions >= 0
    out[found] = values[positions[found]]
    return out


def _search_keys(subjects: np.ndarray, times: np.ndarray) -> np.ndarray:
    """(subject code, time) as one integer in the same order: the code times the number of
    distinct times plus the time's rank among them (exact, and far from overflowing)."""
    distinct, rank = np.unique(times, return_inverse=True)
    return subjects.astype(np.int64) * max(len(distinct), 1) + rank.reshape(-1)


@dataclass(frozen=True)
class _Starts:
    """Search keys (:func:`_search_keys`) of each infusion's start, of the oldest time its
    pre-infusion reading may have, and of the end of its window."""

    start: np.ndarray
    oldest: np.ndarray
    end: np.ndarray


@dataclass(frozen=True)
class _Readings:
    """One signal's readings in its unit, sorted by subject and time (ties in frame order)."""

    keys: np.ndarray
    times: np.ndarray
    values: np.ndarray


def _readings(
    keys: np.ndarray,
    times: np.ndarray,
    values: np.ndarray,
    units: np.ndarray,
    unit_names: pd.Index,
    signal: _Signal,
) -> _Readings:
    """The signal's readings (search keys, times, values, codes of ``unit_names``) converted to
    its unit, sorted."""
    converted = np.empty(len(values))
    for unit in np.unique(units):
        mask = units == unit
        converted[mask] = convert(values[mask], unit_names[unit], signal.unit)
    order = np.argsort(keys, kind="stable")
    return _Readings(keys[order], times[order], converted[order])


def _expand(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The positions in the ranges ``[lo, hi)``, range after range; the range of each position;
    where each range begins among them."""
    counts = hi - lo
    begins = np.cumsum(counts) - counts
    positions = np.arange(counts.sum()) + np.repeat(lo - begins, counts)
    return positions, np.repeat(np.arange(len(lo)), counts), begins


def _first_where(owner: np.ndarray, mask: np.ndarray, n: int) -> np.ndarray:
    """For each of ``n`` ranges (``owner``: ascending): the index of its first True, else -1."""
    hits = np.flatnonzero(mask)
    owners = owner[hits]
    first = np.ones(len(hits), dtype=bool)
    first[1:] = owners[1:] != owners[:-1]
    out = np.full(n, -1)
    out[owners[first]] = hits[first]
    return out


def _detected(kind: str, values: np.ndarray, pre: np.ndarray, threshold: float) -> np.ndarray:
    """Which readings meet the threshold (against the pre-infusion value ``pre`` if a change)."""
    if kind == "absolute":
        return values >= threshold - _EPS
    if kind == "drop":
        return (pre - values) >= threshold - _EPS
    return (values - pre) >= threshold - _EPS


def _one_signal(
    starts: _Starts, readings: _Readings, signal: _Signal, threshold: float, pre_hours: float
) -> dict[str, Any]:
    """One signal's columns, a value per infusion (in the order of ``starts``).

    The pre-infusion value is the last reading at or before the start (among readings at one
    time, the last in frame order) and no older than ``pre_hours``; the worst reading of the
    window is the lowest (drop) or highest (rise, absolute) value, the earliest among equals.
    """
    n = len(starts.start)
    lo = np.searchsorted(readings.keys, starts.start, side="right")
    hi = np.searchsorted(readings.keys, starts.end, side="right")
    has_pre = np.searchsorted(readings.keys, starts.oldest, side="left") < lo
    at_pre = np.where(has_pre, lo - 1, -1)
    pre_value = _take(readings.values, at_pre, np.nan)

    positions, owner, begins = _expand(lo, hi)
    counts = hi - lo
    values = readings.values[positions]
    score = values if signal.kind == "drop" else -values
    lowest = np.full(n, np.inf)
    if len(positions):
        some = counts > 0
        lowest[some] = np.minimum.reduceat(score, begins[some])
    worst = _take(positions, _first_where(owner, score == lowest[owner], n), -1)
    hit = _first_where(owner, _detected(signal.kind, values, pre_value[owner], threshold), n)
    worst_value = _take(readings.values, worst, np.nan)

    no_post = counts == 0
    no_pre = ~has_pre if signal.kind != "absolute" else np.zeros(n, dtype=bool)
    detected = hit >= 0
    reason = np.where(
        no_pre & ~detected,
        f"no {signal.test} reading in the {pre_hours:g} h before the start",
        np.where(no_post, f"no {signal.test} reading in the window", ""),
    )
    return {
        "signal": np.full(n, signal.name, dtype=object),
        "test": np.full(n, signal.test, dtype=object),
        "unit": np.full(n, signal.unit, dtype=object),
        "threshold": np.full(n, threshold),
        "pre_value": pre_value,
        "pre_time": _take(readings.times, at_pre, _NAT),
        "n_readings": counts.astype(np.int64),
        "worst_value": worst_value,
        "worst_time": _take(readings.times, worst, _NAT),
        "change": worst_value - pre_value,
        "assessable": detected | ~(no_post | no_pre),
        "detected": detected,
        "first_time": _take(readings.times[positions], hit, _NAT),
        "reason": np.where(reason == "", None, reason).astype(object),
    }


def _signal_frame(base: pd.DataFrame, parts: list[dict[str, Any]]) -> pd.DataFrame:
    """The infusions (``base``) once per signal beside that signal's columns (``parts``), in
    :data:`SIGNAL_COLUMNS` order, by subject, infusion and signal."""
    out = base.take(np.tile(np.arange(len(base)), len(parts))).reset_index(drop=True)
    columns = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    for name in ("signal", "test", "unit"):
        out[name] = pd.array(columns.pop(name), dtype=str)
    for name in ("pre_time", "worst_time", "first_time"):
        out[name] = _as_utc(columns.pop(name))
    out["reason"] = pd.array(columns.pop("reason"), dtype="string")
    for name, values in columns.items():
        out[name] = values
    out["hours_to_first"] = (out["first_time"] - out["start_time"]) / pd.Timedelta(hours=1)
    out = out.sort_values(["subject_id", "infusion_number", "signal"], kind="stable")
    return out.loc[:, list(SIGNAL_COLUMNS)].reset_index(drop=True)


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

    Each signal's readings are sorted by subject and time once; each infusion then finds its
    pre-infusion reading and its window by binary search.
    """
    check_columns(vitals, ("subject_id", "time", "test", "value", "unit"), what="vitals")
    check_columns(infusions, ("subject_id", "number", "start_time"), what="infusion")
    limits = thresholds or InfusionSignalThresholds()
    given = infusions[infusions["start_time"].notna()]
    base = pd.DataFrame(
        {
            "subject_id": given["subject_id"].astype(str).array,
            "infusion_number": given["number"].array,
            "start_time": _utc(given["start_time"]).array,
        }
    )
    base = base.sort_values("start_time", kind="stable").reset_index(drop=True)
    rows = vitals[vitals["test"].isin([s.test for s in _SIGNALS]) & vitals["value"].notna()]
    times = _nanoseconds(rows["time"])
    if np.any(times == _NAT):
        raise ValueError("vitals: a reading with a value has no time")
    starts, keys = _search_space(base, rows, times, window_hours, limits.pre_window_hours)
    tests, test_names = pd.factorize(rows["test"])
    test_code = {str(name): code for code, name in enumerate(test_names)}
    units, unit_names = pd.factorize(rows["unit"].astype(str), use_na_sentinel=False)
    values = rows["value"].to_numpy(dtype=np.float64)
    parts = []
    for signal in _SIGNALS:
        own = np.flatnonzero(tests == test_code.get(signal.test, -1))
        readings = _readings(keys[own], times[own], values[own], units[own], unit_names, signal)
        threshold = float(getattr(limits, signal.threshold_field))
        parts.append(_one_signal(starts, readings, signal, threshold, limits.pre_window_hours))
    return _signal_frame(base, parts)


def _search_space(
    base: pd.DataFrame,
    rows: pd.DataFrame,
    times: np.ndarray,
    window_hours: float,
    pre_window_hours: float,
) -> tuple[_Starts, np.ndarray]:
    """The search keys (:func:`_search_keys`) of the infusions (``base``) and of the readings
    (``rows``, taken at ``times``), all from one ranking of the times."""
    n = len(base)
    subjects = pd.factorize(
        np.concatenate(
            [
                base["subject_id"].to_numpy(dtype=object),
                rows["subject_id"].astype(str).to_numpy(dtype=object),
            ]
        )
    )[0]
    start = _nanoseconds(base["start_time"])
    window = pd.Timedelta(hours=window_hours).as_unit("ns").value
    pre_window = pd.Timedelta(hours=pre_window_hours).as_unit("ns").value
    keys = _search_keys(
        np.concatenate([np.tile(subjects[:n], 3), subjects[n:]]),
        np.concatenate([start, start - pre_window, start + window, times]),
    )
    return _Starts(keys[:n], keys[n : 2 * n], keys[2 * n : 3 * n]), keys[3 * n :]
