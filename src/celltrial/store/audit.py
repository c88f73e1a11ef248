"""The one write path for study data: every insert, update and delete is audited.

Sessions made by :func:`celltrial.store.database.study_session` carry who is writing and why
(``session.info``). After each flush, a listener writes one append-only ``audit_event`` row per
changed row, with the values before and after. Bulk loads go through :func:`insert_batch`, which
records the batch (source, file hash, counts) and one audit row for the whole batch; every stored
row keeps its batch id and source row.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, String, event, func, insert, inspect, select
from sqlalchemy.orm import Mapper, Session

from celltrial.errors import DataError, StudyError
from celltrial.store.models import AUDITED_TABLES, AuditEvent, Base, ImportBatch
from celltrial.store.types import finite_json


class StudySession(Session):
    """A session whose changes to study data are written to the audit log."""


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value


def _row_values(obj: Base) -> dict[str, Any]:
    mapper = inspect(obj).mapper
    return {c.key: _json_value(getattr(obj, c.key)) for c in mapper.column_attrs}


def _row_id(obj: Base) -> str:
    """Primary key as text (composite keys joined by '/'), known once the row is flushed."""
    key = inspect(obj).mapper.primary_key_from_instance(obj)
    return "/".join(str(part) for part in key)


def _changed_values(obj: Base) -> tuple[dict[str, Any], dict[str, Any]]:
    state = inspect(obj)
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    for attr in state.mapper.column_attrs:
        history = state.attrs[attr.key].history
        if history.has_changes():
            before[attr.key] = _json_value(history.deleted[0]) if history.deleted else None
            after[attr.key] = _json_value(history.added[0]) if history.added else None
    return before, after


def _subject_of(obj: Base, table: str) -> int | None:
    """The ``subject.id`` whose data ``obj`` is: a subject's own row, or a row with a
    ``subject_id`` (read as held, never loaded: None when not at hand)."""
    values = inspect(obj).dict
    value = values.get("id") if table == "subject" else values.get("subject_id")
    return value if isinstance(value, int) else None


def _who_and_why(session: Session) -> tuple[str, str | None]:
    user = session.info.get("user")
    if not user:
        raise StudyError("a change to study data needs a user (study_session(..., user=...))")
    return user, session.info.get("reason")


@functools.cache
def _string_lengths(mapper: Mapper) -> tuple[tuple[str, int], ...]:
    return tuple(
        (attr.key, attr.columns[0].type.length)
        for attr in mapper.column_attrs
        if isinstance(attr.columns[0].type, String) and attr.columns[0].type.length
    )


@event.listens_for(StudySession, "before_flush")
def _check_lengths(session: Session, _context: Any, _instances: Any) -> None:
    """Refuse text longer than its column on every backend (SQLite would keep it, not others)."""
    for obj in (*session.new, *session.dirty):
        state = inspect(obj)
        for key, length in _string_lengths(state.mapper):
            value = state.dict.get(key)
            if isinstance(value, str) and len(value) > length:
                shown = value if len(value) <= 40 else value[:40] + "…"
                raise DataError(
                    f"{state.mapper.local_table.name}.{key}: {shown!r} is longer than {length} "
                    f"character{'s' if length > 1 else ''}"
                )


#: PostgreSQL advisory lock that orders audited transactions (its key: "celltria" in ASCII).
AUDIT_ORDER_LOCK = 0x63656C6C74726961


@event.listens_for(StudySession, "before_flush")
def _number_in_commit_order(session: Session, _context: Any, _instances: Any) -> None:
    """Make audit event ids ascend in commit order on PostgreSQL.

    Readers find what changed since they last looked by ``audit_event.id > seen``. Ids come from
    a sequence when a row is inserted, so two concurrent transactions could commit in the other
    order (an id below one already seen, committed later: never seen). A transaction-level lock
    taken before its first change is written makes an audited change wait until those begun
    before it have ended. SQLite already runs one write transaction at a time.
    """
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.execute(select(func.pg_advisory_xact_lock(AUDIT_ORDER_LOCK)))


#: ``session.info`` key of the open import batch (id, source hash): the audit rows of changes
#: made while it is open name it.
BATCH_KEY = "celltrial_import_batch"


@event.listens_for(StudySession, "after_flush")
def _audit_flush(session: Session, _context: Any) -> None:
    rows: list[dict[str, Any]] = []
    now = datetime.now(UTC)
    batch_id, batch_sha256 = session.info.get(BATCH_KEY, (None, None))
    for action, objects in (
        ("insert", session.new),
        ("update", session.dirty),
        ("delete", session.deleted),
    ):
        for obj in objects:
            table = getattr(obj, "__tablename__", None)
            if table not in AUDITED_TABLES:
                continue
            if action == "update":
                if not session.is_modified(obj, include_collections=False):
                    continue
                before, after = _changed_values(obj)
                if not after and not before:
                    continue
            elif action == "insert":
                before, after = None, _row_values(obj)
            else:
                before, after = _row_values(obj), None
            user, reason = _who_and_why(session)
            rows.append(
                {
                    "time": now,
                    "user": user,
                    "action": action,
                    "table_name": table,
                    "row_id": _row_id(obj),
                    "before": before,
                    "after": after,
                    "reason": reason,
                    # a change made by an import names its batch and the file's hash
                    "import_batch_id": batch_id,
                    "source_sha256": batch_sha256,
                    "subject_id": _subject_of(obj, table),
                }
            )
    if rows:
        append_audit_events(session, rows)


#: The fields of an audit event its chain hash covers (its id is not: the chain fixes the order).
CHAINED_FIELDS = (
    "time",
    "user",
    "action",
    "table_name",
    "row_id",
    "before",
    "after",
    "reason",
    "import_batch_id",
    "source_sha256",
    "subject_id",
)


def compute_chain_hash(previous: str | None, event: Mapping[str, Any]) -> str:
    """SHA-256 over the previous event's hash and this event's content (canonical JSON).

    Each event's hash covers the one before it, so changing, removing or inserting any event
    breaks every link after it (:func:`check_audit_chain`). Never change this function: the
    hashes of every stored event depend on it.
    """
    content = {field: event.get(field) for field in CHAINED_FIELDS}
    time = content["time"]
    if isinstance(time, datetime):
        content["time"] = time.astimezone(UTC).isoformat(timespec="microseconds")
    text = json.dumps(
        finite_json(content), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(f"{previous or ''}\n{text}".encode()).hexdigest()


def append_audit_events(session: Session, events: Iterable[Mapping[str, Any]]) -> None:
    """Write audit events at the end of the log, each chained to the one before it.

    The only way audit events are written. The previous hash is read inside the writing
    transaction, which holds the database's write lock (SQLite) or the audit-order lock
    (PostgreSQL), so no other transaction can append in between.
    """
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.execute(select(func.pg_advisory_xact_lock(AUDIT_ORDER_LOCK)))
    previous = connection.execute(
        select(AuditEvent.chain_hash).order_by(AuditEvent.id.desc()).limit(1)
    ).scalar()
    rows = []
    for event_values in events:
        row = {field: None for field in CHAINED_FIELDS} | dict(event_values)
        row["chain_hash"] = previous = compute_chain_hash(previous, row)
        rows.append(row)
    if rows:
        connection.execute(insert(AuditEvent), rows)


@dataclass(frozen=True)
class AuditChainCheck:
    """The result of checking a database's audit log link by link."""

    events: int
    head: str | None  # the newest event's hash: written down elsewhere, it anchors the log
    broken_at: int | None  # id of the first event whose link does not hold
    problem: str | None

    @property
    def intact(self) -> bool:
        return self.broken_at is None


