"""Parse result times into aware UTC instants; naive times are local to the study's time zone.

A time must name a calendar date (year, month and day) within :data:`EARLIEST`–:data:`LATEST`:
a cell holding only a clock time ("08:00"), a month ("Feb 2020"), a year ("2020") or a word
such as "now" is unreadable, never completed with a guessed date, and a date such as
0001-01-01 or 9999-12-31 (a placeholder, or Excel's day zero under a bare time) is an error,
not a result time. A time in a file (:func:`parse_times`) may also lie no more than
:data:`FUTURE_MARGIN` after the moment of reading: a result from next year is a typing error.

Day and month: a date written with the year last (``10/02/2020``, ``10.02.2020``,
``10-02-20``) is read in one order for the whole file (a :class:`DateOrder`), decided by a
stated rule, never guessed per value or per file by a parser:

1. the mapping's ``date_format`` (``DD/MM/YYYY``, ``MM/DD/YYYY``) or ``dayfirst``;
2. else the file itself, where one of its dates reads one way only (``13/02/2020``: a day above
   12 in the first position means day first; ``02/13/2020`` month first) — and every other date
   of the file is then read the same way (one that cannot be is an error);
3. else a date that reads both ways (``10/02/2020`` with no day above 12 anywhere in the file
   before it) is an error naming its row: the mapping must say which.

A file whose dates prove both orders (``13/02/2020`` and ``02/13/2020``) has errors on the
dates of the order that came second. Dates with the year first (``2020-02-10``, ``2020/02/10``),
or a month name (``10 Feb 2020``) are read as written.
"""

from __future__ import annotations

import contextvars
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
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
#: Typed times (:func:`parse_time`): the years they may fall in.
TYPED_RANGE_TEXT = f"{EARLIEST.year}–{LATEST.year - 1}"
#: Times in a file (:func:`parse_times`): from 1900 to no later than a day after the import.
RANGE_TEXT = f"{EARLIEST.year} to today"
#: How far after the moment of reading a time in a file may lie (clocks and time zones).
FUTURE_MARGIN = pd.Timedelta(days=1)
#: A date with the year last: first, second number, year, and the rest (a clock time).
_YEAR_LAST = re.compile(
    r"^\s*(?P<a>\d{1,2})(?P<sep>[-/.])(?P<b>\d{1,2})(?P=sep)(?P<y>\d{4}|\d{2})(?P<rest>(?:[T\s].*)?)$"
)
DAY_FIRST, MONTH_FIRST = "DD/MM/YYYY", "MM/DD/YYYY"


@dataclass
class DateOrder:
    """The order of day and month in a file's dates written with the year last, decided once
    for the file (see the module's doc). ``order``: ``"dmy"``, ``"mdy"`` or None (not decided
    yet); ``source``: ``"mapping"`` or ``"file"``; ``evidence``: the value that decided it."""

    order: str | None = None
    source: str | None = None
    evidence: str | None = None
    #: values seen that read both ways before anything decided (to name in messages)
    ambiguous: list[str] = field(default_factory=list)

    @classmethod
    def stated(cls, dayfirst: bool | None) -> DateOrder:
        """The order a mapping states (``dayfirst`` True/False), or an undecided one."""
        if dayfirst is None:
            return cls()
        return cls("dmy" if dayfirst else "mdy", "mapping", None)

    def decide(self, values: pd.Series, day_first: pd.Series, month_first: pd.Series) -> None:
        """Decide from the first of ``values`` (in file order) that reads one way only."""
        if self.order is not None:
            return
        one_way = (day_first | month_first).to_numpy()
        if not one_way.any():
            return
        first = int(np.flatnonzero(one_way)[0])
        self.order = "dmy" if bool(day_first.iloc[first]) else "mdy"
        self.source, self.evidence = "file", str(values.iloc[first])

    def describe(self) -> str:
        """How this file's dates are read, for a message."""
        if self.order is None:
            return "the file does not say whether its dates give the day or the month first"
        written = DAY_FIRST if self.order == "dmy" else MONTH_FIRST
        if self.source == "mapping":
            return f"the mapping says {written}"
        return f"the file's date {self.evidence!r} reads only as {written}"


_CURRENT: contextvars.ContextVar[DateOrder | None] = contextvars.ContextVar(
    "celltrial_date_order", default=None
)


@contextmanager
def date_order_scope(order: DateOrder) -> Iterator[DateOrder]:
    """Parse every time read within this block (one file's import) with ``order``."""
    token = _CURRENT.set(order)
    try:
        yield order
    finally:
        _CURRENT.reset(token)


def current_date_order() -> DateOrder | None:
    """The file's :class:`DateOrder` (inside :func:`date_order_scope`), else None."""
    return _CURRENT.get()


AMBIGUOUS_DATE_HINT = (
    "a date whose day and month can be told apart: {value!r} reads as {one} or {other}; "
    "say how the file writes dates in the mapping (date_format: DD/MM/YYYY or "
    "date_format: MM/DD/YYYY), or write dates as YYYY-MM-DD"
)


