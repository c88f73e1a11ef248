"""The study-wide audit log: every audited change, import, sign-in and account change, newest
first, by user, table and dates, a page at a time (for data managers and monitors)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import false, or_, select, true

from celltrial.errors import DataError
from celltrial.services.plain_text import control_character_problem
from celltrial.store.database import study_session
from celltrial.store.models import AUDITED_TABLES, AuditEvent, Subject
from celltrial.study import StudyHandle

PAGE_SIZE = 50
#: Tables one can filter by: study data, and the accounts (sign-ins and account changes).
LOG_TABLES = (*sorted(AUDITED_TABLES), "app_user")


@dataclass(frozen=True)
class AuditLogEntry:
    id: int
    time: datetime
    user: str
    action: str
    table: str
    row_id: str | None
    subject_code: str | None
    changes: tuple[tuple[str, Any, Any], ...]  # field, before, after
    reason: str | None
    source_sha256: str | None


@dataclass(frozen=True)
class AuditLogPage:
    entries: tuple[AuditLogEntry, ...]
    #: id to pass as ``before`` for the next (older) page; None: this is the oldest
    older: int | None
    #: id to pass as ``after`` for the previous (newer) page; None: this is the newest
    newer: int | None
    tables: tuple[str, ...] = LOG_TABLES


def _changes(before: Any, after: Any) -> tuple[tuple[str, Any, Any], ...]:
    before = before if isinstance(before, dict) else {}
    after = after if isinstance(after, dict) else {}
    fields = list(dict.fromkeys([*before, *after]))
    return tuple((f, before.get(f), after.get(f)) for f in fields)


def _day(text: str, field: str, zone: Any) -> datetime | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise DataError(f"{field}: {text!r} is not a date; expected YYYY-MM-DD") from None
    return datetime.combine(day, time(0), tzinfo=zone)


def _id(text: str, field: str) -> int | None:
    text = (text or "").strip()
    if not text:
        return None
    if not text.isdigit() or len(text) > 18:
        raise DataError(f"{field}: expected an audit event number")
    return int(text)


#: Audit event numbers are 32-bit integers in the database (PostgreSQL refuses to compare them
#: with a larger number): every event is before a larger one, none after it.
_LARGEST_EVENT = 2**31 - 1


def _time_filters(start: datetime | None, end: datetime | None) -> list[Any]:
    """From the start of day ``start`` to the end of day ``end`` (study zone). A day at the
    edge of what a time can hold (years 1 and 9999) is before or after every event."""
    filters: list[Any] = []
    if start is not None:
        try:
            filters.append(AuditEvent.time >= start.astimezone(UTC))
        except OverflowError:
            filters.append(false() if start.year > 1 else true())
    if end is not None:
        try:
            filters.append(AuditEvent.time < (end + timedelta(days=1)).astimezone(UTC))
        except OverflowError:
            filters.append(true() if end.year > 1 else false())
    return filters


def read_audit_log(
    study: StudyHandle,
    *,
    user: str = "",
    table: str = "",
    since: str = "",
    until: str = "",
    before: str = "",
    after: str = "",
    limit: int = PAGE_SIZE,
) -> AuditLogPage:
    """One page of the audit log, newest first. ``since``/``until``: dates (YYYY-MM-DD, both
    days included) in the study's time zone; ``before``/``after``: the page older than, or newer
    than, an event number. Unknown tables are refused."""
    zone = study.protocol.study.zone
    start = _day(since, "from", zone)
    end = _day(until, "to", zone)
    before_id, after_id = _id(before, "before"), _id(after, "after")
    table = (table or "").strip()
    if table and table not in LOG_TABLES:
        raise DataError(f"table {table!r}: expected one of {', '.join(LOG_TABLES)}")
    filters = []
    problem = control_character_problem(user)
    if problem is not None:
        raise DataError(f"user: {problem}")
    if user.strip():
        filters.append(AuditEvent.user == user.strip())
    if table:  # an import names every table it wrote, separated by commas
        filters.append(
            or_(
                AuditEvent.table_name == table,
                AuditEvent.table_name.startswith(f"{table},", autoescape=True),
                AuditEvent.table_name.endswith(f",{table}", autoescape=True),
                AuditEvent.table_name.contains(f",{table},", autoescape=True),
            )
        )
    filters += _time_filters(start, end)
    columns = (AuditEvent, Subject.code)
    query = select(*columns).outerjoin(Subject, Subject.id == AuditEvent.subject_id).where(*filters)
    with study_session(study.engine, user="read") as session:
        if after_id is not None:
            newer = AuditEvent.id > after_id if after_id <= _LARGEST_EVENT else false()
            rows = session.execute(
                query.where(newer).order_by(AuditEvent.id).limit(limit + 1)
            ).all()
            more_newer = len(rows) > limit
            rows = rows[:limit][::-1]
            more_older = bool(rows) and _exists(session, query, AuditEvent.id < rows[-1][0].id)
        else:
            if before_id is not None and before_id <= _LARGEST_EVENT:
                query = query.where(AuditEvent.id < before_id)
            rows = session.execute(query.order_by(AuditEvent.id.desc()).limit(limit + 1)).all()
            more_older = len(rows) > limit
            rows = rows[:limit]
            more_newer = before_id is not None and bool(rows)
        entries = tuple(
            AuditLogEntry(
                id=event.id,
                time=event.time,
                user=event.user,
                action=event.action,
                table=event.table_name,
                row_id=event.row_id,
                subject_code=code,
                changes=_changes(event.before, event.after),
                reason=event.reason,
                source_sha256=event.source_sha256,
            )
            for event, code in rows
        )
    return AuditLogPage(
        entries=entries,
        older=entries[-1].id if entries and more_older else None,
        newer=entries[0].id if entries and more_newer else None,
    )


def _exists(session: Any, query: Any, condition: Any) -> bool:
    return session.execute(query.where(condition).limit(1)).first() is not None