def check_audit_chain(engine: Engine) -> AuditChainCheck:
    """Recompute every event's chain hash in order; the first event where it differs."""
    columns = [
        AuditEvent.id,
        AuditEvent.chain_hash,
        *(getattr(AuditEvent, f) for f in CHAINED_FIELDS),
    ]
    previous: str | None = None
    count = 0
    with engine.connect() as connection:
        result = connection.execution_options(yield_per=2000).execute(
            select(*columns).order_by(AuditEvent.id)
        )
        for row in result:
            values = row._mapping
            count += 1
            expected = compute_chain_hash(previous, values)
            if values["chain_hash"] != expected:
                when = (  # None: a stored time that cannot be read (unreadable_times)
                    "at a time that cannot be read"
                    if values["time"] is None
                    else f"at {values['time']:%Y-%m-%d %H:%M:%S} UTC"
                )
                what = (
                    f"audit event {values['id']} ({values['action']} {values['table_name']}"
                    f"{' ' + values['row_id'] if values['row_id'] else ''} by {values['user']} "
                    f"{when})"
                )
                problem = (
                    f"{what} has no chain hash: it was written outside celltrial"
                    if values["chain_hash"] is None
                    else f"the chain breaks at {what}: this event was changed, or an event "
                    "before it was removed or inserted, after it was written"
                )
                return AuditChainCheck(count, None, values["id"], problem)
            previous = values["chain_hash"]
    return AuditChainCheck(count, previous, None, None)


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def source_sha256(path: str | Path) -> str:
    """SHA-256 of what an import read: a file's bytes, or for a folder (a REDCap project) the
    SHA-256 of its manifest, one ``<file hash>  <relative path>`` line per file in name order
    (as ``sha256sum`` prints them), so a changed, added or removed file changes it."""
    path = Path(path)
    if not path.is_dir():
        return file_sha256(path)
    files = sorted(p for p in path.rglob("*") if p.is_file())
    manifest = "".join(f"{file_sha256(f)}  {f.relative_to(path).as_posix()}\n" for f in files)
    return hashlib.sha256(manifest.encode()).hexdigest()


