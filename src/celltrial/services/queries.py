"""Data queries: a data manager asks about one stored value, the site answers, the data manager
closes the query.

A query names one field of one observation, infusion, adverse event or daily clinical status of a
study subject and keeps the value as it was when raised. Raising, answering and closing are
audited changes of the query row (table ``data_query``), so
:func:`celltrial.services.audit_trail.read_audit_trail` shows each query's history: who, when,
what and why.

What people read of a query comes with each :class:`QueryRecord`: the record it names in words
(a test and its time, an infusion, an adverse event), the field's label (``query_fields.yaml``)
and the value (a time as a time, shown in the study's zone by the page; a lot by its code; a lab
value with its unit), never column names or record numbers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources

import yaml
from sqlalchemy import Boolean, Float, Select, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from celltrial.catalogue import load_catalogue
from celltrial.errors import DataError
from celltrial.labels import display_unit, marker_label
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
    ProductLot,
    Subject,
)
from celltrial.store.types import UTCDateTime
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
    #: what the record is, in words ("lab result: C-reactive protein", "infusion 2"), and its time
    record_label: str = ""
    record_time: datetime | None = None
    #: the field's label and the value as shown (a time value in ``value_time`` instead)
    field_label: str = ""
    value_shown: str | None = None
    value_time: datetime | None = None


@dataclass(frozen=True)
class QueryTarget:
    """One record a query may name, in words: its subject, what it is and each field's label
    and current value (as :class:`QueryRecord` shows them)."""

    subject_code: str
    record_label: str
    record_time: datetime | None
    fields: tuple[tuple[str, str, str | None, datetime | None], ...]  # name, label, shown, time


@cache
def _field_labels() -> dict[str, dict[str, str]]:
    text = resources.files("celltrial.services").joinpath("query_fields.yaml").read_text("utf-8")
    return {
        t: {str(k): str(v) for k, v in fields.items()} for t, fields in yaml.safe_load(text).items()
    }


def field_label(table: str, field: str) -> str:
    """What a field a query may name is called (``query_fields.yaml``)."""
    return _field_labels().get(table, {}).get(field, field.replace("_", " "))


def _describe_record(table: str, row: Base | None) -> tuple[str, datetime | None]:
    """(what the record is, in words; its time)."""
    if row is None:
        return table.replace("_", " "), None
    if isinstance(row, Observation):
        name = marker_label(row.test)[0]
        catalogue = load_catalogue()
        vital = row.test in catalogue and catalogue.get(row.test).category == "vital"
        return f"{'vital sign' if vital else 'lab result'}: {name}", row.time
    if isinstance(row, Infusion):
        return f"infusion {row.number}", row.started_at or row.planned_at
    if isinstance(row, AdverseEvent):
        return f"adverse event: {row.term}", row.onset_at
    return "clinical status", row.time  # type: ignore[attr-defined]


def _number_text(text: str) -> str:
    """A stored number as people write it: 112.0 → 112, 30000000.0 → 30000000, 0.3 → 0.3."""
    try:
        number = float(text)
    except ValueError:
        return text
    if number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    return str(number)


def _show_value(
    session: Session, table: str, row: Base | None, field: str, text: str | None
) -> tuple[str | None, datetime | None]:
    """(the value as shown, the value as a time): times parsed (shown in the study's zone by
    the page), yes/no for true/false, a lot by its code, a lab value with its unit."""
    if text is None:
        return None, None
    column = QUERYABLE[table].__table__.columns.get(field)
    if column is not None and isinstance(column.type, UTCDateTime):
        try:
            return None, datetime.fromisoformat(text)
        except ValueError:
            return text, None
    if column is not None and isinstance(column.type, Boolean):
        return {"True": "yes", "False": "no"}.get(text, text), None
    if column is not None and isinstance(column.type, Float):
        text = _number_text(text)
    if table == "infusion" and field == "lot_id" and text.isdigit():
        code = session.scalar(select(ProductLot.code).where(ProductLot.id == int(text)))
        return code or text, None
    if isinstance(row, Observation):
        if field == "test":
            return marker_label(text)[0], None
        if field in ("value", "ref_low", "ref_high") and row.unit:
            return f"{text} {display_unit(row.unit)}", None
    return text, None


def read_target_described(study: StudyHandle, table: str, row_id: int) -> QueryTarget:
    """The record ``row_id`` of ``table`` in words, with its queryable fields' labels and
    current values (what the query form offers)."""
    with study_session(study.engine, user="read") as session:
        row, subject = _target(session, study, table, row_id)
        label, time = _describe_record(table, row)
        fields = []
        for name in queryable_fields(table):
            shown, when = _show_value(session, table, row, name, _value_text(getattr(row, name)))
            fields.append((name, field_label(table, name), shown, when))
        return QueryTarget(subject.code, label, time, tuple(fields))


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


def _records(session: Session, found: Iterable[tuple[DataQuery, str]]) -> list[QueryRecord]:
    """Query rows (with their subject's code) as records, each described in words (the records
    they name read once per table)."""
    found = list(found)
    targets: dict[tuple[str, int], Base] = {}
    by_table: dict[str, set[int]] = {}
    for query, _code in found:
        if query.table_name in QUERYABLE:
            by_table.setdefault(query.table_name, set()).add(query.row_id)
    for table, ids in by_table.items():
        model = QUERYABLE[table]
        for target in session.scalars(select(model).where(model.id.in_(sorted(ids)))):
            targets[(table, target.id)] = target
    return [
        _record(query, code, session=session, target=targets.get((query.table_name, query.row_id)))
        for query, code in found
    ]


def _record(
    row: DataQuery, subject_code: str, *, session: Session, target: Base | None
) -> QueryRecord:
    record_label, record_time = _describe_record(row.table_name, target)
    shown, value_time = _show_value(session, row.table_name, target, row.field, row.value_text)
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
        record_label=record_label,
        record_time=record_time,
        field_label=field_label(row.table_name, row.field),
        value_shown=shown,
        value_time=value_time,
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
        return _record(query, subject.code, session=session, target=row)


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
            return _records(session, [(query, code)])[0]
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
        return _records(session, [(query, code)])[0]


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
        return _records(session, session.execute(statement).all())


def subject_queries(session: Session, subject: Subject) -> list[QueryRecord]:
    """The subject's queries, oldest first (within a session of the caller's)."""
    statement = _listing(subject.study_id).where(DataQuery.subject_id == subject.id)
    return _records(session, session.execute(statement).all())


def _listing(study_id: str) -> Select:
    """Queries of the study with their subject's code, oldest first."""
    return (
        select(DataQuery, Subject.code)
        .join(Subject, DataQuery.subject_id == Subject.id)
        .where(Subject.study_id == study_id)
        .order_by(DataQuery.raised_at, DataQuery.id)
    )
