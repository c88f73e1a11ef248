"""Record and edit the daily clinical status (WHO clinical progression scale 0–10, oxygen support,
FiO2) through the audited write path.

One status a subject and calendar day (in the study's time zone). The score must fit the oxygen
support recorded with it, by the rules of ``celltrial/efficacy/who_scale.yaml`` (the rules the
efficacy analysis derives missing scores with): a subject on invasive ventilation scores 7–9,
one on high-flow oxygen 6, and so on. FiO2 is converted and checked as a vital sign is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from celltrial.efficacy.clinical_status import WhoScaleRules, load_who_scale_rules
from celltrial.errors import DataError
from celltrial.services.editing import (
    apply_changes,
    check_reason,
    check_version,
    find_study_record,
    refusing_lost_updates,
)
from celltrial.services.infusions import find_subject
from celltrial.services.vital_signs import CLOCK_SKEW, Number, parse_measurement
from celltrial.store.database import study_session
from celltrial.store.models import ClinicalStatus, Subject
from celltrial.study import StudyHandle

#: FiO2 above room air by more than this needs oxygen support.
_ROOM_AIR = 0.21
_ROOM_AIR_TOLERANCE = 0.005


@dataclass(frozen=True)
class ClinicalStatusEntry:
    """A day's status as entered: when it was assessed, the score, support and FiO2."""

    assessed_at: datetime
    who_scale: int
    oxygen_support: str | None = None
    fio2: Number = None
    fio2_unit: str = "1"


@dataclass(frozen=True)
class ClinicalStatusRecord:
    id: int
    subject_code: str
    assessed_at: datetime
    who_scale: int | None
    who_label: str | None
    oxygen_support: str | None
    fio2: float | None
    version: int


def support_options() -> tuple[str, ...]:
    """The oxygen-support texts the rules know (synonyms included: what an entry may say)."""
    return tuple(load_who_scale_rules().support)


def offered_support() -> tuple[str, ...]:
    """The oxygen-support texts a form offers: one term per device (``who_scale.yaml``,
    ``offered``)."""
    return load_who_scale_rules().offered


def who_levels() -> dict[int, str]:
    """Score -> meaning of the WHO clinical progression scale."""
    return dict(load_who_scale_rules().levels)


def _scores_by_support(rules: WhoScaleRules) -> dict[str, set[int]]:
    """Support category -> the scores a rule gives with it (no support named: not in hospital,
    i.e. no oxygen)."""
    scores: dict[str, set[int]] = {}
    for rule in rules.rules:
        for category in rule.when.get("support") or ["none"]:
            scores.setdefault(category, set()).add(rule.score)
    return scores


def _span(scores: set[int]) -> str:
    low, high = min(scores), max(scores)
    return f"{low}" if low == high else f"{low}–{high}"


def _check(entry: ClinicalStatusEntry) -> tuple[str | None, float | None]:
    """The support text (normalised) and FiO2 (fraction) of ``entry``; :class:`DataError`
    listing every problem."""
    rules = load_who_scale_rules()
    problems: list[str] = []
    if not 0 <= entry.who_scale <= 10:
        problems.append(f"WHO scale: {entry.who_scale} — expected 0–10")
    support = (entry.oxygen_support or "").strip().lower() or None
    category = None
    if support is not None:
        category = rules.support.get(support)
        if category is None:
            problems.append(
                f"oxygen support: {entry.oxygen_support!r} — expected one of "
                f"{', '.join(rules.support)}"
            )
        else:
            allowed = _scores_by_support(rules).get(category, set())
            if allowed and entry.who_scale not in allowed:
                problems.append(
                    f"WHO scale: {entry.who_scale} does not fit oxygen support {support!r} "
                    f"(that support means a score of {_span(allowed)})"
                )
    fio2 = None
    try:
        measured = parse_measurement("fio2", "FIO2", entry.fio2, entry.fio2_unit)
        fio2 = measured.value if measured is not None else None
    except DataError as exc:
        problems.append(str(exc))
    if fio2 is not None and category == "none" and fio2 > _ROOM_AIR + _ROOM_AIR_TOLERANCE:
        problems.append(
            f"FiO2: {fio2:g} is supplemental oxygen, but the oxygen support is {support!r} "
            f"(room air is {_ROOM_AIR:g})"
        )
    if fio2 is not None and category == "dead":
        problems.append("FiO2: leave empty for a subject who died")
    if entry.assessed_at.tzinfo is None:
        problems.append("time: needs a time zone")
    elif entry.assessed_at > datetime.now(UTC) + CLOCK_SKEW:
        problems.append("time: is in the future")
    if problems:
        raise DataError("clinical status: " + "; ".join(problems))
    return support, fio2


def _record(row: ClinicalStatus, subject_code: str) -> ClinicalStatusRecord:
    levels = load_who_scale_rules().levels
    return ClinicalStatusRecord(
        id=row.id,
        subject_code=subject_code,
        assessed_at=row.time,
        who_scale=row.who_scale,
        who_label=levels.get(row.who_scale) if row.who_scale is not None else None,
        oxygen_support=row.oxygen_support,
        fio2=row.fio2,
        version=row.version,
    )


