"""Record and edit infusions at the bedside, with the identity and release check of the lot.

Before an infusion is stored the bedside check must pass: the lot is a lot of this study, is
released and meets the protocol's release criteria, has not expired at the start of the infusion,
and the subject code on the bag label is this subject's. A dose outside the protocol's tolerance
is refused unless the user gives a reason to override it, and a start before the study or the
subject's enrolment, or after the subject's death, is saved once confirmed (see
:mod:`celltrial.services.entry_checks`; both kept in the audit trail). Anything else a protocol
deviation describes (timing) is stored and shown on the dashboard, not refused.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload

from celltrial.errors import DataError
from celltrial.protocol.release import check_lot_release
from celltrial.services.casebook import release_results
from celltrial.services.editing import (
    apply_changes,
    check_reason,
    check_version,
    refusing_lost_updates,
)
from celltrial.services.entry_checks import (
    CLOCK_SKEW,
    EntryCheck,
    check_date,
    check_dose,
    subject_dates,
)
from celltrial.services.errors import BedsideCheckFailed, NotFound
from celltrial.store.database import study_session
from celltrial.store.models import Infusion, ProductLot, Subject
from celltrial.study import StudyHandle

#: How the fields of an infusion are named in messages.
FIELD_LABELS = {
    "lot_code": "lot code",
    "vial_id": "vial",
    "label_subject_code": "subject code on the bag label",
    "number": "infusion number",
    "started_at": "start",
    "ended_at": "stop",
    "cells_given": "cells given",
    "volume_ml": "volume",
    "stop_reason": "reason the infusion was stopped",
    "reaction_description": "reaction",
}


@dataclass(frozen=True)
class InfusionEntry:
    """What the coordinator enters; ``label_subject_code`` is read off the product bag."""

    lot_code: str
    vial_id: str
    started_at: datetime
    cells_given: float
    number: int | None = None
    ended_at: datetime | None = None
    volume_ml: float | None = None
    completed: bool = True
    stop_reason: str | None = None
    premedication: str | None = None
    #: None: not recorded (imported infusions); an edit keeps it so until someone answers
    reaction: bool | None = False
    reaction_description: str | None = None
    label_subject_code: str | None = None
    #: Why a dose outside the protocol's tolerance is right (audited with the entry)
    override_reason: str | None = None
    #: The user has seen the warnings about this entry's dates and saves it all the same
    confirm_warnings: bool = False


@dataclass(frozen=True)
class InfusionRecord:
    id: int
    subject_code: str
    number: int
    lot_code: str | None
    vial_id: str | None
    started_at: datetime | None
    ended_at: datetime | None
    cells_given: float | None
    volume_ml: float | None
    completed: bool
    stop_reason: str | None
    premedication: str | None
    reaction: bool | None
    reaction_description: str | None
    version: int


def _record(row: Infusion, subject_code: str) -> InfusionRecord:
    return InfusionRecord(
        id=row.id,
        subject_code=subject_code,
        number=row.number,
        lot_code=row.lot.code if row.lot is not None else None,
        vial_id=row.vial_id,
        started_at=row.started_at,
        ended_at=row.ended_at,
        cells_given=row.cells_given,
        volume_ml=row.volume_ml,
        completed=row.completed,
        stop_reason=row.stop_reason,
        premedication=row.premedication,
        reaction=row.reaction,
        reaction_description=row.reaction_description,
        version=row.version,
    )


def find_subject(session: Session, study: StudyHandle, code: str) -> Subject:
    subject = session.scalar(
        select(Subject).where(
            Subject.study_id == study.study_id, Subject.code == code, Subject.cohort.is_(None)
        )
    )
    if subject is None:
        raise NotFound(f"no subject {code!r} in study {study.study_id}")
    return subject


def _text(value: str | None) -> str | None:
    text = (value or "").strip()
    return text or None


def check_bedside(
    session: Session, study: StudyHandle, subject: Subject, entry: InfusionEntry, *, new: bool
) -> ProductLot:
    """The lot to infuse, or :class:`BedsideCheckFailed` listing every problem found."""
    problems: list[str] = []
    lot = session.scalar(
        select(ProductLot).where(
            ProductLot.study_id == study.study_id, ProductLot.code == entry.lot_code.strip()
        )
    )
    if lot is None:
        problems.append(
            f"lot {entry.lot_code!r} is not a lot of study {study.study_id}: do not infuse"
        )
    else:
        if lot.release_status != "released":
            problems.append(
                f"lot {lot.code} is not released (status: {lot.release_status}): do not infuse"
            )
        failures = check_lot_release(release_results(lot), study.protocol.product.release)
        if failures:
            problems.append(f"lot {lot.code} fails the release criteria: {'; '.join(failures)}")
        if lot.expires_at is not None and lot.expires_at < entry.started_at:
            problems.append(f"lot {lot.code} expired at {lot.expires_at:%Y-%m-%d %H:%M} UTC")
    label = (entry.label_subject_code or "").strip()
    if new and not label:
        problems.append("subject code on the bag label: required (bedside identity check)")
    elif label and label != subject.code:
        problems.append(
            f"the bag label names subject {label!r} but this is subject {subject.code}: "
            "do not infuse"
        )
    if problems:
        raise BedsideCheckFailed("bedside check failed: " + " · ".join(problems))
    return lot


def _check_entry(entry: InfusionEntry, study: StudyHandle) -> EntryCheck:
    """The problems of the entry's own fields, raised at once
    (:class:`~celltrial.errors.EntryRefused`); else the check that :func:`_settle` completes."""
    check = EntryCheck("infusion", FIELD_LABELS)
    if not entry.vial_id.strip():
        check.refuse("vial_id", "required")
    if entry.started_at.tzinfo is None:
        check.refuse("started_at", "needs a time zone")
    elif entry.started_at > datetime.now(UTC) + CLOCK_SKEW:
        check.refuse("started_at", "is in the future")
    if entry.ended_at is not None and entry.ended_at < entry.started_at:
        check.refuse("ended_at", "before the start")
    if not entry.cells_given > 0:
        check.refuse("cells_given", "expected a positive number")
    if entry.volume_ml is not None and not entry.volume_ml > 0:
        check.refuse("volume_ml", "expected a positive number of mL")
    if not entry.completed and not _text(entry.stop_reason):
        check.refuse("stop_reason", "required when it was not completed")
    if entry.reaction and not _text(entry.reaction_description):
        check.refuse("reaction_description", "describe the reaction during the infusion")
    n = study.protocol.regimen.n_infusions
    if entry.number is not None and not 1 <= entry.number <= n:
        check.refuse("number", f"expected 1–{n}")
    if check.problems:
        check.settle()
    return check


def _settle(
    check: EntryCheck,
    session: Session,
    study: StudyHandle,
    subject: Subject,
    entry: InfusionEntry,
    *,
    dose_changed: bool = True,
    start_changed: bool = True,
) -> None:
    """Add the dose and date checks against the protocol and the subject; raise
    :class:`~celltrial.errors.EntryRefused` unless the entry may be saved, else put the override
    and the confirmed warnings into the reason of the audit event. An edit is checked only for
    what it changes (a dose overridden once is not refused again when the volume is
    corrected)."""
    if dose_changed and entry.cells_given > 0:
        check_dose(
            check,
            "cells_given",
            entry.cells_given,
            study.protocol.regimen.dose,
            weight_kg=subject.weight_kg,
            completed=entry.completed,
        )
    if start_changed and entry.started_at.tzinfo is not None:
        dates = subject_dates(session, study, subject)
        zone = study.protocol.study.timezone
        check_date(check, "started_at", entry.started_at, dates, zone=zone, future=False)
    note = check.settle(override_reason=entry.override_reason, confirmed=entry.confirm_warnings)
    if note:
        session.info["reason"] = f"{session.info.get('reason') or ''}; {note}".lstrip("; ")


def _values(entry: InfusionEntry, lot: ProductLot) -> dict:
    return {
        "lot_id": lot.id,
        "vial_id": entry.vial_id.strip(),
        "started_at": entry.started_at,
        "ended_at": entry.ended_at,
        "cells_given": entry.cells_given,
        "volume_ml": entry.volume_ml,
        "completed": entry.completed,
        "stop_reason": _text(entry.stop_reason),
        "premedication": _text(entry.premedication),
        "reaction": entry.reaction,
        "reaction_description": _text(entry.reaction_description) if entry.reaction else None,
    }


def record_infusion(
    study: StudyHandle, subject_code: str, entry: InfusionEntry, *, user: str
) -> InfusionRecord:
    """Store a new infusion after the bedside check (audited insert)."""
    check = _check_entry(entry, study)
    with study_session(study.engine, user=user, reason="infusion recorded") as session:
        subject = find_subject(session, study, subject_code)
        lot = check_bedside(session, study, subject, entry, new=True)  # "do not infuse" first
        _settle(check, session, study, subject, entry)
        last = session.scalar(
            select(func.max(Infusion.number)).where(Infusion.subject_id == subject.id)
        )
        number = entry.number if entry.number is not None else (last or 0) + 1
        n = study.protocol.regimen.n_infusions
        if number > n:
            raise DataError(f"infusion: subject {subject.code} already has all {n} infusions")
        taken = session.scalar(
            select(Infusion.id).where(Infusion.subject_id == subject.id, Infusion.number == number)
        )
        if taken is not None:
            raise DataError(
                f"infusion {number} of subject {subject.code} is already recorded; edit it instead"
            )
        row = Infusion(subject_id=subject.id, number=number, **_values(entry, lot))
        session.add(row)
        session.flush()
        session.refresh(row)
        return _record(row, subject.code)


def edit_infusion(
    study: StudyHandle,
    infusion_id: int,
    entry: InfusionEntry,
    *,
    version: int,
    reason: str,
    user: str,
) -> InfusionRecord:
    """Change a saved infusion: needs a reason, and the version the user saw (no overwrite)."""
    reason = check_reason(reason)
    entry = replace(entry, number=None)
    check = _check_entry(entry, study)
    with (
        refusing_lost_updates("the infusion was"),
        study_session(study.engine, user=user, reason=reason) as session,
    ):
        row = _find(session, study, infusion_id)
        check_version(session, row, version, f"infusion {row.number} of {row.subject.code}")
        lot = check_bedside(session, study, row.subject, entry, new=False)
        started = (
            row.started_at
            if row.started_at is None or row.started_at.tzinfo
            else row.started_at.replace(tzinfo=UTC)
        )
        _settle(
            check,
            session,
            study,
            row.subject,
            entry,
            dose_changed=row.cells_given != entry.cells_given,
            start_changed=started != entry.started_at,
        )
        apply_changes(row, _values(entry, lot))
        session.flush()
        session.refresh(row)
        return _record(row, row.subject.code)


def _find(session: Session, study: StudyHandle, infusion_id: int) -> Infusion:
    row = session.scalar(
        select(Infusion)
        .join(Subject, Infusion.subject_id == Subject.id)
        .where(Infusion.id == infusion_id, Subject.study_id == study.study_id)
    )
    if row is None:
        raise NotFound(f"no infusion {infusion_id} in study {study.study_id}")
    return row


def read_infusion(study: StudyHandle, infusion_id: int) -> InfusionRecord:
    with study_session(study.engine, user="read") as session:
        row = _find(session, study, infusion_id)
        return _record(row, row.subject.code)


def list_infusions(study: StudyHandle, subject_code: str) -> list[InfusionRecord]:
    with study_session(study.engine, user="read") as session:
        return subject_infusions(session, find_subject(session, study, subject_code))


def subject_infusions(session: Session, subject: Subject) -> list[InfusionRecord]:
    """The subject's infusions by number (within a session of the caller's)."""
    rows = session.scalars(
        select(Infusion)
        .where(Infusion.subject_id == subject.id)
        .options(joinedload(Infusion.lot))  # the lot code of each, in the same query
        .order_by(Infusion.number)
    )
    return [_record(r, subject.code) for r in rows]


def entry_of(record: InfusionRecord) -> dict:
    """The editable fields of a saved infusion, as a form shows them."""
    values = asdict(record)
    return {k: values[k] for k in InfusionEntry.__dataclass_fields__ if k in values}
