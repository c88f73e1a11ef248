"""Record and edit vital signs at the bedside through the audited write path.

One round of vital signs (a time and up to seven values) is stored as observations with the test
codes of the catalogue (``TEMP``, ``HR``, ``SYSBP``, ``DIABP``, ``RESP``, ``SPO2``, ``FIO2``), the
text as entered kept beside the value converted to the catalogue's canonical unit, exactly as an
import stores them: the analyses, the report and the exports see bedside entries and imported
values alike. A value outside the catalogue's plausible range is refused with a message naming
the field (an impossible value, or one entered in the wrong unit).

A round is the set of vital-sign observations of one subject at one time; it is named by its
first observation's id. Its ``version`` is made of the id and version of each of its values, so
any change to any of them (or a value added or removed) since it was read is seen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from celltrial.catalogue import TestDefinition, load_catalogue
from celltrial.errors import DataError, UnitError
from celltrial.ingest import values as parsed_values
from celltrial.services.editing import (
    apply_changes,
    check_reason,
    find_study_record,
    refusing_lost_updates,
)
from celltrial.services.errors import EditConflict
from celltrial.services.infusions import find_subject
from celltrial.store.database import study_session
from celltrial.store.models import AuditEvent, Observation, Subject
from celltrial.study import StudyHandle
from celltrial.units import convert

#: Form field -> catalogue test code, in the order a bedside round is taken.
VITAL_FIELDS: dict[str, str] = {
    "temperature": "TEMP",
    "heart_rate": "HR",
    "systolic_bp": "SYSBP",
    "diastolic_bp": "DIABP",
    "respiratory_rate": "RESP",
    "spo2": "SPO2",
    "fio2": "FIO2",
}
#: What each field is called in messages and on the form.
FIELD_LABELS: dict[str, str] = {
    "temperature": "temperature",
    "heart_rate": "heart rate",
    "systolic_bp": "systolic blood pressure",
    "diastolic_bp": "diastolic blood pressure",
    "respiratory_rate": "respiratory rate",
    "spo2": "SpO2",
    "fio2": "FiO2",
}
#: Units a field may be entered in (the first is the default); every other field is entered in
#: its catalogue unit. Values are converted to the catalogue unit (``celltrial.units``).
ENTRY_UNITS: dict[str, tuple[str, ...]] = {"temperature": ("degC", "degF"), "fio2": ("1", "%")}
#: How units are shown.
UNIT_LABELS: dict[str, str] = {
    "degC": "°C",
    "degF": "°F",
    "1": "fraction",
    "%": "%",
    "/min": "/min",
    "mmHg": "mmHg",
}
SOURCE = "web: vital signs entry"
#: A time this far in the future is a typing error, not a measurement.
CLOCK_SKEW = timedelta(minutes=10)
#: Canonical values are kept to this many decimals (unit conversion leaves float noise).
DECIMALS = 6

Number = float | str | None


@dataclass(frozen=True)
class Measurement:
    """One value as entered and converted: what an observation row stores."""

    raw_value: str
    raw_unit: str
    value: float
    unit: str


@dataclass(frozen=True)
class VitalSignsEntry:
    """What the nurse or coordinator enters: a time and any of the values (text or numbers)."""

    time: datetime
    temperature: Number = None
    temperature_unit: str = "degC"
    heart_rate: Number = None
    systolic_bp: Number = None
    diastolic_bp: Number = None
    respiratory_rate: Number = None
    spo2: Number = None
    fio2: Number = None
    fio2_unit: str = "1"


@dataclass(frozen=True)
class VitalValue:
    """One stored value of a round."""

    id: int
    field: str
    test: str
    value: float | None
    unit: str | None
    raw_value: str | None
    raw_unit: str | None
    version: int


@dataclass(frozen=True)
class VitalSignsRecord:
    """A stored round: canonical values by field, each stored value, and the round's version."""

    id: int
    subject_code: str
    time: datetime
    temperature: float | None
    heart_rate: float | None
    systolic_bp: float | None
    diastolic_bp: float | None
    respiratory_rate: float | None
    spo2: float | None
    fio2: float | None
    values: tuple[VitalValue, ...]
    version: str
    source: str | None


def _unit_label(unit: str) -> str:
    return UNIT_LABELS.get(unit, unit)


def _with_unit(number: str, unit: str) -> str:
    """A number with its unit as people write it: 38 °C, 88/min, 0.4 (a fraction: no unit)."""
    if unit == "1":
        return number
    if unit.startswith("/"):
        return f"{number}{unit}"
    return f"{number} {_unit_label(unit)}"


def _plausible(value: float, definition: TestDefinition) -> bool:
    low, high = definition.plausible
    return low <= value <= high


