"""Record adverse events one by one or import them from a CSV file, through the audited path.

Both check every event against the same rules (see
:func:`celltrial.safety.events.check_adverse_events`): the vocabulary, a subject of the study, an
onset not before the subject's enrolment (without an enrolment date: not before its first
infusion), not after its death and not in the future. A file is imported all or nothing, and
every problem of it is reported at once, each on its row: the file's line, the header being line 1
(as the lab import counts them).
"""

from __future__ import annotations

import csv
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from celltrial.errors import DataError, EntryRefused
from celltrial.ingest.tables import read_csv_table
from celltrial.ingest.times import parse_time
from celltrial.safety.events import (
    AEProblem,
    adverse_event_problems,
    describe_problems,
    show_value,
)
from celltrial.store.audit import add_batch_rows, begin_batch, file_sha256, finish_batch
from celltrial.store.models import AdverseEvent, ImportBatch, Infusion, Subject

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


def _subject_dates(session: Session, study_id: str) -> pd.DataFrame:
    """The study's own subjects (index: code) with ``id``, ``enrolled``, ``first_infusion``
    (the earliest infusion start) and ``died``, as UTC times or NaT."""
    first = (
        select(Infusion.subject_id, func.min(Infusion.started_at).label("first_infusion"))
        .group_by(Infusion.subject_id)
        .subquery()
    )
    statement = (
        select(
            Subject.code, Subject.id, Subject.enrolled_at, first.c.first_infusion, Subject.died_at
        )
        .outerjoin(first, first.c.subject_id == Subject.id)
        .where(Subject.study_id == study_id, Subject.cohort.is_(None))
    )
    frame = pd.DataFrame(
        session.execute(statement).all(),
        columns=["code", "id", "enrolled", "first_infusion", "died"],
    ).set_index("code")
    for column in ("enrolled", "first_infusion", "died"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


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


def record_adverse_event(
    session: Session,
    study_id: str,
    event: dict[str, Any],
    *,
    zone: str | None = None,
    now: datetime | None = None,
    death_rules: bool = False,
) -> AdverseEvent:
    """Check one AE (keys as in :data:`AE_FILE_COLUMNS`) and add it; audited as an insert.

    :class:`DataError` listing every problem at once (the rules of the module doc); times in
    messages are shown in ``zone`` (the study's), ``now`` (default: the clock) is for tests;
    ``death_rules``: see :func:`check_adverse_event`."""
    subject_id = check_adverse_event(
        session, study_id, event, zone=zone, now=now, death_rules=death_rules
    )
    row = AdverseEvent(**_event_row(event, subject_id))
    session.add(row)
    session.flush()
    return row


def check_adverse_event(
    session: Session,
    study_id: str,
    event: dict[str, Any],
    *,
    zone: str | None = None,
    now: datetime | None = None,
    death_rules: bool = False,
) -> int:
    """Check one AE, new or edited, against the vocabulary and its subject's dates (enrolment,
    first infusion, death) and the clock; the subject's ``subject.id``, else
    :class:`~celltrial.errors.EntryRefused` listing every problem (``problems``: by field, as
    this module names them). ``death_rules`` (an event entered by hand): a grade 5 event must
    also be serious and fatal (see :func:`~celltrial.safety.events.adverse_event_problems`)."""
    subjects = _subject_dates(session, study_id)
    problems = adverse_event_problems(
        pd.DataFrame([event]),
        subjects=subjects,
        now=now or datetime.now(UTC),
        zone=zone,
        death_rules=death_rules,
    )
    if problems:
        by_field: dict[str, list[str]] = {}
        for problem in problems:
            by_field.setdefault(problem.field, []).append(problem.text)
        raise EntryRefused(describe_problems("adverse event", problems), problems=by_field)
    return int(subjects.loc[event["subject_id"], "id"])


def read_adverse_events_csv(path: str | Path, *, zone: str) -> pd.DataFrame:
    """Read an AE file; times without an offset are taken as local times in ``zone``.

    Column ``source_row`` is each event's row in the file (its line; the header is line 1).
    :class:`DataError` listing every value that cannot be read."""
    path = Path(path)
    frame, problems = _read_events(path, zone=zone)
    if problems:
        raise DataError(describe_problems(str(path), problems))
    return frame


def _read_events(path: Path, *, zone: str) -> tuple[pd.DataFrame, list[AEProblem]]:
    """The events of an AE file (with ``source_row``) and the problems of its values; a missing
    or unknown column is an error at once (the rows cannot be read without the header)."""
    raw = read_csv_table(path, what="adverse-event file", dtype=str, keep_default_na=False)
    raw.columns = [c.strip().lower() for c in raw.columns]
    missing = [c for c in REQUIRED if c not in raw.columns]
    unknown = [c for c in raw.columns if c not in AE_FILE_COLUMNS]
    if missing or unknown:
        said = [f"missing column(s) {', '.join(missing)}"] if missing else []
        said += [f"unknown column(s) {', '.join(unknown)}"] if unknown else []
        raise DataError(
            f"{path}: {'; '.join(said)}; expected columns: {', '.join(AE_FILE_COLUMNS)} "
            f"({', '.join(REQUIRED)} required)"
        )
    problems: list[AEProblem] = []
    frame = pd.DataFrame({c: raw[c].str.strip() if c in raw else "" for c in AE_FILE_COLUMNS})
    frame["source_row"] = _record_lines(path, len(frame))
    rows = frame["source_row"].tolist()
    for column in ("onset", "resolved"):
        frame[column] = [
            _parse_time(v, zone, problems, row, column)
            for row, v in zip(rows, frame[column], strict=True)
        ]
    frame["grade"] = [
        _parse_int(v, problems, row) for row, v in zip(rows, frame["grade"], strict=True)
    ]
    for column in ("serious", "expected"):
        frame[column] = [
            _parse_bool(v, problems, row, column)
            for row, v in zip(rows, frame[column], strict=True)
        ]
    for column in ("serious_criteria", "relatedness", "action", "outcome", "description"):
        frame[column] = frame[column].replace("", None)
    frame["serious"] = frame["serious"].fillna(False)
    return frame, problems


def _record_lines(path: Path, count: int) -> list[int]:
    """The line each data record of a CSV file starts on (header = line 1), counting blank
    lines and the lines of cells that hold line breaks as a text editor shows them; the record
    number + 1 should the file not read the same way twice."""
    lines: list[int] = []
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            start = 1
            for record in reader:
                if record:  # a blank line is no record (pandas skips it too)
                    lines.append(start)
                start = reader.line_num + 1
    except (OSError, UnicodeDecodeError, csv.Error):
        lines = []
    if len(lines) != count + 1:
        return list(range(2, count + 2))
    return lines[1:]


def import_adverse_events(
    session: Session,
    study_id: str,
    path: str | Path,
    *,
    zone: str,
    now: datetime | None = None,
) -> ImportBatch | None:
    """Import an AE file all-or-nothing; events already stored (same subject, term, onset) are
    skipped, so importing a file twice adds nothing. Returns the batch, or None if nothing new.

    :class:`DataError` listing every problem of the file at once, each on its row (the module
    doc's rules); ``now`` (default: the clock) is for tests."""
    path = Path(path)
    events, problems = _read_events(path, zone=zone)
    subjects = _subject_dates(session, study_id)
    checked = adverse_event_problems(
        events.drop(columns="source_row"),
        rows=events["source_row"].tolist(),
        subjects=subjects,
        now=now or datetime.now(UTC),
        zone=zone,
    )
    # a value that could not be read is reported once, not again as missing
    unread = {(p.row, p.field) for p in problems}
    problems += [p for p in checked if (p.row, p.field) not in unread]
    if problems:
        problems.sort(key=lambda p: p.row or 0)  # stable: a row's problems in field order
        raise DataError(describe_problems(str(path), problems))
    ids = subjects["id"]
    existing = set(
        session.execute(
            select(Subject.code, AdverseEvent.term, AdverseEvent.onset_at)
            .join(Subject, AdverseEvent.subject_id == Subject.id)
            .where(Subject.study_id == study_id, Subject.cohort.is_(None))
        ).all()
    )
    rows = []
    for event in events.to_dict("records"):
        key = (event["subject_id"], event["term"].strip(), event["onset"].to_pydatetime())
        if key in existing:
            continue
        source_row = int(event.pop("source_row"))
        rows.append(_event_row(event, int(ids[event["subject_id"]])) | {"source_row": source_row})
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
    value: str, zone: str, problems: list[AEProblem], row: int, column: str
) -> pd.Timestamp | None:
    if not value:
        if column == "onset":
            problems.append(AEProblem(row, column, "empty — expected the onset date and time"))
        return None
    try:
        return parse_time(value, zone)
    except ValueError:
        example = pd.Timestamp("2020-02-10 14:30", tz=zone).isoformat("T", "minutes")
        problems.append(
            AEProblem(
                row,
                column,
                f"{show_value(value)} — expected a date and time, e.g. 2020-02-10 14:30 (local "
                f"to {zone}) or {example}",
            )
        )
        return None


def _parse_int(value: str, problems: list[AEProblem], row: int) -> int | None:
    if not value:
        return None
    if re.fullmatch(r"[+-]?[0-9]{1,4}", value.strip()) is None:  # not 1_000, not 400 digits
        problems.append(
            AEProblem(row, "grade", f"{show_value(value)} — expected a whole number 1–5")
        )
        return None
    return int(value)


def _parse_bool(value: str, problems: list[AEProblem], row: int, column: str) -> bool | None:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return None if column == "expected" and not text else False
    problems.append(AEProblem(row, column, f"{show_value(value)} — expected yes or no"))
    return None
