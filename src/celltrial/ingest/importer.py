"""Import one file into a study: read, validate, then store all of it or nothing.

The service behind ``celltrial import``. One transaction: any error refuses the whole file and
stores nothing. Re-importing the same file adds nothing; a changed value becomes an audited update
whose reason names the import. Every import is an ``import_batch`` with the file's hash, the counts
and the validation report.

A dry run does all of that inside the transaction, then rolls it back: its counts (new, updated,
unchanged results, subjects registered) are those the real import would report, and nothing is
stored (the validation report's CSV is still written).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from sqlalchemy.orm import Session

from celltrial.errors import DataError
from celltrial.ingest.columns import find_roles
from celltrial.ingest.frame import SUBJECT_FIELDS
from celltrial.ingest.layouts import detect_layout, read_source
from celltrial.ingest.long import LONG_ROLES
from celltrial.ingest.mapping import Mapping, read_mapping
from celltrial.ingest.report import ValidationReport, describe_message
from celltrial.ingest.storage import (
    ObservationWriter,
    codes_elsewhere,
    known_subjects,
    register_subjects,
    update_subject_facts,
)
from celltrial.ingest.tables import read_table
from celltrial.ingest.validate import check_results
from celltrial.store.audit import begin_batch, finish_batch, source_sha256
from celltrial.store.database import current_user, study_session
from celltrial.study import StudyHandle

REPORT_DIR = "imports"


class ImportRefused(DataError):
    """The file has errors; nothing was stored. ``report`` says what and where."""

    def __init__(self, message: str, report: ValidationReport, report_csv: Path | None):
        super().__init__(message)
        self.report = report
        self.report_csv = report_csv


@dataclass
class ImportResult:
    """What an import did (or, with ``dry_run``, would do: the same counts, no batch)."""

    path: Path
    layout: str
    report: ValidationReport
    dry_run: bool
    batch_id: int | None = None
    report_csv: Path | None = None
    #: The namespace the file's subject codes were matched in: None for the study's own
    #: subjects, else the external cohort's label.
    cohort: str | None = None
    counts: dict[str, int] = field(
        default_factory=lambda: {
            "inserted": 0,
            "updated": 0,
            "unchanged": 0,
            "subjects": 0,
            "subjects_updated": 0,
        }
    )


def import_file(
    study: StudyHandle,
    path: str | Path,
    *,
    mapping: str | Path | None = None,
    dry_run: bool = False,
    register: bool = False,
    cohort: str | None = None,
    user: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    report_dir: str | Path | None = None,
) -> ImportResult:
    """Import ``path`` into ``study``; :class:`ImportRefused` (nothing stored) on any error."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"no file {path}")
    spec = read_mapping(mapping)
    zone = spec.timezone or study.protocol.study.timezone
    layout = detect_layout(path, spec)
    digest = source_sha256(path)
    report = ValidationReport(file=str(path))
    result = ImportResult(path=path, layout=layout, report=report, dry_run=dry_run)
    reason = f"import of {path.name} (sha256 {digest[:12]})"
    size = path.stat().st_size if path.is_file() else 0
    columns = _column_roles(path, spec, layout)
    target = target_cohort(path, register=register, cohort=cohort)
    result.cohort = target
    with study_session(study.engine, user=user or current_user(), reason=reason) as session:
        # a dry run goes the same way as the import, then rolls it back: the same counts
        batch = begin_batch(
            session, kind=f"import:{layout}", source=str(path.resolve()), source_sha256=digest
        )
        if not dry_run:
            result.batch_id = batch.id
        known = known_subjects(session, study.study_id, target)
        source = read_source(path, spec, report, layout=layout, zone=zone)
        info = _complete(source.subjects)
        if len(info):
            result.counts["subjects_updated"] = update_subject_facts(
                session, study.study_id, info, cohort=target, report=report, zone=zone
            )
        if register and len(info):
            _note_codes_elsewhere(session, study.study_id, info, known, target, report)
            result.counts["subjects"] = register_subjects(
                session, batch, study.study_id, info, cohort=target
            )
            known = known_subjects(session, study.study_id, target)
        # the writer reports into a report of its own: validation of the next chunk runs in a
        # thread meanwhile and fills ``report``; the two are merged once the file is through
        stored = ValidationReport(file=str(path), counts=dict.fromkeys(report.counts, 0))
        writer = ObservationWriter(
            session,
            batch,
            stored,
            source=path.name,
            on_progress=(lambda n: on_progress(n, size)) if on_progress else None,
        )

        def register_new(new: pd.DataFrame) -> pd.DataFrame:
            """Register subjects first seen in this chunk (database: this thread only)."""
            _note_codes_elsewhere(session, study.study_id, new, known, target, report)
            result.counts["subjects"] += register_subjects(
                session, batch, study.study_id, _complete(new), cohort=target
            )
            return known_subjects(session, study.study_id, target)

        chunks = _validated_chunks(
            source.raw,
            report,
            known=known,
            zone=zone,
            register=register and not source.subjects_complete,
            register_new=register_new,
            columns=columns,
        )
        for rows, known in chunks:
            if report.ok and len(rows):
                writer.write(rows, known["id"])
        report.merge(stored)
        result.counts.update(writer.counts)
        result.report_csv = _write_report(study, path, report, report_dir)
        if not report.ok:
            hint = _other_cohort_hint(session, study.study_id, report.errors, target)
            session.rollback()
            errors = report.errors
            raise ImportRefused(
                _refusal(path, errors, result.report_csv) + hint, report, result.report_csv
            )
        if dry_run:
            session.rollback()  # nothing stored; the counts are those of the real import
            return result
        writer.finish()
        batch.report = report.summary() | {"report_csv": str(result.report_csv)}
        batch.counts = (
            dict(batch.counts)
            | {f"results_{k}": v for k, v in report.counts.items()}
            | {k: v for k, v in result.counts.items()}
        )
        finish_batch(session, batch)
    return result


