"""Parse result times into aware UTC instants; naive times are local to the study's time zone."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

_OFFSET = r"(?:Z|[+-]\d{2}:?\d{2})\s*$"


def parse_times(raw: pd.Series, zone: ZoneInfo | str) -> tuple[pd.Series, pd.Series]:
    """(UTC times, unreadable mask): NaT where the cell is empty or cannot be read.

    ``unreadable`` is True where a non-empty cell could not be read as a time (or a local time
    does not exist or is ambiguous at a daylight-saving change): those are errors, never guessed.
    """
    key = str(zone)
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        return raw.dt.tz_convert("UTC"), pd.Series(False, index=raw.index)
    if pd.api.types.is_datetime64_dtype(raw.dtype):
        local = raw.dt.tz_localize(key, ambiguous="NaT", nonexistent="NaT")
        return local.dt.tz_convert("UTC"), raw.notna() & local.isna()
    if len(raw) > 1:
        codes, uniques = pd.factorize(raw.to_numpy(dtype=object, na_value=None))
        if len(uniques) < len(raw):  # times repeat (one draw, many results): parse each once
            times, bad = parse_times(pd.Series(uniques, dtype=object), zone)
            out_times = pd.Series(times.array.take(codes, allow_fill=True), index=raw.index)
            flags = np.append(bad.to_numpy(dtype=bool), False)  # code -1 (empty) → False
            return out_times, pd.Series(flags[codes], index=raw.index)
    text = raw.astype("string").str.strip()
    present = text.notna() & (text != "")
    with_offset = text.str.contains(_OFFSET, regex=True).fillna(False)
    out = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[us, UTC]")
    if with_offset.any():
        aware = pd.to_datetime(text[with_offset], errors="coerce", utc=True, format="ISO8601")
        out[with_offset] = aware
    naive_mask = present & ~with_offset
    if naive_mask.any():
        naive = _to_naive(text[naive_mask])
        local = naive.dt.tz_localize(key, ambiguous="NaT", nonexistent="NaT")
        out[naive_mask] = local.dt.tz_convert("UTC")
    return out, present & out.isna()


def _to_naive(text: pd.Series) -> pd.Series:
    """Naive datetimes: the inferred format first (fast), then ISO 8601, then any format."""
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

    Raises ``ValueError`` with a plain message when ``text`` is not a date and time or names a
    local time that does not exist or is ambiguous (a daylight-saving change); callers add where.
    """
    try:
        stamp = pd.Timestamp(text.strip())
    except (ValueError, TypeError, OverflowError):
        stamp = None
    if stamp is None or pd.isna(stamp):
        raise ValueError(f"{text!r} is not a date and time; expected one such as {TIME_EXAMPLE}")
    if stamp.tzinfo is None:
        try:
            stamp = stamp.tz_localize(str(zone), ambiguous="raise", nonexistent="raise")
        except Exception:  # pandas' NonExistentTimeError / AmbiguousTimeError
            raise ValueError(
                f"{text!r} does not name one local time in {zone} (a daylight-saving change); "
                "give the UTC offset, e.g. +01:00"
            ) from None
    return stamp.tz_convert("UTC")
