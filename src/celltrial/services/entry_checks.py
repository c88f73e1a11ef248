"""Checks of a hand entry beyond its types: hard stops, hard stops a reason may override, warnings.

An entry typed at the bedside or at a desk can be wrong by orders of magnitude or by years. A
problem must be corrected; a dose outside the protocol's tolerance is refused unless the user
gives a reason to override it; an unlikely date (before the study, before the subject's
enrolment or admission, after the subject's death, in the future) is saved once the user has
confirmed it. The override reason and the confirmed warnings go into the audit trail with the
entry (the reason of its audit event).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from celltrial.errors import EntryRefused
from celltrial.ingest.times import EARLIEST
from celltrial.protocol.model import Dose
from celltrial.safety.events import show_time
from celltrial.store.models import Infusion, Subject
from celltrial.study import StudyHandle

#: A time this far past the clock is a clock that runs fast, not a time in the future.
CLOCK_SKEW = timedelta(minutes=10)
#: No study datum is older (as imports check): an earlier date is refused, not a warning.
_EARLIEST = EARLIEST.tz_localize(UTC).to_pydatetime()


@dataclass
class EntryCheck:
    """The problems of one entry by field (keys as the form and the API name the fields)."""

    what: str
    labels: Mapping[str, str] = field(default_factory=dict)
    problems: dict[str, list[str]] = field(default_factory=dict)
    overridable: dict[str, list[str]] = field(default_factory=dict)
    warnings: dict[str, list[str]] = field(default_factory=dict)

    def refuse(self, name: str, text: str) -> None:
        """A problem to correct."""
        self.problems.setdefault(name, []).append(text)

    def refuse_unless_overridden(self, name: str, text: str) -> None:
        """A problem saved only with a reason to override it."""
        self.overridable.setdefault(name, []).append(text)

    def warn(self, name: str, text: str) -> None:
        """Something unlikely, saved once confirmed."""
        self.warnings.setdefault(name, []).append(text)

    def _lines(self, found: dict[str, list[str]]) -> list[str]:
        return [
            f"{self.labels.get(k, k.replace('_', ' '))}: {t}" for k, ts in found.items() for t in ts
        ]

    def settle(self, *, override_reason: str | None = None, confirmed: bool = False) -> str | None:
        """Raise :class:`EntryRefused` unless the entry may be saved: no problem, every
        overridable problem overridden with a reason, every warning confirmed. Returns what the
        audit trail keeps beside the entry (the override and the confirmed warnings), or None."""
        reason = (override_reason or "").strip()
        blocked = bool(self.problems) or (bool(self.overridable) and not reason)
        unconfirmed = bool(self.warnings) and not confirmed
        if blocked or unconfirmed:
            parts = self._lines(self.problems)
            if self.overridable and not reason:
                parts += [f"{p} (give a reason to override)" for p in self._lines(self.overridable)]
            if self.warnings and not confirmed:
                parts += [
                    f"{p} (check it; confirm to save anyway)" for p in self._lines(self.warnings)
                ]
            raise EntryRefused(
                f"{self.what} not saved: " + "; ".join(parts),
                problems=self.problems,
                overridable=self.overridable if not reason else {},
                warnings=self.warnings if not confirmed else {},
            )
        notes = []
        if self.overridable:
            notes.append(f"overridden ({'; '.join(self._lines(self.overridable))}): {reason}")
        if self.warnings:
            notes.append(f"warning confirmed: {'; '.join(self._lines(self.warnings))}")
        return "; ".join(notes) or None


@dataclass(frozen=True)
class SubjectDates:
    """The times an entry's dates are checked against (aware, UTC; None when not recorded)."""

    code: str
    enrolled: datetime | None
    admitted: datetime | None
    died: datetime | None
    #: The study's first enrolment or infusion (any of its own subjects).
    study_start: datetime | None


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)  # SQLite returns naive UTC