def parse_measurement(
    field: str, code: str, value: Number, unit: str | None = None
) -> Measurement | None:
    """``value`` (text as typed, or a number) in ``unit`` converted to the catalogue unit of
    ``code``; None when blank. :class:`DataError` naming ``field`` when it is not a number, not
    convertible, or outside the catalogue's plausible range (with a hint when it would be
    plausible in another unit the field accepts)."""
    definition = load_catalogue().get(code)
    label = FIELD_LABELS.get(field, field.replace("_", " "))
    if value is None:
        return None
    # a number as people write it (40, not 40.0); text exactly as typed
    integral = isinstance(value, float) and value.is_integer() and abs(value) < 1e15
    text = str(int(value)) if integral else str(value).strip()
    unit = unit or definition.unit
    allowed = ENTRY_UNITS.get(field, (definition.unit,))
    if unit not in allowed:
        expected = " or ".join(_unit_label(u) for u in allowed)
        raise DataError(f"{label}: unit {unit!r} — expected {expected}")
    parsed = parsed_values.parse_values(pd.Series([text], dtype=object)).iloc[0]
    if parsed["status"] == parsed_values.EMPTY:
        return None
    if parsed["status"] != parsed_values.OK or parsed["qualifier"]:
        raise DataError(f"{label}: {text!r} is not a measured number (e.g. 37.8 or 37,8)")
    number = float(parsed["value"])
    try:
        canonical = round(float(convert(number, unit, definition.unit)), DECIMALS)
    except UnitError as exc:  # a packaging error of ENTRY_UNITS; say where
        raise DataError(f"{label}: {exc}") from None
    if not math.isfinite(canonical) or not _plausible(canonical, definition):
        low, high = definition.plausible
        expected = _with_unit(f"{low:g}–{high:g}", definition.unit)
        if definition.unit == "1":
            expected = f"a fraction, {expected}"
        message = (
            f"{label}: {_with_unit(text, unit)} is not plausible for {definition.name.lower()} "
            f"(expected {expected}); check the value and its unit"
        )
        for other in allowed:
            if other == unit:
                continue
            again = float(convert(number, other, definition.unit))
            if math.isfinite(again) and _plausible(again, definition):
                message += f" — was it in {_unit_label(other)}? Then choose {_unit_label(other)}"
        raise DataError(message)
    return Measurement(raw_value=text, raw_unit=unit, value=canonical, unit=definition.unit)


def _measure(entry: VitalSignsEntry) -> dict[str, Measurement | None]:
    """Every field of ``entry`` parsed; :class:`DataError` listing every problem found."""
    problems: list[str] = []
    measured: dict[str, Measurement | None] = {}
    for field, code in VITAL_FIELDS.items():
        unit = getattr(entry, f"{field}_unit", None)
        try:
            measured[field] = parse_measurement(field, code, getattr(entry, field), unit)
        except DataError as exc:
            problems.append(str(exc))
            measured[field] = None
    if entry.time.tzinfo is None:
        problems.append("time: needs a time zone")
    elif entry.time > datetime.now(UTC) + CLOCK_SKEW:
        problems.append("time: is in the future")
    systolic, diastolic = measured["systolic_bp"], measured["diastolic_bp"]
    if systolic is not None and diastolic is not None and diastolic.value >= systolic.value:
        problems.append(
            f"diastolic blood pressure: {diastolic.value:g} mmHg is not below the systolic "
            f"{systolic.value:g} mmHg (are the two swapped?)"
        )
    if not problems and all(m is None for m in measured.values()):
        problems.append("enter at least one value")
    if problems:
        raise DataError("vital signs: " + "; ".join(problems))
    return measured


def _token(rows: list[Observation]) -> str:
    """The version of a round: id.version of each of its values."""
    return "-".join(f"{r.id}.{r.version}" for r in sorted(rows, key=lambda r: r.id))


#: What :func:`_record` reads of each observation.
_RECORD_COLUMNS = (
    "id",
    "time",
    "test",
    "value",
    "unit",
    "raw_value",
    "raw_unit",
    "version",
    "source",
)
_FIELD_OF = {code: field for field, code in VITAL_FIELDS.items()}
_ORDER = {code: i for i, code in enumerate(VITAL_FIELDS.values())}


def _record(rows: list[Observation], subject_code: str) -> VitalSignsRecord:
    """A round from its observations (ORM objects or rows of :data:`_RECORD_COLUMNS`)."""
    rows = sorted(rows, key=lambda r: r.id)
    values = tuple(
        VitalValue(
            id=r.id,
            field=_FIELD_OF[r.test],
            test=r.test,
            value=r.value,
            unit=r.unit,
            raw_value=r.raw_value,
            raw_unit=r.raw_unit,
            version=r.version,
        )
        for r in sorted(rows, key=lambda r: _ORDER[r.test])
    )
    canonical = {v.field: v.value for v in values}
    return VitalSignsRecord(
        id=rows[0].id,
        subject_code=subject_code,
        time=rows[0].time,
        **{field: canonical.get(field) for field in VITAL_FIELDS},
        values=values,
        version=_token(rows),
        source=rows[0].source,
    )


