"""Parse result times into aware UTC instants; naive times are local to the study's time zone.

A time must name a calendar date (year, month and day) within :data:`EARLIEST`–:data:`LATEST`:
a cell holding only a clock time ("08:00"), a month ("Feb 2020"), a year ("2020") or a word
such as "now" is unreadable, never completed with a guessed date, and a date such as
0001-01-01 or 9999-12-31 (a placeholder, or Excel's day zero under a bare time) is an error,
not a result time.
"""

from __future__ import annotations

import re
import warnings
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

#: A UTC offset after a clock time ("08:30+08:00", "T083000Z"; not the year of "10-Feb-2020").
_OFFSET = r"(?:\d:\d{2}(?::\d{2}(?:[.,]\d+)?)?|T\d{4,6}(?:[.,]\d+)?)\s*(?:Z|[+-]\d{2}:?\d{2})\s*$"
#: Study data fall within these dates (as written, in local time); anything outside is an
#: error, not a time.
EARLIEST = pd.Timestamp("1900-01-01")
LATEST = pd.Timestamp("2100-01-01")
#: The same range for UTC instants, with a day's margin for the time zone's offset.
_UTC_EARLIEST = pd.Timestamp("1899-12-31", tz="UTC")
_UTC_LATEST = pd.Timestamp("2100-01-02", tz="UTC")
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?"
#: Text that names a whole calendar date: 2020-02-10, 10/02/2020, 20200210, 10 Feb 2020,
#: Feb 10, 2020 (a clock time alone, a month or a year alone do not).
_DATE = re.compile(
    r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}"
    r"|(?<!\d)\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}(?!\d)"
    r"|^\s*\d{8}(?:$|[T\s])"
    rf"|(?<!\d)\d{{1,2}}[-\s]*{_MONTH}[-\s,]*\d{{4}}"
    rf"|{_MONTH}\s*\d{{1,2}}(?:st|nd|rd|th)?,?\s*\d{{4}}",
    re.IGNORECASE,
)
RANGE_TEXT = f"{EARLIEST.year}–{LATEST.year - 1}"


def parse_times(raw: pd.Series, zone: ZoneInfo | str) -> tuple[pd.Series, pd.Series]:
    """(UTC times, unreadable mask): NaT where the cell is empty or cannot be read.

    ``unreadable`` is True where a non-empty cell could not be read as a time: no whole date in
    it, a date outside :data:`EARLIEST`–:data:`LATEST`, or a local time that does not exist or is
    ambiguous at a daylight-saving change. Those are errors, never guessed.
    """
    key = str(zone)
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        return _in_range(raw.dt.tz_convert("UTC"), raw.notna())
    if pd.api.types.is_datetime64_dtype(raw.dtype):
        naive = _naive_in_range(raw)
        local = naive.dt.tz_localize(key, ambiguous="NaT", nonexistent="NaT")
        return _in_range(local.dt.tz_convert("UTC"), raw.notna())
    if len(raw) > 1:
        codes, uniques = pd.factorize(raw.to_numpy(dtype=object, na_value=None))
        if len(uniques) < len(raw):  # times repeat (one draw, many results): parse each once
            times, bad = parse_times(pd.Series(uniques, dtype=object), zone)
            out_times = pd.Series(times.array.take(codes, allow_fill=True), index=raw.index)
            flags = np.append(bad.to_numpy(dtype=bool), False)  # code -1 (empty) → False
            return out_times, pd.Series(flags[codes], index=raw.index)
    text = raw.astype("string").str.strip()
    present = text.notna() & (text != "")
    dated = present & text.str.contains(_DATE).fillna(False).astype(bool)
    with_offset = dated & text.str.contains(_OFFSET, regex=True).fillna(False).astype(bool)
    out = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[us, UTC]")
    if with_offset.any():
        aware = pd.to_datetime(text[with_offset], errors="coerce", utc=True, format="ISO8601")
        out[with_offset] = aware
    naive_mask = dated & ~with_offset
    if naive_mask.any():
        naive = _naive_in_range(_to_naive(text[naive_mask]))
        local = naive.dt.tz_localize(key, ambiguous="NaT", nonexistent="NaT")
        out[naive_mask] = local.dt.tz_convert("UTC")
    return _in_range(out, present)


def _naive_in_range(naive: pd.Series) -> pd.Series:
    """Naive times outside the study range as NaT, before localising (a time zone's offset
    could carry 0001-01-01 or 9999-12-31 out of the calendar)."""
    return naive.where((naive >= EARLIEST) & (naive < LATEST))


def _in_range(times: pd.Series, present: pd.Series) -> tuple[pd.Series, pd.Series]:
    """UTC times with those outside the study range made NaT; unreadable = present but NaT."""
    times = times.astype("datetime64[us, UTC]")
    times = times.where((times >= _UTC_EARLIEST) & (times < _UTC_LATEST))
    return times, present.fillna(False).astype(bool) & times.isna()


def _to_naive(text: pd.Series) -> pd.Series:
    """Naive datetimes: the inferred format first (fast), then ISO 8601, then any format."""
    with warnings.catch_warnings():  # "could not infer format": the fallbacks below are meant
        warnings.simplefilter("ignore", UserWarning)
        parsed = pd.to_datetime(text, errors="coerce")
    retry = parsed.isna()
    if retry.any():
        parsed[retry] = pd.to_datetime(text[retry], errors="coerce", format="ISO8601")
        retry = parsed.isna()
    if retry.any():
        parsed[retry] = pd.to_datetime(text[retry], errors="coerce", format="mixed")
    if isinstance(parsed.dtype, pd.DatetimeTZDtype):  # pragma: no cover - guarded by _OFFSET
        parsed = parsed.dt.tz_localize(None)
    return parsed.astype("datetime64[us]")


