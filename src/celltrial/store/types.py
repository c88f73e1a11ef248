"""Column types shared by the ORM models."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from celltrial.errors import DataError
from celltrial.store.unreadable_times import EARLIEST, LATEST, note_unreadable_time

#: The years :class:`UTCDateTime` reads, as aware instants (the driver gives aware times).
_EARLIEST_UTC, _LATEST_UTC = EARLIEST.replace(tzinfo=UTC), LATEST.replace(tzinfo=UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware instant, stored in UTC on every backend, returned aware (UTC).

    Naive datetimes are refused: a time without its zone cannot be placed on the study timeline.
    A stored time that cannot be read (:mod:`celltrial.store.unreadable_times`) is read as None.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            value = _to_datetime(value)
        if value.tzinfo is None or value.utcoffset() is None:
            raise DataError(f"time {value.isoformat()} has no time zone; give an aware time")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def result_processor(self, dialect: Dialect, coltype: Any) -> Callable[[Any], Any]:
        """Read a stored time, aware UTC; one that cannot be read (year 0 or 10000, a text
        that is no date, a time outside 1900–2099) as None, noted for the warning that names
        its row (:mod:`celltrial.store.unreadable_times`) instead of stopping the command.

        Overridden (not ``process_result_value``) to catch what the impl's processor cannot
        convert; one function per value, no slower than the default for readable times.
        """
        impl_processor = self.impl_instance.result_processor(dialect, coltype)
        if impl_processor is None:  # PostgreSQL: psycopg gives aware datetimes

            def process(
                value: Any,
                earliest: datetime = _EARLIEST_UTC,
                latest: datetime = _LATEST_UTC,
                utc: Any = UTC,
            ) -> datetime | None:
                if value is None:
                    return None
                try:
                    if earliest <= value < latest:
                        return value.astimezone(utc)
                except TypeError:  # text: a time psycopg cannot hold (see load_times_leniently)
                    pass
                note_unreadable_time(value)
                return None

            return process

        def process_text(  # SQLite: naive UTC text; bound as defaults, read fastest
            value: Any,
            impl: Callable[[Any], Any] = impl_processor,
            earliest: datetime = EARLIEST,
            latest: datetime = LATEST,
            utc: Any = UTC,
        ) -> datetime | None:
            if value is None:
                return None
            try:
                read = impl(value)
            except (ValueError, TypeError, OverflowError):
                note_unreadable_time(value)
                return None
            if read.tzinfo is None and earliest <= read < latest:
                return read.replace(tzinfo=utc)
            return _aware_in_range(read, value)

        return process_text


def _aware_in_range(read: datetime, value: Any) -> datetime | None:
    """``read`` (read from the stored ``value``) in UTC if it has a zone and lies in the years
    celltrial reads; else None, noted."""
    if read.tzinfo is not None:
        utc = read.astimezone(UTC)
        if EARLIEST <= utc.replace(tzinfo=None) < LATEST:
            return utc
    note_unreadable_time(value)
    return None


def load_times_leniently(dbapi_connection: Any, _record: Any = None) -> None:
    """Have a psycopg connection load a time it cannot represent (before year 1, after 9999,
    ±infinity) as its text instead of failing the whole read; :class:`UTCDateTime` then reads
    it as unknown and notes it (a "connect" listener of PostgreSQL engines)."""
    import psycopg
    from psycopg.adapt import Loader

    adapters = dbapi_connection.adapters
    for name in ("timestamptz", "timestamp"):
        oid = adapters.types[name].oid
        inner = adapters.get_loader(oid, psycopg.pq.Format.TEXT)
        if inner is None or getattr(inner, "lenient", False):
            continue

        class Lenient(Loader):
            lenient = True
            _inner = inner

            def __init__(self, oid: int, context: Any = None) -> None:
                super().__init__(oid, context)
                self._load = self._inner(oid, context).load

            def load(self, data: Any) -> Any:
                try:
                    return self._load(data)
                except psycopg.DataError:
                    return bytes(data).decode()

        adapters.register_loader(name, Lenient)


def read_stored_time(value: Any) -> datetime | None:
    """A time as SQLite stores it (ISO text, UTC) read the way :class:`UTCDateTime` reads it;
    None when it cannot be read (nothing is noted)."""
    try:
        read = datetime.fromisoformat(value)
    except (ValueError, TypeError, OverflowError):
        return None
    utc = read if read.tzinfo is None else read.astimezone(UTC).replace(tzinfo=None)
    return read if EARLIEST <= utc < LATEST else None


class FiniteJSON(TypeDecorator[Any]):
    """JSON whose non-finite numbers (NaN, ±infinity) are stored as null, on every backend.

    Python writes them as ``NaN``/``Infinity``, which SQLite keeps but PostgreSQL's json refuses.
    """

    impl = JSON
    cache_ok = True
    hashable = False

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return finite_json(value)


def finite_json(value: Any) -> Any:
    """``value`` as JSON stores it: non-finite numbers as None, tuples as lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(item) for item in value]
    return value


def _to_datetime(value: Any) -> datetime:
    to_pydatetime = getattr(value, "to_pydatetime", None)  # pandas Timestamp
    if to_pydatetime is not None:
        return to_pydatetime()
    raise DataError(f"expected a date and time, got {value!r}")