def _at(session: Session, subject_id: int, when: datetime) -> list[Observation]:
    return list(
        session.scalars(
            select(Observation).where(
                Observation.subject_id == subject_id,
                Observation.time == when,
                Observation.test.in_(VITAL_FIELDS.values()),
            )
        )
    )


def _new_row(subject_id: int, when: datetime, code: str, m: Measurement) -> Observation:
    return Observation(
        subject_id=subject_id,
        time=when,
        test=code,
        raw_value=m.raw_value,
        raw_unit=m.raw_unit,
        value=m.value,
        unit=m.unit,
        qualifier="",
        specimen=load_catalogue().get(code).specimen,
        source=SOURCE,
    )


def _local(when: datetime, study: StudyHandle) -> str:
    return f"{when.astimezone(study.protocol.study.zone):%Y-%m-%d %H:%M}"


def _check_free(
    session: Session, study: StudyHandle, subject: Subject, when: datetime, own: set[int]
) -> None:
    """:class:`DataError` when another round of the subject is recorded at ``when``."""
    taken = [r for r in _at(session, subject.id, when) if r.id not in own]
    if taken:
        fields_taken = ", ".join(
            FIELD_LABELS[f] for f, c in VITAL_FIELDS.items() if c in {r.test for r in taken}
        )
        raise DataError(
            f"vital signs: subject {subject.code} already has vital signs at "
            f"{_local(when, study)} ({fields_taken}); edit that round instead"
        )


def record_vital_signs(
    study: StudyHandle, subject_code: str, entry: VitalSignsEntry, *, user: str
) -> VitalSignsRecord:
    """Store a new round (one audited insert per value)."""
    measured = _measure(entry)
    with study_session(study.engine, user=user, reason="vital signs recorded") as session:
        subject = find_subject(session, study, subject_code)
        _check_free(session, study, subject, entry.time, set())
        rows = [
            _new_row(subject.id, entry.time, VITAL_FIELDS[field], m)
            for field, m in measured.items()
            if m is not None
        ]
        session.add_all(rows)
        session.flush()
        return _record(rows, subject.code)


def _find(session: Session, study: StudyHandle, round_id: int) -> tuple[Observation, Subject]:
    return find_study_record(
        session,
        study,
        Observation,
        round_id,
        "vital signs",
        Observation.test.in_(VITAL_FIELDS.values()),
    )


def _conflict(session: Session, ids: set[int], what: str) -> None:
    """:class:`EditConflict` naming the last change to the round since it was read."""
    change = session.scalar(
        select(AuditEvent)
        .where(
            AuditEvent.table_name == "observation",
            AuditEvent.row_id.in_([str(i) for i in ids]),
        )
        .order_by(AuditEvent.id.desc())
        .limit(1)
    )
    by = f" by {change.user} at {change.time:%Y-%m-%d %H:%M} UTC" if change is not None else ""
    raise EditConflict(
        f"{what} were changed{by} after you opened them. Your changes were not saved: reload "
        "the page, check the current values and enter your change again."
    )


def _ids_of(version: str) -> set[int]:
    ids = set()
    for part in version.split("-"):
        head = part.split(".")[0]
        if head.isdigit():
            ids.add(int(head))
    return ids


def edit_vital_signs(
    study: StudyHandle,
    round_id: int,
    entry: VitalSignsEntry,
    *,
    version: str,
    reason: str,
    user: str,
) -> VitalSignsRecord:
    """Change a saved round: values changed, added or cleared (an audited update, insert or
    delete each), or its time; needs a reason and the version the user saw."""
    reason = check_reason(reason)
    with (
        refusing_lost_updates("the vital signs were"),
        study_session(study.engine, user=user, reason=reason) as session,
    ):
        anchor, subject = _find(session, study, round_id)  # not found before the values' checks
        measured = _measure(entry)
        rows = _at(session, subject.id, anchor.time)
        what = f"vital signs of {subject.code} at {_local(anchor.time, study)}"
        current = _token(rows)
        if current != version:
            _conflict(session, {r.id for r in rows} | _ids_of(version), what)
        if entry.time != anchor.time:
            _check_free(session, study, subject, entry.time, {r.id for r in rows})
        by_test = {r.test: r for r in rows}
        kept: list[Observation] = []
        for field, code in VITAL_FIELDS.items():
            m, row = measured[field], by_test.get(code)
            if m is None:
                if row is not None:
                    session.delete(row)
                continue
            if row is None:
                row = _new_row(subject.id, entry.time, code, m)
                session.add(row)
            else:
                changes: dict[str, object] = {"time": entry.time}
                if row.value is None or not math.isclose(row.value, m.value, rel_tol=1e-9):
                    changes |= {
                        "raw_value": m.raw_value,
                        "raw_unit": m.raw_unit,
                        "value": m.value,
                        "unit": m.unit,
                        "qualifier": "",
                        "flags": None,
                    }
                apply_changes(row, changes)
            kept.append(row)
        session.flush()
        return _record(kept, subject.code)


