"""Enrol a subject and keep their demographics from the browser, through the audited write path.

The facts are those imports store (:data:`celltrial.ingest.frame.SUBJECT_FIELDS`): sex, age in
completed years, height in cm, weight in kg and the admission time, read and checked by the
same rules (:mod:`celltrial.ingest.facts`: sex words, a birth date becomes the age at admission,
plausible ranges) and a new code by the rule every way in applies
(:func:`celltrial.ingest.subject_codes.check_subject_code`). A birth date is not stored, only
the age it gives. Enrolment is an audited
insert; a later change needs a reason and the version the user saw, like every other edit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd
from sqlalchemy import select

from celltrial.errors import DataError
from celltrial.ingest import facts
from celltrial.ingest.subject_codes import check_subject_code
from celltrial.services.casebook import add_new_subject, place_new_subject
from celltrial.services.editing import (
    apply_changes,
    check_reason,
    check_version,
    refusing_lost_updates,
)
from celltrial.services.infusions import find_subject
from celltrial.services.vital_signs import CLOCK_SKEW
from celltrial.store.database import study_session
from celltrial.store.models import Site, Subject
from celltrial.study import StudyHandle

#: What each fact is called in messages and on the form.
FIELD_LABELS: dict[str, str] = {
    "code": "subject code",
    "sex": "sex",
    "birth_date": "birth date",
    "age": "age",
    "height_cm": "height",
    "weight_kg": "weight",
    "admitted_at": "admission",
    "enrolled_at": "enrolment",
}
SEXES: dict[str, str] = {"F": "female", "M": "male"}


@dataclass(frozen=True)
class DemographicsEntry:
    """What the coordinator enters: any of the facts (sex as F/M or a word such as "female")."""

    sex: str | None = None
    birth_date: date | None = None
    age: float | None = None
    height_cm: float | None = None
    weight_kg: float | None = None
    admitted_at: datetime | None = None
    #: when the subject was enrolled (consent): default now; an edit without one keeps it
    enrolled_at: datetime | None = None


@dataclass(frozen=True)
class DemographicsRecord:
    """A study subject's stored demographics."""

    id: int
    code: str
    site: str | None
    sex: str | None
    age: float | None
    height_cm: float | None
    weight_kg: float | None
    enrolled_at: datetime | None
    admitted_at: datetime | None
    version: int


def _age_from_birth(born: date, at: datetime, zone: Any) -> float | None:
    """Completed years at the local date of ``at`` (facts' rule, as the importers apply it)."""
    reference = pd.Series([pd.Timestamp(at.astimezone(zone).date())])
    age = facts.age_from_birth(pd.Series([pd.Timestamp(born)]), reference).iloc[0]
    return None if pd.isna(age) else float(age)


def check_demographics(
    entry: DemographicsEntry, *, zone: Any, enrolled_at: datetime
) -> dict[str, Any]:
    """The values of the subject row for ``entry``; :class:`DataError` listing every problem.

    The age comes from the birth date (at admission, else at enrolment: the entry's, else
    ``enrolled_at``) when one is given; an age entered beside it must be the same. The
    enrolment time is among the values only when the entry gives one.
    """
    problems: list[str] = []
    values: dict[str, Any] = {}
    now = datetime.now(UTC)
    for fact in ("admitted_at", "enrolled_at"):
        when = getattr(entry, fact)
        if when is None:
            continue
        if when.tzinfo is None:
            problems.append(f"{FIELD_LABELS[fact]}: needs a time zone")
        elif when > now + CLOCK_SKEW:
            problems.append(f"{FIELD_LABELS[fact]}: is in the future")
        elif when.year < 1900:
            problems.append(f"{FIELD_LABELS[fact]}: before 1900")
        else:
            values[fact] = when
    enrolled_at = values.get("enrolled_at", enrolled_at)
    sex = None
    if entry.sex is not None and str(entry.sex).strip():
        read, unreadable = facts.read_sex(pd.Series([str(entry.sex)]))
        sex = read.iloc[0]
        if unreadable.iloc[0]:
            problems.append(f"sex: {entry.sex!r} — expected female (F) or male (M)")
    values["sex"] = sex
    admitted = values.setdefault("admitted_at", None)
    age = entry.age
    if entry.birth_date is not None:
        reference = admitted or enrolled_at
        if entry.birth_date > reference.astimezone(zone).date():
            what = "admission" if admitted else "enrolment"
            problems.append(f"birth date: {entry.birth_date:%Y-%m-%d} is after the {what}")
        else:
            from_birth = _age_from_birth(entry.birth_date, reference, zone)
            if age is not None and from_birth is not None and age != from_birth:
                problems.append(
                    f"age: {age:g} years does not match the birth date "
                    f"({from_birth:g} years at {'admission' if admitted else 'enrolment'}); "
                    "give one of them"
                )
            age = from_birth
    for fact, value in (
        ("age", age),
        ("height_cm", entry.height_cm),
        ("weight_kg", entry.weight_kg),
    ):
        if value is not None and bool(facts.implausible(pd.Series([value]), fact).iloc[0]):
            problems.append(
                f"{FIELD_LABELS[fact]}: {value:g} — expected {facts.expected_text(fact)}"
            )
        values[fact] = None if value is None else float(value)
    if problems:
        raise DataError("demographics: " + "; ".join(problems))
    return values


