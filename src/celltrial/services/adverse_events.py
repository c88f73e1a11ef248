"""Record and edit adverse events through the audited write path, with the vocabulary checks.

A hand entry is held to the rules of :func:`celltrial.safety.recording.check_adverse_event` and
to the death rules (a grade 5 event is serious and fatal); an onset before the study (or the
subject's admission, without an enrolment date), a resolution after the subject's death or in
the future is saved once the user confirms it (kept in the audit trail,
:mod:`celltrial.services.entry_checks`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from celltrial.errors import EntryRefused
from celltrial.safety.events import split_criteria
from celltrial.safety.recording import check_adverse_event, record_adverse_event
from celltrial.services.editing import (
    apply_changes,
    check_reason,
    check_version,
    find_study_record,
    refusing_lost_updates,
)
from celltrial.services.entry_checks import EntryCheck, check_date, subject_dates
from celltrial.services.infusions import find_subject
from celltrial.store.database import study_session
from celltrial.store.models import AdverseEvent, Subject
from celltrial.study import StudyHandle


@dataclass(frozen=True)
class AdverseEventEntry:
    term: str
    onset_at: datetime
    grade: int | None = None
    serious: bool = False
    serious_criteria: tuple[str, ...] = ()
    resolved_at: datetime | None = None
    relatedness: str | None = None
    expected: bool | None = None
    action: str | None = None
    outcome: str | None = None
    description: str | None = None
    #: The user has seen the warnings about this entry's dates and saves it all the same
    confirm_warnings: bool = False


#: How the fields of an adverse event are named in messages.
FIELD_LABELS = {
    "subject": "subject",
    "onset_at": "onset",
    "resolved_at": "resolved",
    "grade": "CTCAE grade",
    "serious_criteria": "seriousness criteria",
}
#: The fields of :mod:`celltrial.safety.events` as the form and the API name them.
_FIELDS = {"onset": "onset_at", "resolved": "resolved_at", "subject_id": "subject"}


@dataclass(frozen=True)
class AdverseEventRecord:
    id: int
    subject_code: str
    term: str
    onset_at: datetime
    resolved_at: datetime | None
    grade: int | None
    serious: bool
    serious_criteria: tuple[str, ...]
    relatedness: str | None
    expected: bool | None
    action: str | None
    outcome: str | None
    description: str | None
    version: int


def _text(value: str | None) -> str | None:
    text = (value or "").strip()
    return text or None


def _event(entry: AdverseEventEntry, subject_code: str) -> dict:
    """The AE in the shape of :func:`celltrial.safety.recording.record_adverse_event`."""
    return {
        "subject_id": subject_code,
        "term": entry.term.strip(),
        "onset": entry.onset_at,
        "resolved": entry.resolved_at,
        "grade": entry.grade,
        "serious": entry.serious,
        "serious_criteria": "; ".join(entry.serious_criteria) or None,
        "relatedness": _text(entry.relatedness),
        "expected": entry.expected,
        "action": _text(entry.action),
        "outcome": _text(entry.outcome),
        "description": _text(entry.description),
    }


def _record(row: AdverseEvent, subject_code: str) -> AdverseEventRecord:
    return AdverseEventRecord(
        id=row.id,
        subject_code=subject_code,
        term=row.term,
        onset_at=row.onset_at,
        resolved_at=row.resolved_at,
        grade=row.grade,
        serious=row.serious,
        serious_criteria=tuple(split_criteria(row.serious_criteria)),
        relatedness=row.relatedness,
        expected=row.expected,
        action=row.action,
        outcome=row.outcome,
        description=row.description,
        version=row.version,
    )


def _check(
    session: Session,
    study: StudyHandle,
    subject: Subject,
    entry: AdverseEventEntry,
    *,
    onset_changed: bool = True,
    resolved_changed: bool = True,
) -> None:
    """The rules of a hand entry (problems by form field), then the date warnings; the
    confirmed warnings go into the reason of the audit event."""
    zone = study.protocol.study.timezone
    try:
        check_adverse_event(
            session, study.study_id, _event(entry, subject.code), zone=zone, death_rules=True
        )
    except EntryRefused as exc:
        problems = {_FIELDS.get(k, k): v for k, v in exc.problems.items()}
        said = [f"{FIELD_LABELS.get(k, k)}: {t}" for k, texts in problems.items() for t in texts]
        raise EntryRefused(
            "adverse event not saved: " + "; ".join(said), problems=problems
        ) from None
    check = EntryCheck("adverse event", FIELD_LABELS)
    dates = subject_dates(session, study, subject)
    if onset_changed:  # before enrolment, after death and in the future: refused above
        check_date(check, "onset_at", entry.onset_at, dates, zone=zone, future=False)
    if resolved_changed:
        check_date(check, "resolved_at", entry.resolved_at, dates, zone=zone, before=False)
    note = check.settle(confirmed=entry.confirm_warnings)
    if note:
        session.info["reason"] = f"{session.info.get('reason') or ''}; {note}".lstrip("; ")


def record_event(
    study: StudyHandle, subject_code: str, entry: AdverseEventEntry, *, user: str
) -> AdverseEventRecord:
    """Store a new AE (vocabulary and consistency checks of :mod:`celltrial.safety.events`,
    the death rules, the date warnings)."""
    with study_session(study.engine, user=user, reason="adverse event recorded") as session:
        subject = find_subject(session, study, subject_code)
        _check(session, study, subject, entry)
        row = record_adverse_event(
            session,
            study.study_id,
            _event(entry, subject.code),
            zone=study.protocol.study.timezone,
            death_rules=True,
        )
        session.refresh(row)
        return _record(row, subject.code)


def edit_event(
    study: StudyHandle,
    event_id: int,
    entry: AdverseEventEntry,
    *,
    version: int,
    reason: str,
    user: str,
) -> AdverseEventRecord:
    """Change a saved AE: needs a reason, and the version the user saw (no silent overwrite)."""
    reason = check_reason(reason)
    with (
        refusing_lost_updates("the adverse event was"),
        study_session(study.engine, user=user, reason=reason) as session,
    ):
        row, subject = find_study_record(session, study, AdverseEvent, event_id, "adverse event")
        code = subject.code
        check_version(session, row, version, f"adverse event {row.id} ({row.term})")
        event = _event(entry, code)
        # the same rules as a new event: vocabulary, the subject's dates, not in the future,
        # grade 5 serious and fatal; the warnings only for a date the edit changes
        _check(
            session,
            study,
            subject,
            entry,
            onset_changed=_utc(row.onset_at) != entry.onset_at,
            resolved_changed=_utc(row.resolved_at) != entry.resolved_at,
        )
        apply_changes(
            row,
            {
                "term": event["term"],
                "description": event["description"],
                "onset_at": event["onset"],
                "resolved_at": event["resolved"],
                "grade": event["grade"],
                "serious": event["serious"],
                "serious_criteria": event["serious_criteria"],
                "relatedness": event["relatedness"],
                "expected": event["expected"],
                "action": event["action"],
                "outcome": event["outcome"],
            },
        )
        session.flush()
        session.refresh(row)
        return _record(row, code)


def _utc(value: datetime | None) -> datetime | None:
    """A stored time, aware (SQLite returns it naive, in UTC)."""
    return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)


def _find(session: Session, study: StudyHandle, event_id: int) -> tuple[AdverseEvent, str]:
    row, subject = find_study_record(session, study, AdverseEvent, event_id, "adverse event")
    return row, subject.code


def read_event(study: StudyHandle, event_id: int) -> AdverseEventRecord:
    with study_session(study.engine, user="read") as session:
        row, code = _find(session, study, event_id)
        return _record(row, code)


def list_events(study: StudyHandle, subject_code: str) -> list[AdverseEventRecord]:
    with study_session(study.engine, user="read") as session:
        return subject_events(session, find_subject(session, study, subject_code))


def subject_events(session: Session, subject: Subject) -> list[AdverseEventRecord]:
    """The subject's adverse events by onset (within a session of the caller's)."""
    rows = session.scalars(
        select(AdverseEvent)
        .where(AdverseEvent.subject_id == subject.id)
        .order_by(AdverseEvent.onset_at, AdverseEvent.id)
    )
    return [_record(r, subject.code) for r in rows]
