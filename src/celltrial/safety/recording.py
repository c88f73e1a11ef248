"""Record adverse events one by one or import them from a CSV file, through the audited path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from celltrial.errors import DataError
from celltrial.ingest.tables import read_csv_table
from celltrial.ingest.times import parse_time
from celltrial.safety.events import check_adverse_events
from celltrial.store.audit import add_batch_rows, begin_batch, file_sha256, finish_batch
from celltrial.store.models import AdverseEvent, ImportBatch, Subject

#: Columns of an adverse-event CSV file (times ISO 8601 with offset, or local in the study zone).
AE_FILE_COLUMNS = (
    "subject_id",
    "term",
    "onset",
    "resolved",
    "grade",
    "serious",
    "serious_criteria",
    "relatedness",
    "expected",
    "action",
    "outcome",
    "description",
)
REQUIRED = ("subject_id", "term", "onset")
_TRUE = {"true", "yes", "y", "1"}
_FALSE = {"false", "no", "n", "0", ""}


def _subject_ids(session: Session, study_id: str) -> dict[str, int]:
    statement = select(Subject.code, Subject.id).where(
        Subject.study_id == study_id, Subject.cohort.is_(None)
    )
    return dict(session.execute(statement).all())


def _event_row(event: dict[str, Any], subject_id: int) -> dict[str, Any]:
    def clean(value: Any) -> Any:
        if value is None or (not isinstance(value, str) and pd.isna(value)):
            return None
        return value.to_pydatetime() if isinstance(value, pd.Timestamp) else value

    return {
        "subject_id": subject_id,
        "term": event["term"].strip(),
        "description": clean(event.get("description")),
        "onset_at": clean(event["onset"]),
        "resolved_at": clean(event.get("resolved")),
        "grade": None if clean(event.get("grade")) is None else int(event["grade"]),
        "serious": bool(event.get("serious") or False),
        "serious_criteria": clean(event.get("serious_criteria")),
        "relatedness": clean(event.get("relatedness")),
        "expected": clean(event.get("expected")),
        "action": clean(event.get("action")),
        "outcome": clean(event.get("outcome")),
    }


def record_adverse_event(session: Session, study_id: str, event: dict[str, Any]) -> AdverseEvent:
    """Check one AE (keys as in :data:`AE_FILE_COLUMNS`) and add it; audited as an insert."""
    check_adverse_events(pd.DataFrame([event]), source="adverse event")
    ids = _subject_ids(session, study_id)
    if event["subject_id"] not in ids:
        raise DataError(f"adverse event: unknown subject {event['subject_id']!r}")
    row = AdverseEvent(**_event_row(event, ids[event["subject_id"]]))
    session.add(row)
    session.flush()
    return row


def read_adverse_events_csv(path: str | Path, *, zone: str) -> pd.DataFrame:
    """Read an AE file; times without an offset are taken as local times in ``zone``."""
    path = Path(path)
    raw = read_csv_table(path, what="adverse-event file", dtype=str, keep_default_na=False)
    raw.columns = [c.strip().lower() for c in raw.columns]
    missing = [c for c in REQUIRED if c not in raw.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(missing)}; expected columns: "
            f"{', '.join(AE_FILE_COLUMNS)}"
        )
    unknown = [c for c in raw.columns if c not in AE_FILE_COLUMNS]
    if unknown:
        raise DataError(
            f"{path}: unknown column(s) {', '.join(unknown)}; expected columns: "
            f"{', '.join(AE_FILE_COLUMNS)}"
        )
    problems: list[str] = []
    frame = pd.DataFrame({c: raw[c].str.strip() if c in raw else "" for c in AE_FILE_COLUMNS})
    for column in ("onset", "resolved"):
        frame[column] = [
            _parse_time(v, zone, problems, row, column)
            for row, v in enumerate(frame[column], start=2)
        ]
    frame["grade"] = [_parse_int(v, problems, row) for row, v in enumerate(frame["grade"], start=2)]
    for column in ("serious", "expected"):
        frame[column] = [
            _parse_bool(v, problems, row, column) for row, v in enumerate(frame[column], start=2)
        ]
    for column in ("serious_criteria", "relatedness", "action", "outcome", "description"):
        frame[column] = frame[column].replace("", None)
    if problems:
        raise DataError(
            f"{path}: {len(problems)} problem(s):\n" + "\n".join(f"  - {p}" for p in problems)
        )
    frame["serious"] = frame["serious"].fillna(False)
    return frame


def import_adverse_events(
    session: Session, study_id: str, path: str | Path, *, zone: str
) -> ImportBatch | None:
    """Import an AE file all-or-nothing; events already stored (same subject, term, onset) are
    skipped, so importing a file twice adds nothing. Returns the batch, or None if nothing new."""
    path = Path(path)
    events = read_adverse_events_csv(path, zone=zone)
    check_adverse_events(events, source=str(path))
    ids = _subject_ids(session, study_id)
    unknown = sorted(set(events["subject_id"]) - set(ids))
    if unknown:
        raise DataError(
            f"{path}: unknown subject(s) {', '.join(unknown)}; known: "
            f"{', '.join(sorted(ids)) or 'none'}"
        )
    existing = set(
        session.execute(
            select(Subject.code, AdverseEvent.term, AdverseEvent.onset_at)
            .join(Subject, AdverseEvent.subject_id == Subject.id)
            .where(Subject.study_id == study_id)
        ).all()
    )
    rows = []
    for source_row, event in enumerate(events.to_dict("records"), start=2):
        key = (event["subject_id"], event["term"].strip(), event["onset"].to_pydatetime())
        if key in existing:
            continue
        rows.append(_event_row(event, ids[event["subject_id"]]) | {"source_row": source_row})
    if not rows:
        return None
    batch = begin_batch(
        session,
        kind="adverse events",
        source=str(path),
        source_sha256=file_sha256(path),
        report={"rows": len(events), "new": len(rows), "already stored": len(events) - len(rows)},
    )
    add_batch_rows(session, batch, AdverseEvent, rows)
    finish_batch(session, batch)
    return batch


def _parse_time(
    value: str, zone: str, problems: list[str], row: int, column: str
) -> pd.Timestamp | None:
    if not value:
        if column == "onset":
            problems.append(f"row {row}, onset: empty — expected a date and time")
        return None
    try:
        return parse_time(value, zone)
    except ValueError as exc:
        problems.append(f"row {row}, {column}: {exc}")
        return None


def _parse_int(value: str, problems: list[str], row: int) -> int | None:
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        problems.append(f"row {row}, grade: {value!r} — expected a whole number 1–5")
        return None


def _parse_bool(value: str, problems: list[str], row: int, column: str) -> bool | None:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return None if column == "expected" and not text else False
    problems.append(f"row {row}, {column}: {value!r} — expected yes or no")
    return None