TIME_EXAMPLE = "2020-02-10 14:30 or 2020-02-10T14:30+08:00"


def parse_time(text: str, zone: ZoneInfo | str) -> pd.Timestamp:
    """One date-time typed by a person, as an aware UTC instant (naive = local to ``zone``).

    Raises ``ValueError`` with a plain message when ``text`` is not a date and time (a clock time
    or a word such as "now" without a date is not), lies outside the years a study's data can
    fall in, or names a local time that does not exist or is ambiguous (a daylight-saving
    change); callers add where.
    """
    stamp = None
    if _DATE.search(text):
        try:
            stamp = pd.Timestamp(text.strip())
        except (ValueError, TypeError, OverflowError):
            stamp = None
    if stamp is None or pd.isna(stamp):
        raise ValueError(f"{text!r} — expected a date and time such as {TIME_EXAMPLE}")
    naive = stamp.tz_localize(None) if stamp.tzinfo is not None else stamp
    if not EARLIEST <= naive < LATEST:
        raise ValueError(f"{text!r} — expected a date in the years {RANGE_TEXT}")
    if stamp.tzinfo is None:
        try:
            stamp = stamp.tz_localize(str(zone), ambiguous="raise", nonexistent="raise")
        except Exception:  # pandas' NonExistentTimeError / AmbiguousTimeError
            raise ValueError(
                f"{text!r} does not name one local time in {zone} (a daylight-saving change); "
                "give the UTC offset, e.g. +01:00"
            ) from None
    return stamp.tz_convert("UTC")


#: Extra columns of a raw frame whose times are given as days from an anchor: the day cell as
#: written, the anchor (a UTC time, a ``YYYY-MM-DD`` date, or None: the subject's admission as
#: the study records it) and the file's column holding the days. Validation makes them dates.
OFFSET_COLUMNS = ("offset_days", "anchor", "time_column")
#: Day offsets beyond this many days from their anchor are not study times (about 200 years).
MAX_OFFSET_DAYS = 73_000
_WHOLE_DAYS = re.compile(r"^\s*[+-]?\d+(?:\.0*)?\s*$")


def parse_day_offsets(raw: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(whole days as Int64, unreadable mask) of cells giving a time as days from an anchor.

    ``3``, ``+3``, ``-1``, ``3.0`` (and a workbook's numbers 3 or 3.0) are days; ``1.5``,
    ``day 3``, ``1e400`` and offsets beyond :data:`MAX_OFFSET_DAYS` are unreadable (an error,
    never rounded); empty cells are missing.
    """

    def parse(values: pd.Series) -> pd.Series:
        out = []
        for value in values:
            if value is None or (isinstance(value, float) and np.isnan(value)):
                out.append(None)
                continue
            if isinstance(value, bool | np.bool_):
                out.append("bad")
                continue
            if isinstance(value, int | np.integer):
                number: float = float(value)
            elif isinstance(value, float | np.floating):
                number = float(value)
            else:
                text = str(value).strip()
                if not text:
                    out.append(None)
                    continue
                if not _WHOLE_DAYS.match(text):
                    out.append("bad")
                    continue
                number = float(text)
            if not np.isfinite(number) or not number.is_integer() or abs(number) > MAX_OFFSET_DAYS:
                out.append("bad")
            else:
                out.append(int(number))
        return pd.Series(out, index=values.index, dtype=object)

    from celltrial.ingest.frame import map_unique

    parsed = map_unique(raw, parse)
    bad = parsed.map(lambda v: isinstance(v, str)).astype(bool)
    days = parsed.where(~bad, None)
    return pd.Series(pd.array(days.tolist(), dtype="Int64"), index=raw.index), bad


def dates_from_offsets(anchor: pd.Series, days: pd.Series, zone: ZoneInfo | str) -> pd.Series:
    """``YYYY-MM-DD`` text (None where either is missing): the anchor's calendar day in ``zone``
    plus ``days``. ``anchor`` holds aware times (an admission) or ``YYYY-MM-DD`` text."""
    if isinstance(anchor.dtype, pd.DatetimeTZDtype):
        day = anchor.dt.tz_convert(str(zone)).dt.tz_localize(None).dt.normalize()
    else:
        day = pd.to_datetime(anchor, errors="coerce", format="ISO8601")
        if isinstance(day.dtype, pd.DatetimeTZDtype):
            day = day.dt.tz_convert(str(zone)).dt.tz_localize(None)
        day = day.dt.normalize()
    offset = pd.to_timedelta(pd.Series(days, index=anchor.index).astype("Float64"), unit="D")
    when = day + offset
    text = when.dt.strftime("%Y-%m-%d")
    return text.astype(object).where(when.notna(), None)


_CLOCK = re.compile(r"\d:\d{2}|T\d{2}")


def date_only(raw: pd.Series) -> pd.Series:
    """Mask of time cells that name a calendar day without a clock time (day-resolution data):
    text without ``hh:mm``; a workbook's date cell at midnight."""

    def check(values: pd.Series) -> pd.Series:
        out = []
        for value in values:
            if isinstance(value, pd.Timestamp | np.datetime64) or hasattr(value, "hour"):
                stamp = pd.Timestamp(value)
                out.append(
                    not pd.isna(stamp)
                    and (stamp.hour, stamp.minute, stamp.second, stamp.microsecond) == (0, 0, 0, 0)
                )
            elif isinstance(value, str):
                out.append(bool(_DATE.search(value)) and not _CLOCK.search(value))
            else:
                out.append(False)
        return pd.Series(out, index=values.index, dtype=object)

    from celltrial.ingest.frame import map_unique

    return map_unique(raw, check).fillna(False).astype(bool)