def parse_times(
    raw: pd.Series, zone: ZoneInfo | str, *, order: DateOrder | None = None
) -> tuple[pd.Series, pd.Series]:
    """(UTC times, unreadable mask): NaT where the cell is empty or cannot be read.

    ``unreadable`` is True where a non-empty cell could not be read as a time: no whole date in
    it, a date before :data:`EARLIEST` or more than :data:`FUTURE_MARGIN` after now, a local
    time that does not exist or is ambiguous at a daylight-saving change, or a date with the
    year last whose day and month order is not decided (see the module's doc). Those are
    errors, never guessed. ``order``: the file's :class:`DateOrder` (default: the one of the
    enclosing :func:`date_order_scope`, else one for these cells alone).
    """
    if order is None:
        order = current_date_order() or DateOrder()
    key = str(zone)
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        return _in_range(raw.dt.tz_convert("UTC"), raw.notna())
    if pd.api.types.is_datetime64_dtype(raw.dtype):
        naive = _naive_in_range(raw)
        local = naive.dt.tz_localize(key, ambiguous="NaT", nonexistent="NaT")
        return _in_range(local.dt.tz_convert("UTC"), raw.notna())
    if len(raw) > 1:
        codes, uniques = pd.factorize(raw.to_numpy(dtype=object))  # missing: code -1
        if len(uniques) < len(raw):  # times repeat (one draw, many results): parse each once
            times, bad = parse_times(pd.Series(uniques, dtype=object), zone, order=order)
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
    text = _in_date_order(text, naive_mask, order)
    naive_mask &= text.notna()
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
    """UTC times with those outside the study range (before 1900, more than
    :data:`FUTURE_MARGIN` after now) made NaT; unreadable = present but NaT."""
    times = times.astype("datetime64[us, UTC]")
    latest = min(_UTC_LATEST, pd.Timestamp.now(tz="UTC") + FUTURE_MARGIN)
    times = times.where((times >= _UTC_EARLIEST) & (times <= latest))
    return times, present.fillna(False).astype(bool) & times.isna()


def split_year_last(text: pd.Series) -> pd.DataFrame:
    """The parts of dates written with the year last (columns a, b, y, rest; NaN elsewhere).

    The pattern runs once per distinct text (a file repeats its times on many rows)."""
    text = text.astype("string")
    codes, uniques = pd.factorize(text)
    parts = pd.Series(uniques, dtype=text.dtype).str.extract(_YEAR_LAST)[["a", "b", "y", "rest"]]
    out = parts.reindex(codes)  # code −1 (missing text): a row of NaN
    out.index = text.index
    return out


def ambiguous_dates(raw: pd.Series, order: DateOrder | None = None) -> pd.Series:
    """Mask of cells holding a date with the year last whose day and month order ``order``
    (default: the enclosing scope's) does not decide: ``10/02/2020`` in a file that does not say.
    """
    order = order if order is not None else current_date_order()
    if order is not None and order.order is not None:
        return pd.Series(False, index=raw.index)
    if not (raw.dtype == object or pd.api.types.is_string_dtype(raw.dtype)):
        return pd.Series(False, index=raw.index)
    parts = split_year_last(raw.astype("string"))
    a = pd.to_numeric(parts["a"], errors="coerce")
    b = pd.to_numeric(parts["b"], errors="coerce")
    both = (a >= 1) & (a <= 12) & (b >= 1) & (b <= 12) & (a != b)
    if order is None or order.order is None:
        # a file whose dates prove both orders: each of its two-way dates is a problem too
        return both.fillna(False).astype(bool)
    return pd.Series(False, index=raw.index)


def _in_date_order(text: pd.Series, dated: pd.Series, order: DateOrder) -> pd.Series:
    """``text`` with its dates written with the year last rewritten as ``YYYY-MM-DD`` in the
    file's order (deciding it from these values when nothing has); None where such a date
    cannot be read in that order or reads both ways while the order is undecided."""
    if not dated.any():
        return text
    parts = split_year_last(text[dated])
    found = parts["a"].notna()
    if not found.any():
        return text
    parts = parts[found]
    a = parts["a"].astype(int)
    b = parts["b"].astype(int)
    values = text[dated][found]
    order.decide(values, (a > 12) & (b <= 12), (b > 12) & (a <= 12))
    if order.order == "dmy":
        day, month = a, b
    elif order.order == "mdy":
        day, month = b, a
    else:  # undecided: only a date whose two numbers are equal reads the same both ways
        same = a == b
        order.ambiguous.extend(values[~same].tolist()[: max(0, 5 - len(order.ambiguous))])
        day, month = a.where(same), b.where(same)
    year = parts["y"].astype(int)
    year = year.where(parts["y"].str.len() == 4, year + np.where(year < 69, 2000, 1900))
    ok = day.notna() & month.notna() & (month >= 1) & (month <= 12) & (day >= 1)
    iso = (
        year.astype(str).str.zfill(4)
        + "-"
        + month.fillna(0).astype(int).astype(str).str.zfill(2)
        + "-"
        + day.fillna(0).astype(int).astype(str).str.zfill(2)
        + parts["rest"].fillna("")
    )
    out = text.astype(object).copy()
    out[iso.index] = iso.where(ok, None).astype(object)
    return out


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