def target_cohort(path: Path, *, register: bool, cohort: str | None) -> str | None:
    """The namespace an import matches (and registers) subject codes in: external cohort
    ``cohort``; with ``register`` and no cohort given, the external cohort named after the
    file; else (or with ``cohort`` empty) the study's own subjects (None)."""
    if cohort is not None:
        return cohort.strip() or None
    return path.stem if register else None


def _note_codes_elsewhere(
    session: Session,
    study_id: str,
    info: pd.DataFrame,
    known: pd.DataFrame,
    target: str | None,
    report: ValidationReport,
) -> None:
    """Warn when codes about to be registered in ``target`` also name patients of another
    namespace: they become new patients (codes are per cohort), which the reader should see."""
    fresh = info.drop_duplicates("subject")
    fresh = fresh[~fresh["subject"].astype(str).isin(known.index)]
    elsewhere = codes_elsewhere(session, study_id, fresh["subject"].astype(str).tolist(), target)
    rows = (
        fresh.set_index(fresh["subject"].astype(str))["source_row"].dropna().astype(int)
        if "source_row" in fresh.columns
        else pd.Series(dtype=int)
    )
    here = _namespace_name(target)
    for where, codes in elsewhere.items():
        report.add(
            "warning",
            "subject_in_other_cohort",
            row=[rows.get(c) for c in codes],
            column="subject",
            value=codes,
            expected=f"a new patient of {here}; the same code names a patient of "
            f"{_namespace_name(where)}, who is not changed",
        )


def _namespace_name(cohort: str | None) -> str:
    return "the study's own subjects" if cohort is None else f"external cohort '{cohort}'"


def _other_cohort_hint(
    session: Session, study_id: str, errors: pd.DataFrame, target: str | None
) -> str:
    """For a file refused for unknown subjects: where those codes are, when another namespace
    holds them (the file was probably meant for it)."""
    unknown = errors[errors["kind"] == "unknown_subject"]["value"].dropna().astype(str)
    elsewhere = codes_elsewhere(session, study_id, sorted(set(unknown)), target)
    lines = []
    for where, codes in elsewhere.items():
        shown = ", ".join(codes[:8]) + (f" and {len(codes) - 8} more" if len(codes) > 8 else "")
        option = f"--cohort {where}" if where is not None else "--cohort ''"
        lines.append(
            f"\nSubjects {shown} are not in {_namespace_name(target)} but in "
            f"{_namespace_name(where)}: to import into those patients, add {option}."
        )
    return "".join(lines)


