"""Import one file into a study: read, validate, then store all of it or nothing.

The service behind ``celltrial import``. The file is read and validated first, reading the study
only (no write lock: other users and imports can write meanwhile); then one write transaction
registers subjects, applies their facts and stores the results. Any error refuses the whole file
and stores nothing; the validation report's CSV then says "not imported" on every line.
Re-importing the same file adds nothing; a changed value becomes an audited update whose reason
names the import. Every import is an ``import_batch`` with the file's hash, the counts
and the validation report.

A dry run validates the same way and counts, reading only, what the write step would do: its
counts (new, updated, unchanged results, subjects registered) are those the real import would
report; it never takes the write lock and stores nothing (the validation report's CSV is still
written).
"""

from __future__ import annotations

import contextvars
import queue
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from sqlalchemy.orm import Session

from celltrial.errors import DataError
from celltrial.ingest.alignment import (
    check_cohort_name,
    check_something_stored,
    check_subject_codes,
)
from celltrial.ingest.columns import find_roles
from celltrial.ingest.frame import SUBJECT_FIELDS
from celltrial.ingest.layouts import detect_layout, read_source
from celltrial.ingest.long import LONG_ROLES
from celltrial.ingest.mapping import Mapping, read_mapping
from celltrial.ingest.report import (
    DRY_RUN,
    IMPORTED,
    NOT_IMPORTED,
    ValidationReport,
    describe_message,
)
from celltrial.ingest.staging import Stage, can_stage
from celltrial.ingest.storage import (
    ObservationWriter,
    codes_elsewhere,
    known_subjects,
    register_subjects,
    update_subject_facts,
)
from celltrial.ingest.subject_codes import report_new_subject_codes
from celltrial.ingest.tables import read_table
from celltrial.ingest.times import DateOrder, date_order_scope
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
    """Import ``path`` into ``study``; :class:`ImportRefused` (nothing stored) on any error.

    Two steps: the file is read and validated against the study as it stands (reading only:
    another connection can write to the study meanwhile, and a dry run never waits for or
    blocks a writer); then, when it has no errors and this is no dry run, one write
    transaction applies the subjects' facts, registers new subjects and stores the results.
    """
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
    too_long = check_cohort_name(target)
    if too_long is not None:
        raise DataError(f"{path}: {too_long}")
    result.cohort = target
    with (
        date_order_scope(DateOrder.stated(spec.date_dayfirst)),
        _open_spool(study, path, report, dry_run=dry_run, target=target) as spool,
    ):
        plan = _validate(
            study,
            path,
            spec,
            report,
            spool,
            layout=layout,
            zone=zone,
            columns=columns,
            register=register,
            target=target,
        )
        if not report.ok:
            result.report_csv = _write_report(study, path, report, report_dir, NOT_IMPORTED)
            with _reading(study) as session:
                hint = _other_cohort_hint(session, study.study_id, report.errors, target)
            raise ImportRefused(
                _refusal(path, report.errors, result.report_csv) + hint, report, result.report_csv
            )
        result.counts["subjects_updated"] = plan.facts_changed
        if dry_run:
            with _reading(study) as session:
                _store(session, _DryBatch(), plan, spool, report, result, path, dry=True)
            result.counts["subjects"] = plan.new_subjects
            result.report_csv = _write_report(study, path, report, report_dir, DRY_RUN)
            return result
        user_name = user or current_user()
        with study_session(study.engine, user=user_name, reason=reason) as session:
            if isinstance(spool, Stage):
                spool.attach(session)  # before the first write
            batch = begin_batch(
                session, kind=f"import:{layout}", source=str(path.resolve()), source_sha256=digest
            )
            result.batch_id = batch.id
            if len(plan.info):
                update_subject_facts(
                    session,
                    study.study_id,
                    plan.info,
                    cohort=target,
                    report=ValidationReport(file=str(path)),  # said in the validation step
                    zone=zone,
                )
            if plan.register is not None and len(plan.register):
                result.counts["subjects"] = register_subjects(
                    session, batch, study.study_id, plan.register, cohort=target
                )
            progress = (lambda n: on_progress(n, size)) if on_progress else None
            writer = _store(session, batch, plan, spool, report, result, path, progress=progress)
            result.report_csv = _write_report(study, path, report, report_dir, IMPORTED)
            writer.finish()
            batch.report = report.summary() | {"report_csv": str(result.report_csv)}
            batch.counts = (
                dict(batch.counts)
                | {f"results_{k}": v for k, v in report.counts.items()}
                | {k: v for k, v in result.counts.items()}
            )
            finish_batch(session, batch)
    return result