def parse_time(text: str, zone: ZoneInfo | str, *, dayfirst: bool | None = None) -> pd.Timestamp:
    """One date-time typed by a person, as an aware UTC instant (naive = local to ``zone``).

    Raises ``ValueError`` with a plain message when ``text`` is not a date and time (a clock time
    or a word such as "now" without a date is not), lies outside the years a study's data can
    fall in, or names a local time that does not exist or is ambiguous (a daylight-saving
    change); callers add where. A date with the year last is read in the order ``dayfirst``
    says; without it, only where it reads one way (``13/02/2020``, ``02/13/2020``):
    ``10/02/2020`` is refused, never read as 2 October or 10 February by a guess.
    """
    stamp = None
    parts = _YEAR_LAST.match(text)
    if parts is not None:
        text = _year_last_as_iso(text, parts, dayfirst)
    if _DATE.search(text):
        try:
            stamp = pd.Timestamp(text.strip())
        except (ValueError, TypeError, OverflowError):
            stamp = None
    if stamp is None or pd.isna(stamp):
        raise ValueError(f"{text!r} — expected a date and time such as {TIME_EXAMPLE}")
    naive = stamp.tz_localize(None) if stamp.tzinfo is not None else stamp
    if not EARLIEST <= naive < LATEST:
        raise ValueError(f"{text!r} — expected a date in the years {TYPED_RANGE_TEXT}")
    if stamp.tzinfo is None:
        try:
            stamp = stamp.tz_localize(str(zone), ambiguous="raise", nonexistent="raise")
        except Exception:  # pandas' NonExistentTimeError / AmbiguousTimeError
            raise ValueError(
                f"{text!r} does not name one local time in {zone} (a daylight-saving change); "
                "give the UTC offset, e.g. +01:00"
            ) from None
    return stamp.tz_convert("UTC")


def _year_last_as_iso(text: str, parts: re.Match, dayfirst: bool | None) -> str:
    a, b = int(parts["a"]), int(parts["b"])
    if dayfirst is None and a != b and a <= 12 and b <= 12:
        raise ValueError(
            f"{text!r} — the day and month can be read both ways ({a} {_MONTHS[b]} or "
            f"{b} {_MONTHS[a]}); expected a date such as {TIME_EXAMPLE}"
        )
    if dayfirst is None:
        dayfirst = a > 12
    day, month = (a, b) if dayfirst else (b, a)
    year = int(parts["y"])
    if len(parts["y"]) == 2:
        year += 2000 if year < 69 else 1900
    if not 1 <= month <= 12:
        raise ValueError(f"{text!r} — expected a date and time such as {TIME_EXAMPLE}")
    return f"{year:04d}-{month:02d}-{day:02d}{parts['rest']}"


_MONTHS = [
    "",
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]


def describe_two_ways(value: str) -> tuple[str, str]:
    """The two readings of a date with the year last ("10 February", "2 October")."""
    parts = _YEAR_LAST.match(str(value))
    if parts is None:
        return "one date", "another"
    a, b = int(parts["a"]), int(parts["b"])
    if not (1 <= a <= 12 and 1 <= b <= 12):
        return "one date", "another"
    return f"{a} {_MONTHS[b]}", f"{b} {_MONTHS[a]}"


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


def parse_times_and_days(
    raw: pd.Series, zone: ZoneInfo | str
) -> tuple[pd.Series, pd.Series, pd.Series]:
    """:func:`parse_times` and :func:`date_only` of the same cells; text cells that repeat are
    told apart once for both (each reads every distinct cell once anyway)."""
    if len(raw) > 1 and not pd.api.types.is_datetime64_any_dtype(raw.dtype):
        codes, uniques = pd.factorize(raw.to_numpy(dtype=object))  # missing: code -1
        if len(uniques) < len(raw):
            distinct = pd.Series(uniques, dtype=object)
            times, bad = parse_times(distinct, zone)
            days = date_only(distinct)
            # code -1 (empty) → NaT, readable, not a day alone
            return (
                pd.Series(times.array.take(codes, allow_fill=True), index=raw.index),
                pd.Series(np.append(bad.to_numpy(dtype=bool), False)[codes], index=raw.index),
                pd.Series(np.append(days.to_numpy(dtype=bool), False)[codes], index=raw.index),
            )
    times, bad = parse_times(raw, zone)
    return times, bad, date_only(raw)


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
