"""SDTM timing: ``--DTC`` in the study's local time with its UTC offset, at the precision
collected, and ``--DY`` counted from the reference start date (no day 0).

The store keeps every time as a UTC instant; a value collected as a date without a clock time
(``2020-01-17``) is stored as that date's local midnight in the study's time zone (the ingest
reads a naive date as local midnight). The store keeps no flag for "date only", so the rule here
is: **a time at local midnight exactly (00:00:00.000000) is a date collected without a time** and
is exported as a date (``2020-01-17``). A real measurement taken at 00:00:00 exactly is therefore
exported as a date too (rare: recorded times are seldom at the exact second of midnight).
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd


def _wall_and_offset(times: pd.Series, zone: ZoneInfo | str) -> tuple[np.ndarray, np.ndarray]:
    """(local wall-clock datetime64[us] array, UTC offset in minutes) of aware ``times``."""
    utc = pd.to_datetime(times, utc=True)
    naive_utc = np.asarray(utc.array.tz_localize(None)).astype("datetime64[us]")
    wall = np.asarray(utc.array.tz_convert(str(zone)).tz_localize(None)).astype("datetime64[us]")
    offset = (wall - naive_utc).astype("timedelta64[m]").astype("int64")
    return wall, offset


def compute_date_only(times: pd.Series, zone: ZoneInfo | str) -> np.ndarray:
    """True where a time is a date collected without a clock time (local midnight exactly);
    False where missing."""
    if len(times) == 0:
        return np.zeros(0, dtype=bool)
    wall, _ = _wall_and_offset(times, zone)
    present = ~np.isnat(wall)
    return present & (wall == wall.astype("datetime64[D]").astype("datetime64[us]"))


def _offset_text(minutes: int) -> str:
    sign = "+" if minutes >= 0 else "-"
    hours, rest = divmod(abs(int(minutes)), 60)
    return f"{sign}{hours:02d}:{rest:02d}"


def compute_dtc(times: pd.Series, zone: ZoneInfo | str) -> list[str | None]:
    """ISO 8601 text of each aware time in ``zone``: ``2020-01-17T07:30:00+08:00``, or the date
    alone (``2020-01-17``) for a date collected without a time; None where missing."""
    if len(times) == 0:
        return []
    wall, offset = _wall_and_offset(times, zone)
    missing = np.isnat(wall)
    seconds = np.datetime_as_string(np.where(missing, np.datetime64(0, "s"), wall), unit="s")
    date_only = compute_date_only(times, zone)
    offsets = {int(m): _offset_text(m) for m in np.unique(offset[~missing])}
    return [
        None if gone else (text[:10] if whole_day else text + offsets[int(minutes)])
        for text, gone, whole_day, minutes in zip(
            seconds.tolist(), missing.tolist(), date_only.tolist(), offset.tolist(), strict=True
        )
    ]


def compute_sdtm_day(study_days: pd.Series) -> pd.Series:
    """SDTM ``--DY`` from calendar-day differences to the reference start date (day 0 = the
    reference date itself): on or after it, difference + 1; before it, the difference (no 0)."""
    days = pd.to_numeric(study_days, errors="coerce").astype("Float64")
    return days.where(days < 0, days + 1).astype("Int64")


__all__ = ["compute_date_only", "compute_dtc", "compute_sdtm_day"]