@dataclass
class _Plan:
    """What the validation step found: the file's subject facts, the subjects to register
    (None: none) and their count, how many known subjects' facts change."""

    info: pd.DataFrame
    target: str | None
    study_id: str
    register: pd.DataFrame | None = None
    new_subjects: int = 0
    facts_changed: int = 0


class _DryBatch:
    """The batch of a dry run: nothing is written, so it has no row in the database."""

    id = -1

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}


@contextmanager
def _reading(study: StudyHandle) -> Iterator[Session]:
    """A session that only reads (rolled back at the end; it never takes the write lock)."""
    session = Session(study.engine)
    try:
        yield session
    finally:
        session.rollback()
        session.close()


def _validate(
    study: StudyHandle,
    path: Path,
    spec: Mapping,
    report: ValidationReport,
    spool: _Spool,
    *,
    layout: str,
    zone: object,
    columns: dict[str, str],
    register: bool,
    target: str | None,
) -> _Plan:
    """Read and validate the whole file, reading the study only; the validated chunks go to
    ``spool`` (while the file has no errors)."""
    with _reading(study) as session:
        known = known_subjects(session, study.study_id, target)
    source = read_source(path, spec, report, layout=layout, zone=zone)
    info = _complete(source.subjects)
    plan = _Plan(info=info, target=target, study_id=study.study_id)
    subject_column = columns.get("subject", "subject")
    if len(info):
        rows = (
            info["source_row"]
            if info["source_row"].notna().all()
            else pd.Series(range(2, len(info) + 2), index=info.index)
        )
        misplaced = check_subject_codes(info["subject"], rows, report, column=subject_column)
        with _reading(study) as session:
            plan.facts_changed = update_subject_facts(
                session,
                study.study_id,
                info,
                cohort=target,
                report=report,
                zone=zone,
                apply=False,
            )
            if register and not misplaced:
                _note_codes_elsewhere(session, study.study_id, info, known, target, report)
    subjects = _as_updated(known, info, register=register)
    if register and len(info):
        plan.register = info[~info["subject"].astype(str).isin(known.index)]
    said = {"misaligned": len(info) > 0}
    kinds: dict[str, str | None] = {}  # what each subject code looks like (chunk to chunk)

    def register_new(new: pd.DataFrame) -> pd.DataFrame:
        """Plan the subjects first seen in this chunk (registered in the write step)."""
        nonlocal subjects
        with _reading(study) as session:
            _note_codes_elsewhere(session, study.study_id, new, subjects, target, report)
        fresh = _complete(new)
        plan.register = fresh if plan.register is None else pd.concat([plan.register, fresh])
        subjects = _as_updated(subjects, fresh, register=True)
        return subjects

    def check_codes(chunk: pd.DataFrame) -> None:
        if not said["misaligned"]:
            said["misaligned"] = check_subject_codes(
                chunk["subject"], chunk["source_row"], report, column=subject_column, kinds=kinds
            )

    chunks = _validated_chunks(
        source.raw,
        report,
        known=subjects,
        zone=zone,
        register=register and not source.subjects_complete,
        register_new=register_new,
        columns=columns,
        check_codes=check_codes,
    )
    for rows, known_now in chunks:
        if report.ok and len(rows):
            spool.add(rows, known_now)
    check_something_stored(report)
    if plan.register is not None:
        plan.register = plan.register.drop_duplicates("subject")
        plan.new_subjects = len(plan.register)
        report_new_subject_codes(plan.register, report, column=subject_column)
    return plan