def read_vital_signs(study: StudyHandle, round_id: int) -> VitalSignsRecord:
    """The round that observation ``round_id`` belongs to."""
    with study_session(study.engine, user="read") as session:
        anchor, subject = _find(session, study, round_id)
        return _record(_at(session, subject.id, anchor.time), subject.code)


def list_vital_signs(study: StudyHandle, subject_code: str) -> list[VitalSignsRecord]:
    """Every round of the subject (bedside entries and imported values), oldest first."""
    with study_session(study.engine, user="read") as session:
        return subject_vital_signs(session, find_subject(session, study, subject_code))


def subject_vital_signs(session: Session, subject: Subject) -> list[VitalSignsRecord]:
    """Every round of the subject, oldest first (within a session of the caller's)."""
    # the columns a record shows, as plain rows (loading ORM objects costs more than all the
    # rest of the listing)
    rows = session.execute(
        select(*(getattr(Observation, c) for c in _RECORD_COLUMNS))
        .where(
            Observation.subject_id == subject.id,
            Observation.test.in_(VITAL_FIELDS.values()),
        )
        .order_by(Observation.time, Observation.id)
    )
    rounds: dict[datetime, list[Observation]] = {}
    for row in rows:
        rounds.setdefault(row.time, []).append(row)
    return [_record(group, subject.code) for group in rounds.values()]


def form_values(record: VitalSignsRecord) -> dict[str, str]:
    """The values of a round as its edit form shows them: the text as entered when it was
    entered in a unit the form offers, else the canonical value."""
    out: dict[str, str] = {}
    for value in record.values:
        offered = ENTRY_UNITS.get(value.field, (value.unit,))
        if value.raw_unit in offered and value.raw_value:
            out[value.field] = value.raw_value
            if value.field in ENTRY_UNITS:
                out[f"{value.field}_unit"] = value.raw_unit
        elif value.value is not None:
            out[value.field] = f"{value.value:g}"
    return out


#: Short names on the subject's timeline.
TIMELINE_NAMES: dict[str, str] = {
    "temperature": "T",
    "heart_rate": "HR",
    "systolic_bp": "SBP",
    "diastolic_bp": "DBP",
    "respiratory_rate": "RR",
    "spo2": "SpO2",
    "fio2": "FiO2",
}


def summarize_vital_days(
    observations: pd.DataFrame, *, zone: ZoneInfo | str
) -> list[dict[str, Any]]:
    """Timeline items of one subject's vital signs (a frame of
    :data:`celltrial.frames.OBSERVATION_COLUMNS`): one a calendar day, with the day's value, or
    its range when there were several rounds."""
    codes = list(VITAL_FIELDS.values())
    vitals = observations[observations["test"].isin(codes)].dropna(subset=["time", "value"])
    if vitals.empty:
        return []
    vitals = vitals.assign(_day=vitals["time"].dt.tz_convert(zone).dt.date)
    days = vitals.groupby("_day", sort=True).agg(first=("time", "min"), rounds=("time", "nunique"))
    # the study day of the day's first row (a missing one stays missing)
    first_rows = vitals.drop_duplicates("_day").set_index("_day")["study_day"]
    days["study_day"] = first_rows.reindex(days.index)
    ranges = vitals.groupby(["_day", "test"], sort=False)["value"].agg(["min", "max"])
    pieces: dict[Any, list[str]] = {day: [] for day in days.index}
    order = {code: i for i, code in enumerate(codes)}
    for (day, code), low, high in sorted(
        zip(ranges.index, ranges["min"], ranges["max"], strict=True),
        key=lambda item: order[item[0][1]],
    ):
        shown = f"{low:g}" if low == high else f"{low:g}–{high:g}"
        unit = load_catalogue().get(code).unit
        text = shown if unit == "1" else _with_unit(shown, unit)
        pieces[day].append(f"{TIMELINE_NAMES[_FIELD_OF[code]]} {text}")
    return [
        {
            "time": first.to_pydatetime(),
            "day": None if pd.isna(study_day) else int(study_day),
            "kind": "vital signs",
            "text": f"{rounds} round{'s' if rounds > 1 else ''}: " + ", ".join(pieces[day]),
        }
        for day, first, rounds, study_day in zip(
            days.index, days["first"], days["rounds"], days["study_day"], strict=True
        )
    ]


#: The form field of each vital-sign test code.
_FIELD_OF = {code: field for field, code in VITAL_FIELDS.items()}