def _record(row: Subject, site: str | None) -> DemographicsRecord:
    return DemographicsRecord(
        id=row.id,
        code=row.code,
        site=site,
        sex=row.sex,
        age=row.age,
        height_cm=row.height_cm,
        weight_kg=row.weight_kg,
        enrolled_at=row.enrolled_at,
        admitted_at=row.admitted_at,
        version=row.version,
    )


def list_sites(study: StudyHandle) -> list[str]:
    """The codes of the study's sites, in order (what the enrolment form offers)."""
    with study_session(study.engine, user="read") as session:
        return list(
            session.scalars(
                select(Site.code).where(Site.study_id == study.study_id).order_by(Site.code)
            )
        )


def enrol(
    study: StudyHandle,
    code: str,
    entry: DemographicsEntry,
    *,
    user: str,
    site: str | None = None,
) -> DemographicsRecord:
    """Add a study subject with their demographics (audited insert); enrolled at the entry's
    enrolment time, else now.

    ``site``: a site code of the study (default: its first site)."""
    code = check_subject_code(code)
    values = check_demographics(
        entry, zone=study.protocol.study.zone, enrolled_at=datetime.now(UTC)
    )
    values.setdefault("enrolled_at", datetime.now(UTC))
    with study_session(study.engine, user=user, reason="subject enrolled") as session:
        site_id, site_code = place_new_subject(session, study, code, site)
        row = Subject(study_id=study.study_id, code=code, site_id=site_id)
        apply_changes(row, values)
        add_new_subject(session, row)
        return _record(row, site_code)


def _site_code(session: Any, subject: Subject) -> str | None:
    if subject.site_id is None:
        return None
    return session.scalar(select(Site.code).where(Site.id == subject.site_id))


def read_demographics(study: StudyHandle, code: str) -> DemographicsRecord:
    """A study subject's demographics (:class:`NotFound` for an unknown code)."""
    with study_session(study.engine, user="read") as session:
        subject = find_subject(session, study, code)
        return _record(subject, _site_code(session, subject))


def edit_demographics(
    study: StudyHandle,
    code: str,
    entry: DemographicsEntry,
    *,
    version: int,
    reason: str,
    user: str,
) -> DemographicsRecord:
    """Change a subject's demographics: needs a reason, and the version the user saw. Every
    fact is replaced by the entry's (an empty one clears it)."""
    reason = check_reason(reason)
    with (
        refusing_lost_updates(f"subject {code}'s demographics were"),
        study_session(study.engine, user=user, reason=reason) as session,
    ):
        subject = find_subject(session, study, code)
        check_version(session, subject, version, f"subject {code}'s demographics")
        enrolled_at = subject.enrolled_at or datetime.now(UTC)
        if enrolled_at.tzinfo is None:
            enrolled_at = enrolled_at.replace(tzinfo=UTC)
        values = check_demographics(entry, zone=study.protocol.study.zone, enrolled_at=enrolled_at)
        apply_changes(subject, values)
        session.flush()
        return _record(subject, _site_code(session, subject))
