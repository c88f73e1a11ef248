"""Data queries: a data manager asks about one stored value, the site answers, the data manager
closes the query.

A query names one field of one observation, infusion, adverse event or daily clinical status of a
study subject and keeps
the value as it was when raised. Raising, answering and closing are audited changes of the query
row (table ``data_query``), so :func:`celltrial.services.audit_trail.read_audit_trail` shows each
query's history: who, when, what and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Select, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from celltrial.errors import DataError
from celltrial.services.editing import check_version
from celltrial.services.errors import EditConflict, NotFound
from celltrial.services.infusions import find_subject
from celltrial.store.database import study_session
from celltrial.store.models import (
    AdverseEvent,
    Base,
    ClinicalStatus,
    DataQuery,
    Infusion,
    Observation,
    Subject,
)
from celltrial.study import StudyHandle

#: Records a query may name, by table name.
QUERYABLE: dict[str, type[Base]] = {
    "observation": Observation,
    "infusion": Infusion,
    "adverse_event": AdverseEvent,
    "clinical_status": ClinicalStatus,
}
#: Columns that are bookkeeping, not values a site enters.
_NOT_QUERYABLE = frozenset({"id", "subject_id", "version", "import_batch_id", "source_row"})
STATUSES = ("open", "answered", "closed")
MAX_TEXT = 2000


@dataclass(frozen=True)
class QueryRecord:
    id: int
    subject_code: str
    table_name: str
    row_id: int
    field: str
    value_text: str | None
    question: str
    status: str
    raised_by: str
    raised_at: datetime
    answer: str | None
    answered_by: str | None
    answered_at: datetime | None
    close_note: str | None
    closed_by: str | None
    closed_at: datetime | None
    version: int


def queryable_fields(table: str) -> tuple[str, ...]:
    """The fields of ``table`` a query may name (:class:`NotFound` for other tables)."""
    model = QUERYABLE.get(table)
    if model is None:
        raise NotFound(f"queries name a value of: {', '.join(QUERYABLE)}; not {table!r}")
    return tuple(c.key for c in model.__mapper__.column_attrs if c.key not in _NOT_QUERYABLE)


def _text(value: str | None, what: str, *, required: bool = True) -> str | None:
    text = (value or "").strip()
    if required and not text:
        raise DataError(f"{what}: required")
    if len(text) > MAX_TEXT:
        raise DataError(f"{what}: at most {MAX_TEXT} characters (got {len(text)})")
    return text or None


def _value_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return str(value)


def _target(session: Session, study: StudyHandle, table: str, row_id: int) -> tuple[Base, Subject]:
    model = QUERYABLE.get(table)
    if model is None:
        raise NotFound(f"queries name a value of: {', '.join(QUERYABLE)}; not {table!r}")
    row = session.get(model, row_id)
    subject = session.get(Subject, row.subject_id) if row is not None else None
    if subject is None or subject.study_id != study.study_id or subject.cohort is not None:
        raise NotFound(f"no {table.replace('_', ' ')} {row_id} in study {study.study_id}")
    return row, subject


def read_target(study: StudyHandle, table: str, row_id: int) -> tuple[str, dict[str, str | None]]:
    """The subject code and the queryable fields with their current values of one record."""
    with study_session(study.engine, user="read") as session:
        row, subject = _target(session, study, table, row_id)
        fields = {f: _value_text(getattr(row, f)) for f in queryable_fields(table)}
        return subject.code, fields


def _record(row: DataQuery, subject_code: str) -> QueryRecord:
    return QueryRecord(
        id=row.id,
        subject_code=subject_code,
        table_name=row.table_name,
        row_id=row.row_id,
        field=row.field,
        value_text=row.value_text,
        question=row.question,
        status=row.status,
        raised_by=row.raised_by,
        raised_at=row.raised_at,
        answer=row.answer,
        answered_by=row.answered_by,
        answered_at=row.answered_at,
        close_note=row.close_note,
        closed_by=row.closed_by,
        closed_at=row.closed_at,
        version=row.version,
    )


def raise_query(
    study: StudyHandle, table: str, row_id: int, field: str, question: str, *, user: str
) -> QueryRecord:
    """Open a query on ``field`` of record ``row_id`` of ``table``."""
    question = _text(question, "question")
    fields = queryable_fields(table)
    if field not in fields:
        raise DataError(f"field {field!r} of {table}: expected one of {', '.join(fields)}")
    with study_session(study.engine, user=user, reason="query raised") as session:
        row, subject = _target(session, study, table, row_id)
        query = DataQuery(
            subject_id=subject.id,
            table_name=table,
            row_id=row_id,
            field=field,
            value_text=_value_text(getattr(row, field)),
            question=question,
            status="open",
            raised_by=user,
            raised_at=datetime.now(UTC),
        )
        session.add(query)
        session.flush()
        return _record(query, subject.code)


def _find(session: Session, study: StudyHandle, query_id: int) -> tuple[DataQuery, str]:
    found = session.execute(
        select(DataQuery, Subject.code)
        .join(Subject, DataQuery.subject_id == Subject.id)
        .where(DataQuery.id == query_id, Subject.study_id == study.study_id)
    ).first()
    if found is None:
        raise NotFound(f"no query {query_id} in study {study.study_id}")
    return found[0], found[1]


def _change(
    study: StudyHandle,
    query_id: int,
    *,
    user: str,
    reason: str,
    allowed_from: tuple[str, ...],
    values: dict[str, object],
    version: int | None,
) -> QueryRecord:
    try:
        with study_session(study.engine, user=user, reason=reason) as session:
            query, code = _find(session, study, query_id)
            if version is not None:
                check_version(session, query, version, f"query {query.id}")
            if query.status not in allowed_from:
                raise DataError(
                    f"query {query.id} is {query.status}; this needs a query that is "
                    f"{' or '.join(allowed_from)}"
                )
            for key, value in values.items():
                setattr(query, key, value)
            session.flush()
            return _record(query, code)
    except StaleDataError:
        raise EditConflict(
            f"query {query_id} was changed by someone else while you saved; reload the page"
        ) from None


def answer_query(
    study: StudyHandle, query_id: int, answer: str, *, user: str, version: int | None = None
) -> QueryRecord:
    """The site's answer to an open query (a later answer replaces it; the log keeps both)."""
    answer = _text(answer, "answer")
    return _change(
        study,
        query_id,
        user=user,
        reason="query answered",
        allowed_from=("open", "answered"),
        values={
            "answer": answer,
            "answered_by": user,
            "answered_at": datetime.now(UTC),
            "status": "answered",
        },
        version=version,
    )


