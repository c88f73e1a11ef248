"""Column types shared by the ORM models."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from celltrial.errors import DataError


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware instant, stored in UTC on every backend, returned aware (UTC).

    Naive datetimes are refused: a time without its zone cannot be placed on the study timeline.
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

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


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
