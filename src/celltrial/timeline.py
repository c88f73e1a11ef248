"""Study time: study days counted from each subject's first infusion (day 0).

A study day is the number of calendar days, in the study's time zone, between a time and the
subject's first infusion: the first infusion's calendar day is day 0, the day before is day -1.
Every derived day keeps its source time beside it.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd


def compute_study_days(times: pd.Series, day0_times: pd.Series, zone: ZoneInfo | str) -> pd.Series:
    """Calendar-day difference, in ``zone``, between ``times`` and ``day0_times`` (aligned).

    Both are timezone-aware; the result is a nullable integer (missing where either is missing).
    """
    days = _local_date_numbers(times, zone) - _local_date_numbers(day0_times, zone)
    return days.astype("Int64")


def _local_date_numbers(times: pd.Series, zone: ZoneInfo | str) -> pd.Series:
    """Days since 1970-01-01 of each time's calendar date in ``zone`` (float, NaN where missing).

    Whole days are exact in a float. Working on the underlying arrays avoids re-localizing local
    midnights (which fails where a day has no midnight) and the costly ``.dt`` accessors.
    """
    utc = pd.to_datetime(times, utc=True)
    wall = np.asarray(utc.array.tz_convert(zone).tz_localize(None))
    dates = wall.astype("datetime64[D]")
    numbers = np.where(np.isnat(dates), np.nan, dates.astype("int64"))
    return pd.Series(numbers, index=utc.index, name=utc.name)


def derive_study_day(
    frame: pd.DataFrame,
    first_infusions: pd.Series,
    zone: ZoneInfo | str,
    *,
    time_column: str = "time",
    day_column: str = "study_day",
) -> pd.DataFrame:
    """A copy of ``frame`` with ``day_column`` = study day of ``time_column``.

    ``first_infusions`` maps subject_id to the first infusion's start time; subjects without one
    get a missing day.
    """
    out = frame.copy()
    if len(out) == 0:
        out[day_column] = pd.Series(dtype="Int64")
        return out
    # converted as a column: ``to_numpy()`` of aware times would make one Timestamp per row
    day0 = pd.to_datetime(first_infusions.reindex(out["subject_id"]), utc=True)
    out[day_column] = compute_study_days(
        out[time_column], pd.Series(day0.array, index=out.index), zone
    )
    return out


def local_time(day0: pd.Timestamp, day: int, hour: float, zone: ZoneInfo | str) -> pd.Timestamp:
    """The instant at ``hour`` o'clock (local time) on study ``day``, day 0 being ``day0``."""
    # wall-clock arithmetic on the naive local time, so daylight-saving changes keep the hour
    wall = day0.tz_convert(zone).tz_localize(None).normalize()
    wall = wall + pd.Timedelta(days=int(day)) + pd.Timedelta(hours=float(hour))
    aware = wall.tz_localize(zone, ambiguous=False, nonexistent="shift_forward")
    return aware.tz_convert("UTC")


__all__ = ["compute_study_days", "derive_study_day", "local_time"]
