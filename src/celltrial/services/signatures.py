"""Investigator sign-off of a subject's casebook as an electronic signature.

The investigator re-enters the password and chooses the meaning of the signature; the signature
records the signer's user name and printed name, the time (UTC) and the meaning, and a SHA-256 of
the subject's signed data: the subject record, infusions, adverse events, observations, clinical
status, imaging studies and CT results. A signature stands while those data still hash to the
same value: any later change (an edit, a new record, an import, a deletion) invalidates it, and the
page names the first audited change after the signature. Signing again makes a new signature; old
ones stay in the table and the audit log.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from celltrial.errors import DataError, EntryRefused
from celltrial.services.accounts import confirm_password, role_can
from celltrial.services.errors import SignatureRefused, SignInRefused
from celltrial.services.infusions import find_subject
from celltrial.services.queries import subject_queries
from celltrial.store.database import study_session
from celltrial.store.models import (
    AdverseEvent,
    AuditEvent,
    Base,
    CasebookSignature,
    ClinicalStatus,
    CtResult,
    DataQuery,
    ImagingStudy,
    Infusion,
    Observation,
    Subject,
)
from celltrial.study import StudyHandle

#: The meanings an investigator may give a signature (code -> the statement signed).
SIGNATURE_MEANINGS: dict[str, str] = {
    "review": (
        "I have reviewed the data in this casebook and confirm that they are complete, accurate "
        "and consistent with the source documents."
    ),
    "approval": (
        "As the investigator responsible for this subject, I approve the data in this casebook."
    ),
}
_SKIP = frozenset({"version"})


@dataclass(frozen=True)
class SignatureRecord:
    id: int
    subject_code: str
    signed_by: str
    signer_name: str
    signer_role: str
    meaning: str
    signed_at: datetime
    data_sha256: str
    #: False once the subject's signed data changed after the signature.
    valid: bool
    #: The first audited change after the signature (who, when, what, why), if invalid.
    invalidated_by: str | None = None


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value != value:
        return None
    return value


def _rows(session: Session, model: type[Base], condition: Any) -> list[Base]:
    return list(session.scalars(select(model).where(condition).order_by(model.id)))


def _signed_rows(session: Session, subject: Subject) -> dict[str, list[Base]]:
    imaging = _rows(session, ImagingStudy, ImagingStudy.subject_id == subject.id)
    ct = (
        _rows(session, CtResult, CtResult.imaging_study_id.in_([i.id for i in imaging]))
        if imaging
        else []
    )
    return {
        "subject": [subject],
        "infusion": _rows(session, Infusion, Infusion.subject_id == subject.id),
        "adverse_event": _rows(session, AdverseEvent, AdverseEvent.subject_id == subject.id),
        "observation": _rows(session, Observation, Observation.subject_id == subject.id),
        "clinical_status": _rows(session, ClinicalStatus, ClinicalStatus.subject_id == subject.id),
        "imaging_study": imaging,
        "ct_result": ct,
    }


def _fingerprint(rows: dict[str, list[Base]]) -> str:
    digest = hashlib.sha256()
    for table in sorted(rows):
        for row in rows[table]:
            values = {
                c.key: _json_value(getattr(row, c.key))
                for c in row.__mapper__.column_attrs
                if c.key not in _SKIP
            }
            digest.update(table.encode())
            digest.update(json.dumps(values, sort_keys=True, default=str).encode())
            digest.update(b"\n")
    return digest.hexdigest()


def _first_change_after(
    session: Session, signature: CasebookSignature, rows: dict[str, list[Base]]
) -> AuditEvent | None:
    """The first audited change to one of the subject's records after the signature."""
    signed_event = session.scalar(
        select(func.min(AuditEvent.id)).where(
            AuditEvent.table_name == "casebook_signature",
            AuditEvent.row_id == str(signature.id),
        )
    )
    clauses = [
        (AuditEvent.table_name == table) & AuditEvent.row_id.in_([str(r.id) for r in found])
        for table, found in rows.items()
        if found
    ]
    return session.scalar(
        select(AuditEvent)
        .where(AuditEvent.id > (signed_event or 0), or_(*clauses))
        .order_by(AuditEvent.id)
        .limit(1)
    )


def _describe(event: AuditEvent | None) -> str:
    if event is None:
        return "a record of this subject was added, removed or imported after the signature"
    fields = ", ".join(sorted((event.after or event.before or {}).keys())[:6])
    why = f" ({event.reason})" if event.reason else ""
    return (
        f"{event.action} of {event.table_name.replace('_', ' ')} {event.row_id} "
        f"[{fields}] by {event.user} at {event.time:%Y-%m-%d %H:%M} UTC{why}"
    )