def subject_dates(session: Session, study: StudyHandle, subject: Subject) -> SubjectDates:
    """The dates of ``subject`` and the study's start, read in the caller's session."""
    own = (Subject.study_id == study.study_id) & Subject.cohort.is_(None)
    enrolled = session.scalar(select(func.min(Subject.enrolled_at)).where(own))
    infused = session.scalar(
        select(func.min(Infusion.started_at))
        .join(Subject, Infusion.subject_id == Subject.id)
        .where(own)
    )
    starts = [t for t in (_aware(enrolled), _aware(infused)) if t is not None]
    return SubjectDates(
        code=subject.code,
        enrolled=_aware(subject.enrolled_at),
        admitted=_aware(subject.admitted_at),
        died=_aware(subject.died_at),
        study_start=min(starts) if starts else None,
    )


def check_date(
    check: EntryCheck,
    name: str,
    when: datetime | None,
    dates: SubjectDates,
    *,
    zone: str,
    now: datetime | None = None,
    before: bool = True,
    future: bool = True,
) -> None:
    """Refuse a time before 1900 (no study datum is older); warn when ``when`` falls before the
    subject's enrolment, before the study began, before
    the subject's admission when not enrolled (one of the three, in that order; none when
    ``before`` is False), after the subject's death, or (``future``) more than
    :data:`CLOCK_SKEW` past ``now``."""
    if when is None:
        return
    if when < _EARLIEST:
        check.refuse(
            name, f"{show_time(when, zone=zone)} is before {_EARLIEST.year}: check the year"
        )
        return
    if before and dates.enrolled is not None and when < dates.enrolled:
        check.warn(
            name,
            f"{show_time(when, zone=zone)} is before subject {dates.code}'s enrolment, "
            f"{show_time(dates.enrolled, zone=zone)}",
        )
    elif before and dates.study_start is not None and when < dates.study_start:
        check.warn(
            name,
            f"{show_time(when, zone=zone)} is before the study began (its first enrolment or "
            f"infusion, {show_time(dates.study_start, zone=zone)})",
        )
    elif before and dates.enrolled is None and dates.admitted is not None and when < dates.admitted:
        check.warn(
            name,
            f"{show_time(when, zone=zone)} is before subject {dates.code}'s admission, "
            f"{show_time(dates.admitted, zone=zone)}",
        )
    if dates.died is not None and when > dates.died:
        check.warn(
            name,
            f"{show_time(when, zone=zone)} is after subject {dates.code}'s death, "
            f"{show_time(dates.died, zone=zone)}",
        )
    now = now or datetime.now(UTC)
    if future and when > now + CLOCK_SKEW:
        check.warn(
            name,
            f"{show_time(when, zone=zone)} is in the future (now: {show_time(now, zone=zone)})",
        )


def _cells(value: float) -> str:
    """3e7 as "3 × 10^7" (cells are counted in powers of ten)."""
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{float(mantissa):g} × 10^{int(exponent)}"


def check_dose(
    check: EntryCheck,
    name: str,
    cells_given: float,
    dose: Dose,
    *,
    weight_kg: float | None,
    completed: bool,
) -> None:
    """Refuse, unless overridden, cells outside the protocol's dose ± tolerance; a stopped
    infusion may give less than planned (only more is refused). A per-kg dose without the
    subject's weight cannot be checked: a warning says so."""
    target = dose.target_cells(weight_kg)
    if target is None:
        check.warn(
            name,
            "the dose cannot be checked against the protocol's (per kg): the subject's weight "
            "is not recorded",
        )
        return
    if dose.within_tolerance(cells_given, weight_kg) or (not completed and cells_given < target):
        return
    ratio = cells_given / target
    times = f"{ratio:,.0f}" if ratio >= 10 else f"{ratio:.2g}"
    check.refuse_unless_overridden(
        name,
        f"{_cells(cells_given)} cells is {times} × the protocol dose of {_cells(target)} "
        f"(allowed ±{dose.tolerance_pct:g} %): check the number",
    )