def _column_roles(path: Path, mapping: Mapping, layout: str) -> dict[str, str]:
    """The file's column, as written in it, of the roles a problem may point at: subject,
    time, test and unit in a long file; subject and time in a wide one (its tests and units are
    in the result columns' headers); none for REDCap and FHIR (each result's own column)."""
    if layout not in ("long", "wide") or not path.is_file():
        return {}
    header = [str(c) for c in read_table(path, sheet=mapping.sheet, what="lab file", nrows=0)]
    if layout == "long":
        roles = find_roles(header, mapping, LONG_ROLES)
        wanted: tuple[str, ...] = ("subject", "time", "test", "unit")
    else:
        roles = find_roles(header, mapping, ("subject", "time"))
        wanted = ("subject", "time")
    return {role: roles[role] for role in wanted if role in roles}


def _chunks(raw: pd.DataFrame | Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    if isinstance(raw, pd.DataFrame):
        yield raw
    else:
        yield from raw


#: Validate the next chunk of a large file in a thread while this one is stored.
VALIDATE_AHEAD = True


def _validated_chunks(
    raw: pd.DataFrame | Iterator[pd.DataFrame],
    report: ValidationReport,
    *,
    known: pd.DataFrame,
    zone: object,
    register: bool,
    register_new: Callable[[pd.DataFrame], pd.DataFrame],
    columns: dict[str, str] | None = None,
) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """(validated rows, known subjects) per chunk; the next chunk is read and validated in a
    thread while the caller stores this one (SQLite spends its time outside the GIL).

    New subjects of a chunk (``register``) are registered before it is validated, through
    ``register_new`` on the caller's thread, which owns the database session.
    """

    def with_chunk(subjects: pd.DataFrame, chunk: pd.DataFrame, ask: Callable) -> pd.DataFrame:
        """The known subjects once the chunk's new ones are registered (``ask``); None when
        registering failed on the caller's thread."""
        if not register:
            return subjects
        codes = chunk["subject"].dropna().astype(str).unique()
        new = pd.DataFrame({"subject": codes[~pd.Index(codes).isin(subjects.index)]})
        if not len(new):
            return subjects
        return ask(new)

    def check(chunk: pd.DataFrame, subjects: pd.DataFrame) -> pd.DataFrame:
        return check_results(chunk, report, subjects=subjects, zone=zone, columns=columns)

    if isinstance(raw, pd.DataFrame) or not VALIDATE_AHEAD:  # one chunk: nothing to overlap
        subjects = known
        for chunk in _chunks(raw):
            subjects = with_chunk(subjects, chunk, register_new)
            yield check(chunk, subjects), subjects
        return
    results: queue.Queue = queue.Queue(maxsize=1)
    requests: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()

    def put(item: tuple) -> None:
        while not stop.is_set():
            try:
                results.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def ask_caller(new: pd.DataFrame) -> pd.DataFrame | None:
        put(("register", new))
        return requests.get()

    def produce() -> None:
        subjects = known
        try:
            for chunk in _chunks(raw):
                if stop.is_set():
                    return
                subjects = with_chunk(subjects, chunk, ask_caller)
                if subjects is None:
                    return
                rows = check(chunk, subjects)
                put(("rows", (rows, subjects)))
            put(("done", None))
        except BaseException as exc:  # re-raised on the caller's thread
            put(("error", exc))

    worker = threading.Thread(target=produce, name="celltrial-validate", daemon=True)
    worker.start()
    try:
        while True:
            kind, item = results.get()
            if kind == "register":
                try:
                    requests.put(register_new(item))
                except BaseException:
                    requests.put(None)
                    raise
            elif kind == "rows":
                yield item
            elif kind == "error":
                raise item
            else:
                return
    finally:
        stop.set()
        worker.join()


def _complete(info: pd.DataFrame) -> pd.DataFrame:
    out = info.copy()
    for column in (*SUBJECT_FIELDS, "source_row"):
        if column not in out.columns:
            out[column] = None
    return out


def _write_report(
    study: StudyHandle, path: Path, report: ValidationReport, report_dir: str | Path | None
) -> Path:
    folder = Path(report_dir) if report_dir is not None else study.directory / REPORT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    return report.write_csv(folder / f"{path.stem}-{stamp}-report.csv")


def _refusal(path: Path, errors: pd.DataFrame, csv: Path | None) -> str:
    lines = [f"{path}: {len(errors)} error(s); nothing was stored."]
    for message in errors.head(10).to_dict("records"):
        lines.append(f"  {describe_message(message)}")
    if len(errors) > 10:
        lines.append(f"  … and {len(errors) - 10} more")
    if csv is not None:
        lines.append(f"Full report: {csv}")
    return "\n".join(lines)
