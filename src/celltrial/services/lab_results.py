"""One subject's lab results as a study team reads them: by test and study day, each value with
its unit, reference range, CTCAE grade and flags, and the stored row to raise a query on.

Grades come from :func:`celltrial.safety.analysis.grade_study_labs`, the function the dashboard
and the report grade labs with (baseline-dependent terms against the subject's baseline), run
on this subject's rows only. Vital signs (catalogue category ``vital``) have their own page.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import select

from celltrial.catalogue import load_catalogue
from celltrial.labels import display_unit, value_label
from celltrial.safety.analysis import grade_study_labs
from celltrial.services.infusions import find_subject
from celltrial.services.monitoring import read_study_state, rows_of_subject
from celltrial.store.database import study_session
from celltrial.store.frames import first_infusions
from celltrial.store.models import Observation
from celltrial.study import StudyHandle
from celltrial.timeline import derive_study_day

_COLUMNS = (
    "id",
    "time",
    "test",
    "value",
    "unit",
    "raw_value",
    "raw_unit",
    "qualifier",
    "ref_low",
    "ref_high",
    "specimen",
    "source",
    "flags",
)


@dataclass(frozen=True)
class LabResult:
    """One stored lab value, graded."""

    id: int
    time: datetime
    study_day: int | None
    value: float | None
    qualifier: str
    text: str | None  # the value as received, with its unit, when it was not a number
    ref_low: float | None
    ref_high: float | None
    grade: int | None
    ctcae_term: str | None
    not_gradable: str | None  # why a value with a CTCAE term has no grade
    flags: tuple[str, ...]


@dataclass(frozen=True)
class LabTest:
    """The results of one test, oldest first."""

    code: str
    name: str
    unit: str  # as people write it (×10⁹/L, cells/µL)
    results: tuple[LabResult, ...]


def _lab_codes_excluded() -> set[str]:
    """Catalogue codes that are vital signs, not labs."""
    catalogue = load_catalogue()
    return {c for c in catalogue.codes if catalogue.get(c).category == "vital"}


def _number(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _side(row: Any) -> tuple[int | None, str | None, str | None]:
    """(grade, CTCAE term, why not gradable) of the worse side of a graded row."""
    best: tuple[int | None, str | None, str | None] = (None, None, None)
    for side in ("low", "high"):
        term = getattr(row, f"term_{side}")
        if term is None or pd.isna(term):
            continue
        grade = getattr(row, f"grade_{side}")
        if grade is not None and not pd.isna(grade):
            if best[0] is None or int(grade) > best[0]:
                best = (int(grade), str(term), None)
        elif best[0] is None and best[1] is None:
            reason = getattr(row, f"reason_{side}", None)
            text = str(reason) if reason is not None and not pd.isna(reason) else "not gradable"
            best = (None, str(term), value_label(text))
    return best


def _flags(row: Any) -> tuple[str, ...]:
    """Plain words: above/below the reference range, a value at a reporting limit, the
    validation warnings it was stored with, and a treatment-emergent abnormality."""
    flags: list[str] = []
    value, low, high = _number(row.value), _number(row.ref_low), _number(row.ref_high)
    if value is not None and high is not None and value > high:
        flags.append("high")
    if value is not None and low is not None and value < low:
        flags.append("low")
    if row.qualifier:
        flags.append(f"at a reporting limit ({row.qualifier})")
    for kind in str(row.flags or "").split(","):
        if kind.strip():
            flags.append(value_label(kind.strip()))
    if any(bool(getattr(row, f"emergent_{s}", False)) for s in ("low", "high")):
        flags.append("treatment-emergent")
    return tuple(flags)


def summarize_subject_labs(study: StudyHandle, code: str) -> list[LabTest]:
    """The subject's lab results by test (catalogue order, then unknown codes), each oldest
    first (:class:`~celltrial.services.errors.NotFound` for an unknown subject)."""
    with study_session(study.engine, user="read") as session:
        subject = find_subject(session, study, code)
        rows = session.execute(
            select(*(getattr(Observation, c) for c in _COLUMNS))
            .where(
                Observation.subject_id == subject.id,
                Observation.test.not_in(_lab_codes_excluded()),
            )
            .order_by(Observation.time, Observation.id)
        ).all()
    if not rows:
        return []
    frame = pd.DataFrame([tuple(r) for r in rows], columns=list(_COLUMNS))
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    frame["qualifier"] = frame["qualifier"].fillna("")
    frame.insert(0, "subject_id", code)
    state = read_study_state(study)
    infusions = rows_of_subject(state.frames.infusions, code)
    frame = derive_study_day(frame, first_infusions(infusions), study.protocol.study.zone)
    graded = grade_study_labs(
        study.protocol, replace(state.frames, observations=frame, infusions=infusions)
    )
    catalogue = load_catalogue()
    order = {c: i for i, c in enumerate(catalogue.codes)}
    tests: list[LabTest] = []
    for test, group in sorted(
        graded.groupby("test", sort=False), key=lambda g: (order.get(g[0], len(order)), g[0])
    ):
        results = []
        for row in group.itertuples(index=False):
            grade, term, why = _side(row)
            value = _number(row.value)
            text = None
            if value is None and row.raw_value:
                text = f"{row.raw_value} {row.raw_unit or ''}".strip()
            day = row.study_day
            results.append(
                LabResult(
                    id=int(row.id),
                    time=row.time.to_pydatetime(),
                    study_day=None if pd.isna(day) else int(day),
                    value=value,
                    qualifier=row.qualifier or "",
                    text=text,
                    ref_low=_number(row.ref_low),
                    ref_high=_number(row.ref_high),
                    grade=grade,
                    ctcae_term=term,
                    not_gradable=why,
                    flags=_flags(row),
                )
            )
        known = test in catalogue
        units = group["unit"].dropna()
        unit = catalogue.get(test).unit if known else (units.iloc[0] if len(units) else "")
        tests.append(
            LabTest(
                code=str(test),
                name=catalogue.get(test).name if known else str(test),
                unit=display_unit(str(unit)),
                results=tuple(results),
            )
        )
    return tests