def _check_day_free(
    session: Session, study: StudyHandle, subject: Subject, when: datetime, own: int | None
) -> None:
    """:class:`DataError` when the subject has another status on the same local day."""
    zone = study.protocol.study.zone
    day = when.astimezone(zone).date()
    start = datetime.combine(day, datetime.min.time(), tzinfo=zone)
    taken = session.scalar(
        select(ClinicalStatus.id).where(
            ClinicalStatus.subject_id == subject.id,
            ClinicalStatus.time >= start.astimezone(UTC),
            ClinicalStatus.time < (start + timedelta(days=1)).astimezone(UTC),
            ClinicalStatus.id != (own or 0),
        )
    )
    if taken is not None:
        raise DataError(
            f"clinical status: subject {subject.code} already has a status on {day:%Y-%m-%d}; "
            "edit that one instead"
        )


def record_clinical_status(
    study: StudyHandle, subject_code: str, entry: ClinicalStatusEntry, *, user: str
) -> ClinicalStatusRecord:
    """Store the day's status (audited insert)."""
    support, fio2 = _check(entry)
    with study_session(study.engine, user=user, reason="clinical status recorded") as session:
        subject = find_subject(session, study, subject_code)
        _check_day_free(session, study, subject, entry.assessed_at, None)
        row = ClinicalStatus(
            subject_id=subject.id,
            time=entry.assessed_at,
            who_scale=entry.who_scale,
            oxygen_support=support,
            fio2=fio2,
        )
        session.add(row)
        session.flush()
        return _record(row, subject.code)


def _find(session: Session, study: StudyHandle, status_id: int) -> tuple[ClinicalStatus, Subject]:
    return find_study_record(session, study, ClinicalStatus, status_id, "clinical status")


def edit_clinical_status(
    study: StudyHandle,
    status_id: int,
    entry: ClinicalStatusEntry,
    *,
    version: int,
    reason: str,
    user: str,
) -> ClinicalStatusRecord:
    """Change a saved status: needs a reason, and the version the user saw."""
    reason = check_reason(reason)
    support, fio2 = _check(entry)
    with (
        refusing_lost_updates("the clinical status was"),
        study_session(study.engine, user=user, reason=reason) as session,
    ):
        row, subject = _find(session, study, status_id)
        zone = study.protocol.study.zone
        what = f"the clinical status of {subject.code} on {row.time.astimezone(zone):%Y-%m-%d}"
        check_version(session, row, version, what)
        _check_day_free(session, study, subject, entry.assessed_at, row.id)
        apply_changes(
            row,
            {
                "time": entry.assessed_at,
                "who_scale": entry.who_scale,
                "oxygen_support": support,
                "fio2": fio2,
            },
        )
        session.flush()
        return _record(row, subject.code)


def read_clinical_status(study: StudyHandle, status_id: int) -> ClinicalStatusRecord:
    with study_session(study.engine, user="read") as session:
        row, subject = _find(session, study, status_id)
        return _record(row, subject.code)


def list_clinical_status(study: StudyHandle, subject_code: str) -> list[ClinicalStatusRecord]:
    """The subject's daily statuses, oldest first."""
    with study_session(study.engine, user="read") as session:
        return subject_clinical_status(session, find_subject(session, study, subject_code))


def subject_clinical_status(session: Session, subject: Subject) -> list[ClinicalStatusRecord]:
    """The subject's daily statuses, oldest first (within a session of the caller's)."""
    rows = session.scalars(
        select(ClinicalStatus)
        .where(ClinicalStatus.subject_id == subject.id)
        .order_by(ClinicalStatus.time, ClinicalStatus.id)
    )
    return [_record(r, subject.code) for r in rows]


def summarize_status_days(clinical_status: pd.DataFrame) -> list[dict[str, Any]]:
    """Timeline items of one subject's daily statuses (a frame of
    :data:`celltrial.frames.CLINICAL_STATUS_COLUMNS`): the score, what it means, the support."""
    levels = load_who_scale_rules().levels
    items: list[dict[str, Any]] = []
    for row in clinical_status.dropna(subset=["time"]).itertuples():
        parts = []
        if pd.notna(row.who_scale):
            score = int(row.who_scale)
            parts.append(f"WHO {score}" + (f" ({levels[score]})" if score in levels else ""))
        if isinstance(row.oxygen_support, str) and row.oxygen_support:
            parts.append(row.oxygen_support)
        if pd.notna(row.fio2):
            parts.append(f"FiO2 {float(row.fio2):g}")
        items.append(
            {
                "time": row.time.to_pydatetime(),
                "day": None if pd.isna(row.study_day) else int(row.study_day),
                "kind": "clinical status",
                "text": "; ".join(parts) or "recorded without a score",
            }
        )
    return items
