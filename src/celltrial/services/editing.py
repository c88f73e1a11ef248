"""Shared rules of edits to saved data: a reason, and no silent overwrite (optimistic locking)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from celltrial.errors import DataError
from celltrial.services.errors import EditConflict, NotFound
from celltrial.store.models import AuditEvent, Base, Subject


def check_reason(reason: str | None) -> str:
    """The reason for an edit, stripped; :class:`DataError` when there is none."""
    text = (reason or "").strip()
    if not text:
        raise DataError("reason for change: required when saved data are edited")
    return text


def find_study_record(
    session: Session, study: Any, model: type[Base], row_id: int, what: str, *conditions: Any
) -> tuple[Any, Subject]:
    """Record ``row_id`` of ``model`` with its subject, when the subject is enrolled in ``study``
    (not an external cohort) and ``conditions`` hold; :class:`NotFound` naming ``what`` else."""
    found = session.execute(
        select(model, Subject)
        .join(Subject, model.subject_id == Subject.id)
        .where(
            model.id == row_id,
            Subject.study_id == study.study_id,
            Subject.cohort.is_(None),
            *conditions,
        )
    ).first()
    if found is None:
        raise NotFound(f"no {what} {row_id} in study {study.study_id}")
    return found[0], found[1]


def last_change(session: Session, table: str, row_id: int) -> AuditEvent | None:
    return session.scalar(
        select(AuditEvent)
        .where(AuditEvent.table_name == table, AuditEvent.row_id == str(row_id))
        .order_by(AuditEvent.id.desc())
        .limit(1)
    )


def check_version(session: Session, row: Base, expected: int, what: str) -> None:
    """:class:`EditConflict` when ``row`` is no longer at the version the user edited."""
    if row.version == expected:
        return
    change = last_change(session, row.__tablename__, row.id)
    by = f" by {change.user} at {change.time:%Y-%m-%d %H:%M} UTC" if change is not None else ""
    raise EditConflict(
        f"{what} was changed{by} after you opened it (you edited version {expected}, it is now "
        f"version {row.version}). Your changes were not saved: reload the page, check the "
        "current values and enter your change again."
    )


def apply_changes(row: Base, values: Mapping[str, Any]) -> list[str]:
    """Set ``values`` on ``row``; returns the names of the fields that changed."""
    changed = []
    for key, value in values.items():
        if getattr(row, key) != value:
            setattr(row, key, value)
            changed.append(key)
    return changed


@contextmanager
def refusing_lost_updates(what: str) -> Iterator[None]:
    """An edit whose row another user changed after this one read it (the version check at the
    flush, :class:`StaleDataError`) becomes an :class:`EditConflict` saying ``what`` changed."""
    try:
        yield
    except StaleDataError:
        raise EditConflict(
            f"{what} changed by someone else while you saved; your changes were not saved: "
            "reload the page and enter them again"
        ) from None