def begin_batch(
    session: Session,
    *,
    kind: str,
    source: str,
    source_sha256: str | None = None,
    report: Mapping[str, Any] | None = None,
) -> ImportBatch:
    """Open an import batch; add rows with :func:`add_batch_rows`, close with :func:`finish_batch`.

    Nothing is committed here: the caller's transaction keeps the whole load all-or-nothing.
    """
    user, reason = _who_and_why(session)
    batch = ImportBatch(
        time=datetime.now(UTC),
        user=user,
        kind=kind,
        source=source,
        source_sha256=source_sha256,
        counts={},
        report=dict(report or {}),
        reason=reason,
    )
    session.add(batch)
    session.flush()
    session.info[BATCH_KEY] = (batch.id, source_sha256)
    return batch


def add_batch_rows(
    session: Session, batch: ImportBatch, model: type[Base], rows: Iterable[Mapping[str, Any]]
) -> int:
    """Bulk-insert ``rows`` into ``model``'s table as part of ``batch``; returns the row count."""
    carries_batch = "import_batch_id" in model.__table__.c
    materialised = [
        {**row, "import_batch_id": batch.id} if carries_batch else dict(row) for row in rows
    ]
    if materialised:
        session.execute(insert(model), materialised)
    counts = dict(batch.counts)
    counts[model.__tablename__] = counts.get(model.__tablename__, 0) + len(materialised)
    batch.counts = counts
    return len(materialised)


def finish_batch(session: Session, batch: ImportBatch) -> None:
    """Record one ``import`` audit row for the whole batch (source, hash, counts per table)."""
    user, reason = _who_and_why(session)
    session.flush()  # the batch's own counts first
    session.info.pop(BATCH_KEY, None)
    append_audit_events(
        session,
        [
            {
                "time": batch.time,
                "user": user,
                "action": "import",
                "table_name": ",".join(batch.counts) or "-",
                "after": {
                    "batch": batch.id,
                    "kind": batch.kind,
                    "source": batch.source,
                    "counts": batch.counts,
                },
                "reason": reason,
                "import_batch_id": batch.id,
                "source_sha256": batch.source_sha256,
            }
        ],
    )