def close_query(
    study: StudyHandle,
    query_id: int,
    note: str | None = None,
    *,
    user: str,
    version: int | None = None,
) -> QueryRecord:
    """The data manager closes an answered (or, with a note, still open) query."""
    note = _text(note, "closing note", required=False)
    with study_session(study.engine, user="read") as session:
        query, _code = _find(session, study, query_id)
        if query.status == "open" and not note:
            raise DataError("closing note: required to close a query the site has not answered")
    return _change(
        study,
        query_id,
        user=user,
        reason="query closed",
        allowed_from=("open", "answered"),
        values={
            "close_note": note,
            "closed_by": user,
            "closed_at": datetime.now(UTC),
            "status": "closed",
        },
        version=version,
    )


def read_query(study: StudyHandle, query_id: int) -> QueryRecord:
    with study_session(study.engine, user="read") as session:
        query, code = _find(session, study, query_id)
        return _record(query, code)


def list_queries(
    study: StudyHandle,
    *,
    subject_code: str | None = None,
    status: str | None = None,
    open_only: bool = False,
) -> list[QueryRecord]:
    """Queries of the study (or one subject), oldest first; ``open_only``: not yet closed."""
    if status is not None and status not in STATUSES:
        raise DataError(f"status {status!r}: expected one of {', '.join(STATUSES)}")
    with study_session(study.engine, user="read") as session:
        statement = _listing(study.study_id)
        if subject_code is not None:
            subject = find_subject(session, study, subject_code)
            statement = statement.where(DataQuery.subject_id == subject.id)
        if open_only:
            statement = statement.where(DataQuery.status != "closed")
        if status is not None:
            statement = statement.where(DataQuery.status == status)
        return [_record(q, code) for q, code in session.execute(statement)]


def subject_queries(session: Session, subject: Subject) -> list[QueryRecord]:
    """The subject's queries, oldest first (within a session of the caller's)."""
    statement = _listing(subject.study_id).where(DataQuery.subject_id == subject.id)
    return [_record(q, code) for q, code in session.execute(statement)]


def _listing(study_id: str) -> Select:
    """Queries of the study with their subject's code, oldest first."""
    return (
        select(DataQuery, Subject.code)
        .join(Subject, DataQuery.subject_id == Subject.id)
        .where(Subject.study_id == study_id)
        .order_by(DataQuery.raised_at, DataQuery.id)
    )