def _record(
    session: Session, signature: CasebookSignature, subject: Subject, rows: dict[str, list[Base]]
) -> SignatureRecord:
    # a change reverted later still invalidates: both the hash and the audit log must agree
    change = _first_change_after(session, signature, rows)
    valid = change is None and _fingerprint(rows) == signature.data_sha256
    return SignatureRecord(
        id=signature.id,
        subject_code=subject.code,
        signed_by=signature.signed_by,
        signer_name=signature.signer_name,
        signer_role=signature.signer_role,
        meaning=signature.meaning,
        signed_at=signature.signed_at,
        data_sha256=signature.data_sha256,
        valid=valid,
        invalidated_by=None if valid else _describe(change),
    )


def sign_casebook(
    study: StudyHandle,
    subject_code: str,
    *,
    username: str,
    password: str,
    meaning: str,
    confirm_open_queries: bool | Collection[int] = False,
    now: datetime | None = None,
) -> SignatureRecord:
    """Sign the casebook of ``subject_code``: the password again, and the meaning (a key of
    :data:`SIGNATURE_MEANINGS`). Only an investigator may sign.

    A casebook with queries not yet closed is signed only when the signer confirms it:
    ``confirm_open_queries`` True (any open queries), or the numbers of the queries the signer
    was shown (the form: a query raised since is not confirmed). Otherwise
    :class:`~celltrial.errors.EntryRefused` lists them under ``open_queries``; the audit trail of
    a signature given with open queries names them."""
    if meaning not in SIGNATURE_MEANINGS:
        raise DataError(f"meaning {meaning!r}: expected one of {', '.join(SIGNATURE_MEANINGS)}")
    try:
        account = confirm_password(study.engine, username, password)
    except SignInRefused as exc:
        raise SignatureRefused(str(exc)) from None
    if not role_can(account.role, "sign_casebook"):
        raise SignatureRefused(f"your role ({account.role}) may not sign a casebook")
    statement = SIGNATURE_MEANINGS[meaning]
    with study_session(
        study.engine, user=username, reason=f"casebook signed: {statement}"
    ) as session:
        subject = find_subject(session, study, subject_code)
        unresolved = open_query_ids(session, subject)
        _check_confirmed(session, subject, unresolved, confirm_open_queries)
        if unresolved:  # signed with them open, as confirmed; the audit trail says so
            listed = ", ".join(f"#{n}" for n in unresolved)
            session.info["reason"] += f"; signed with {len(unresolved)} open queries ({listed})"
        rows = _signed_rows(session, subject)
        signature = CasebookSignature(
            subject_id=subject.id,
            signed_by=account.username,
            signer_name=account.full_name or account.username,
            signer_role=account.role,
            meaning=statement,
            signed_at=now or datetime.now(UTC),
            data_sha256=_fingerprint(rows),
        )
        session.add(signature)
        session.flush()
        return _record(session, signature, subject, rows)


def _check_confirmed(
    session: Session, subject: Subject, unresolved: list[int], confirmed: bool | Collection[int]
) -> None:
    """:class:`EntryRefused` unless every query in ``unresolved`` is confirmed."""
    if confirmed is True or not unresolved:
        return
    seen = set() if confirmed is False else {int(n) for n in confirmed}  # type: ignore[union-attr]
    unconfirmed = set(unresolved) - seen
    if not unconfirmed:
        return
    said = [
        f"#{q.id} {q.record_label}: {q.field_label}, '{q.question}' ({q.status})"
        for q in subject_queries(session, subject)
        if q.id in unconfirmed
    ]
    one = len(said) == 1
    raise EntryRefused(
        f"not signed: {len(said)} {'query is' if one else 'queries are'} not closed on this "
        f"casebook ({'; '.join(said)}); confirm that you sign with {'it' if one else 'them'} "
        f"open, or close {'it' if one else 'them'} first",
        warnings={"open_queries": said},
    )


def open_query_ids(session: Session, subject: Subject) -> list[int]:
    """The subject's queries not yet closed (open or answered), by number."""
    return list(
        session.scalars(
            select(DataQuery.id)
            .where(DataQuery.subject_id == subject.id, DataQuery.status != "closed")
            .order_by(DataQuery.id)
        )
    )


def list_signatures(study: StudyHandle, subject_code: str) -> list[SignatureRecord]:
    """Every signature of the subject's casebook, newest first, each valid or not."""
    with study_session(study.engine, user="read") as session:
        return subject_signatures(session, find_subject(session, study, subject_code))


def subject_signatures(session: Session, subject: Subject) -> list[SignatureRecord]:
    """Every signature of the subject's casebook, newest first (within a session of the
    caller's)."""
    signatures = list(
        session.scalars(
            select(CasebookSignature)
            .where(CasebookSignature.subject_id == subject.id)
            .order_by(CasebookSignature.id.desc())
        )
    )
    if not signatures:  # no casebook to check against: skip reading all of it
        return []
    rows = _signed_rows(session, subject)
    return [_record(session, s, subject, rows) for s in signatures]


def current_signature(study: StudyHandle, subject_code: str) -> SignatureRecord | None:
    """The newest signature of the subject's casebook (check ``.valid``), or None."""
    signatures = list_signatures(study, subject_code)
    return signatures[0] if signatures else None
