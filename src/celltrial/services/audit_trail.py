"""The audit trail of one record: who changed what, when, from what to what, and why."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from celltrial.services.errors import NotFound
from celltrial.store.audit import AuditChainCheck, check_audit_chain
from celltrial.store.database import study_session
from celltrial.store.models import (
    AdverseEvent,
    AuditEvent,
    CasebookSignature,
    ClinicalStatus,
    DataQuery,
    Infusion,
    Observation,
    ProductLot,
    Subject,
)
from celltrial.study import StudyHandle

#: Records whose trail the web app shows, by table name.
TRAIL_TABLES = {
    "subject": Subject,
    "product_lot": ProductLot,
    "infusion": Infusion,
    "adverse_event": AdverseEvent,
    "observation": Observation,
    "clinical_status": ClinicalStatus,
    "data_query": DataQuery,
    "casebook_signature": CasebookSignature,
}


@dataclass(frozen=True)
class AuditEntry:
    time: datetime
    user: str
    action: str
    changes: tuple[tuple[str, Any, Any], ...]  # field, before, after
    reason: str | None
    import_batch_id: int | None = None
    source_sha256: str | None = None


@dataclass(frozen=True)
class AuditTrail:
    table: str
    row_id: int
    entries: tuple[AuditEntry, ...]


def _belongs(session: Any, study: StudyHandle, table: str, row_id: int) -> bool | None:
    """True/False whether the row is this study's; None when it no longer exists."""
    model = TRAIL_TABLES[table]
    row = session.get(model, row_id)
    if row is None:
        return None
    if table == "product_lot":
        return row.study_id == study.study_id
    if table == "subject":
        return row.study_id == study.study_id
    subject = session.get(Subject, row.subject_id)
    return subject is not None and subject.study_id == study.study_id


def read_audit_trail(study: StudyHandle, table: str, row_id: int) -> AuditTrail:
    """Every audit entry of the record, oldest first, with the import that created it if any."""
    if table not in TRAIL_TABLES:
        raise NotFound(f"no audit trail for {table!r}; records: {', '.join(TRAIL_TABLES)}")
    with study_session(study.engine, user="read") as session:
        belongs = _belongs(session, study, table, row_id)
        if belongs is False:
            raise NotFound(f"no {table} {row_id} in study {study.study_id}")
        events = list(
            session.scalars(
                select(AuditEvent)
                .where(AuditEvent.table_name == table, AuditEvent.row_id == str(row_id))
                .order_by(AuditEvent.id)
            )
        )
        row = session.get(TRAIL_TABLES[table], row_id)
        batch_id = getattr(row, "import_batch_id", None) if row is not None else None
        if batch_id is not None:
            events[:0] = session.scalars(
                select(AuditEvent).where(
                    AuditEvent.import_batch_id == batch_id, AuditEvent.action == "import"
                )
            )
        if belongs is None and not events:
            raise NotFound(f"no {table} {row_id} in study {study.study_id}")
        entries = tuple(_entry(e) for e in events)
    return AuditTrail(table=table, row_id=row_id, entries=entries)


def _entry(event: AuditEvent) -> AuditEntry:
    before = event.before or {}
    after = event.after or {}
    if event.action == "import":
        changes = tuple(
            (k, None, v) for k, v in after.items() if k in {"kind", "source", "counts", "batch"}
        )
    else:
        fields = list(dict.fromkeys([*before, *after]))
        changes = tuple((f, before.get(f), after.get(f)) for f in fields)
    return AuditEntry(
        time=event.time,
        user=event.user,
        action=event.action,
        changes=changes,
        reason=event.reason,
        import_batch_id=event.import_batch_id,
        source_sha256=event.source_sha256,
    )


#: How long a check of the whole chain is reused before the web app checks it again.
CHAIN_CHECK_SECONDS = 60.0
_chain_checks: dict[str, tuple[float, AuditChainCheck]] = {}


def audit_chain_status(study: StudyHandle) -> AuditChainCheck:
    """The audit chain check of ``study`` (see :func:`celltrial.store.audit.check_audit_chain`),
    recomputed at most every :data:`CHAIN_CHECK_SECONDS` per database: the dashboard shows a
    broken chain without reading the whole log on every page."""
    key = study.engine.url.render_as_string(hide_password=True)
    now = time.monotonic()
    cached = _chain_checks.get(key)
    if cached is not None and now - cached[0] < CHAIN_CHECK_SECONDS:
        return cached[1]
    check = check_audit_chain(study.engine)
    _chain_checks[key] = (now, check)
    return check