#: The dtype of subject times while a file's facts are applied (:func:`_as_updated`).
_TIME = "datetime64[us, UTC]"


def _as_updated(known: pd.DataFrame, info: pd.DataFrame, *, register: bool) -> pd.DataFrame:
    """``known`` subjects (index code; id, admitted, start, end…) as they will be once this
    file's facts are applied (see :func:`update_subject_facts`) and, with ``register``, its
    new subjects added (with placeholder ids below 0 until they are stored)."""
    out = known.copy()
    if info.empty:
        return out
    # one dtype on both sides of every assignment below (pandas 3.0.0 refuses NaT of another
    # unit or zone into a datetime column)
    for column in ("enrolled", "admitted", "discharged", "died"):
        if column in out.columns:
            out[column] = pd.to_datetime(out[column], utc=True).astype(_TIME)
    given = info.drop_duplicates("subject").set_index(
        info.drop_duplicates("subject")["subject"].astype(str)
    )
    times = {}
    for column in ("admitted", "discharged", "died"):
        values = given[column] if column in given.columns else pd.Series(pd.NaT, index=given.index)
        times[column] = pd.to_datetime(values, utc=True).astype(_TIME)
    outcome_given = times["discharged"].notna() | times["died"].notna()
    have = given.index[given.index.isin(out.index)]
    if len(have):
        admitted = times["admitted"].reindex(have)
        out.loc[have, "admitted"] = admitted.where(admitted.notna(), out.loc[have, "admitted"])
        stated = outcome_given.reindex(have).to_numpy()
        for column in ("discharged", "died"):
            out.loc[have[stated], column] = times[column].reindex(have[stated]).array
    if register:
        fresh = given.index[~given.index.isin(out.index)]
        if len(fresh):
            start = -(len(out) + 1) if len(out) else -1
            lowest = int(out["id"].min()) if len(out) and (out["id"] < 0).any() else 0
            first = min(start, lowest - 1)
            added = pd.DataFrame(
                {
                    "id": range(first, first - len(fresh), -1),
                    "enrolled": pd.Series(pd.NaT, index=fresh, dtype="datetime64[us, UTC]"),
                    "admitted": times["admitted"].reindex(fresh),
                    "discharged": times["discharged"].reindex(fresh),
                    "died": times["died"].reindex(fresh),
                },
                index=fresh,
            )
            out = pd.concat([out, added]) if len(out) else added
    for column in ("enrolled", "admitted", "discharged", "died"):
        out[column] = pd.to_datetime(out[column], utc=True)
    out["start"] = out["enrolled"].fillna(out["admitted"])
    out["end"] = out[["discharged", "died"]].min(axis=1)
    return out


def _store(
    session: Session,
    batch: object,
    plan: _Plan,
    spool: _Spool | Stage,
    report: ValidationReport,
    result: ImportResult,
    path: Path,
    *,
    dry: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ObservationWriter:
    """Write (or, ``dry``, count) the validated chunks; the writer's messages and counts go
    into ``report`` and ``result``."""
    known = known_subjects(session, plan.study_id, plan.target)
    ids = known["id"]
    if isinstance(spool, Stage):
        spool.writer.on_progress = progress
        spool.store(session, batch, ids, path)  # type: ignore[arg-type]
        report.merge(spool.report)
        result.counts.update(spool.writer.counts)
        return spool.writer
    if dry:
        ids = _as_updated(
            known,
            plan.register
            if plan.register is not None
            else _complete(pd.DataFrame({"subject": []})),
            register=True,
        )["id"]
    stored = ValidationReport(file=str(path), counts=dict.fromkeys(report.counts, 0))
    writer = ObservationWriter(
        session, batch, stored, source=path.name, on_progress=progress, dry=dry
    )
    for rows in spool:
        missing = ~rows["subject"].astype(str).isin(ids.index)
        if missing.any():  # deleted or renamed by another user since the file was validated
            codes = sorted(rows.loc[missing, "subject"].astype(str).unique())
            raise DataError(
                f"{path}: subject(s) {', '.join(codes[:5])} changed in the study while the file "
                "was being validated; nothing was stored: import the file again"
            )
        writer.write(rows, ids)
    report.merge(stored)
    result.counts.update(writer.counts)
    return writer


def _open_spool(
    study: StudyHandle,
    path: Path,
    report: ValidationReport,
    *,
    dry_run: bool,
    target: str | None,
) -> _Spool | Stage:
    """Where the validated chunks wait for the write step: staged for storage (see
    :mod:`celltrial.ingest.staging`) when they can be, else as they are."""
    if not dry_run:
        with _reading(study) as session:
            if can_stage(session, study.study_id, target):
                counts = dict.fromkeys(report.counts, 0)
                return Stage(ValidationReport(file=str(path), counts=counts), source=path.name)
    return _Spool()


class _Spool:
    """The validated chunks of one file, between validation and storage: the first in memory,
    the others in a temporary folder (a large file's validated rows need not fit in memory)."""

    def __init__(self) -> None:
        self._first: pd.DataFrame | None = None
        self._folder: tempfile.TemporaryDirectory | None = None
        self._count = 0

    def __enter__(self) -> _Spool:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._folder is not None:
            self._folder.cleanup()
        self._first = None

    def add(self, rows: pd.DataFrame, _known: pd.DataFrame | None = None) -> None:
        if self._count == 0:
            self._first = rows
        else:
            if self._folder is None:
                self._folder = tempfile.TemporaryDirectory(prefix="celltrial-import-")
            rows.to_pickle(Path(self._folder.name) / f"{self._count}.pkl")
        self._count += 1

    def __iter__(self) -> Iterator[pd.DataFrame]:
        for index in range(self._count):
            if index == 0:
                assert self._first is not None
                yield self._first
            else:
                assert self._folder is not None
                yield pd.read_pickle(Path(self._folder.name) / f"{index}.pkl")


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
    check_codes: Callable[[pd.DataFrame], None] | None = None,
) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """(validated rows, known subjects) per chunk; the next chunk is read and validated in a
    thread while the caller stores this one (SQLite spends its time outside the GIL).

    New subjects of a chunk (``register``) are planned before it is validated, through
    ``register_new`` on the caller's thread. ``check_codes`` checks each chunk's subject
    column before it is validated (see :func:`check_subject_codes`).
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
        if check_codes is not None:
            check_codes(chunk)
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

    # the file's date order (times.date_order_scope) holds in the thread too
    context = contextvars.copy_context()
    worker = threading.Thread(
        target=context.run, args=(produce,), name="celltrial-validate", daemon=True
    )
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
    study: StudyHandle,
    path: Path,
    report: ValidationReport,
    report_dir: str | Path | None,
    status: str,
) -> Path:
    folder = Path(report_dir) if report_dir is not None else study.directory / REPORT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    return report.write_csv(folder / f"{path.stem}-{stamp}-report.csv", status=status)


def _refusal(path: Path, errors: pd.DataFrame, csv: Path | None) -> str:
    lines = [f"{path}: {len(errors)} error(s); nothing was stored."]
    for message in errors.head(10).to_dict("records"):
        lines.append(f"  {describe_message(message)}")
    if len(errors) > 10:
        lines.append(f"  … and {len(errors) - 10} more")
    if csv is not None:
        lines.append(f"Full report: {csv}")
    return "\n".join(lines)
