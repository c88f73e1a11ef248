"""Import page and API: upload a lab or vital-sign file, review its dry run, confirm or cancel.

The flow, over :func:`celltrial.ingest.importer.import_file` (the service behind
``celltrial import``):

1. upload (``POST /imports``, ``POST /api/v1/uploads``): the file, an optional mapping YAML and an
   optional REDCap data dictionary are staged under ``<study>/uploads/<token>/source/`` (size
   limit, sanitised names; a workbook of more cells than :data:`MAX_UPLOAD_CELLS` refused before
   it is parsed), then validated as a dry run: nothing is stored (``celltrial serve``: in a worker
   process, :mod:`celltrial.web.dry_runs`, as is the import of a confirmed upload);
2. review (``GET /imports/<token>``): the validation report grouped by kind, each message with its
   file, row, column, value and what was expected;
3. confirm (``POST /imports/<token>/confirm``): the all-or-nothing import, one transaction, one
   import batch; or cancel (``POST /imports/<token>/cancel``): the staged files are deleted.

A staged upload belongs to the session that uploaded it (another session, even of the same user,
gets 404) and expires after :data:`STAGED_FOR`. Imported source files stay in their staging
folder: the import batch names that path and its SHA-256. Only roles with ``import_data`` may
upload, confirm or cancel; the import history is part of the audit trail (``read_audit``).
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import logging
import os
import re
import secrets
import shutil
import unicodedata
import zipfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import pandas as pd
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from pydantic import BaseModel, Field
from python_multipart.exceptions import FormParserError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from celltrial.errors import CelltrialError, DataError
from celltrial.ingest.importer import ImportRefused, import_file
from celltrial.ingest.layouts import TABLE_SUFFIXES
from celltrial.ingest.limits import MAX_UPLOAD_CELLS, check_workbook_cells
from celltrial.ingest.mapping import read_mapping
from celltrial.ingest.redcap import DICTIONARY_NAMES
from celltrial.ingest.report import KINDS, ValidationReport, safe_cell
from celltrial.services.accounts import ActiveSession
from celltrial.services.errors import NotFound
from celltrial.store.frames import read_import_batches
from celltrial.study import StudyHandle
from celltrial.web.dry_runs import DryRunProcess
from celltrial.web.pages import render
from celltrial.web.schemas import ErrorOut
from celltrial.web.security import (
    CSRF_FIELD,
    SESSION_COOKIE,
    allowed,
    api_write,
    check_csrf,
    study_of,
)

log = logging.getLogger(__name__)

UPLOAD_DIR = "uploads"
SOURCE_DIR = "source"
META_FILE = "upload.json"
DRY_RUN_REPORT = "dry-run-report.csv"
#: Largest upload accepted (the whole request); ``app.state.upload_limit`` overrides it.
MAX_UPLOAD_BYTES = 64 * 2**20
MAX_MAPPING_BYTES = 256 * 2**10
#: Unconfirmed uploads older than this are deleted (at the next upload).
STAGED_FOR = timedelta(hours=24)
#: Messages shown per kind on the review page (all of them are in the report CSV).
MESSAGES_SHOWN = 50
DATA_SUFFIXES = (*TABLE_SUFFIXES, ".json", ".ndjson")
MAPPING_SUFFIXES = (".yaml", ".yml")
#: Workbooks whose cells are counted before they are parsed (zip archives of XML).
WORKBOOK_SUFFIXES = (".xlsx", ".xlsm")
#: The longest external cohort name (the database column's length).
MAX_COHORT = 64
REGISTER_CHOICES = {
    "no": "are errors (not registered)",
    "cohort": "are registered: external cohort",
    "study": "are registered: study subjects",
}
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{32}$")
#: Errors of the readers on a file that is not what its name says (binary CSV, broken XLSX…).
_READ_ERRORS = (UnicodeDecodeError, ValueError, pd.errors.ParserError, zipfile.BadZipFile, OSError)

router = APIRouter(include_in_schema=False)
api_router = APIRouter(prefix="/api", tags=["imports"])
Importer = Annotated[ActiveSession, allowed("import_data")]
HistoryReader = Annotated[ActiveSession, allowed("read_audit")]


class UploadRefused(DataError):
    """An upload that was not staged (no file, wrong type, too large); ``status``: HTTP code."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


# --- staged uploads ----------------------------------------------------------------------------


@dataclass
class StagedUpload:
    """An uploaded file waiting for confirmation, with the report of its dry run."""

    token: str
    file_name: str
    size_bytes: int
    sha256: str
    uploaded_by: str
    uploaded_at: datetime
    register: str = "no"
    cohort: str | None = None
    mapping_name: str | None = None
    dictionary_name: str | None = None
    layout: str | None = None
    ok: bool = False
    fatal: str | None = None
    accounting: dict[str, int] = field(default_factory=dict)
    groups: list[dict[str, Any]] = field(default_factory=list)
    messages_total: int = 0
    has_report_csv: bool = False

    @property
    def can_confirm(self) -> bool:
        return self.ok and self.fatal is None


def safe_filename(name: str | None, *, default: str = "upload") -> str:
    """A file name that is safe to create: the last path part, ASCII letters, digits, ``._-``.

    ``../../etc/passwd`` becomes ``passwd``, ``..`` the ``default``; never a hidden file, never a
    path separator, at most 100 characters with the suffix kept.
    """
    base = re.split(r"[\\/]", name or "")[-1]
    base = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode("ascii")
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._-")
    if not base:
        return default
    if len(base) > 100:
        path = Path(base)
        suffix = path.suffix[:12]
        base = path.stem[: 100 - len(suffix)] + suffix
    return base


def session_key(request: Request) -> str:
    """The SHA-256 of the session cookie: binds a staged upload to the session that made it."""
    token = request.cookies.get(SESSION_COOKIE, "")
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def uploads_dir(study: StudyHandle) -> Path:
    return study.directory / UPLOAD_DIR


def _folder(study: StudyHandle, token: str) -> Path:
    if not _TOKEN.match(token):
        raise NotFound("no such upload (it was imported, cancelled or has expired)")
    return uploads_dir(study) / token


def _copy(upload: BinaryIO, target: Path, *, limit: int, what: str) -> tuple[int, str]:
    """Copy an upload to ``target`` in chunks: (size, SHA-256); refused beyond ``limit`` bytes."""
    digest = hashlib.sha256()
    size = 0
    upload.seek(0)
    with target.open("xb") as out:
        for chunk in iter(lambda: upload.read(1 << 20), b""):
            size += len(chunk)
            if size > limit:
                raise UploadRefused(
                    f"{what}: larger than the limit of {_megabytes(limit)}", status=413
                )
            digest.update(chunk)
            out.write(chunk)
    if size == 0:
        raise UploadRefused(f"{what}: the file is empty")
    return size, digest.hexdigest()


def _megabytes(size: int) -> str:
    return f"{size / 2**20:.0f} MB" if size >= 2**20 else f"{size / 2**10:.0f} kB"


def _write_meta(folder: Path, staged: StagedUpload, key: str) -> None:
    data = asdict(staged) | {"uploaded_at": staged.uploaded_at.isoformat(), "session": key}
    temporary = folder / (META_FILE + ".tmp")
    temporary.write_text(json.dumps(data, default=str), encoding="utf-8")
    os.replace(temporary, folder / META_FILE)


def _read_meta(path: Path) -> tuple[StagedUpload, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise NotFound("no such upload (it was imported, cancelled or has expired)") from None
    key = data.pop("session", "")
    data["uploaded_at"] = datetime.fromisoformat(data["uploaded_at"])
    return StagedUpload(**data), key


def stage_upload(
    study: StudyHandle,
    *,
    data: UploadFile,
    mapping: UploadFile | None,
    dictionary: UploadFile | None,
    register: str,
    cohort: str | None,
    username: str,
    key: str,
    limit: int = MAX_UPLOAD_BYTES,
    max_cells: int = MAX_UPLOAD_CELLS,
    checker: DryRunProcess | None = None,
) -> StagedUpload:
    """Stage an upload under ``<study>/uploads/<token>/`` and validate it as a dry run (in
    ``checker``'s worker process when given, else here); a workbook of more than ``max_cells``
    cells is refused before it is parsed."""
    if register not in REGISTER_CHOICES:
        raise UploadRefused(f"register: {register!r} is not one of {', '.join(REGISTER_CHOICES)}")
    if len(cohort or "") > MAX_COHORT:
        raise UploadRefused(f"cohort: at most {MAX_COHORT} characters")
    name = safe_filename(data.filename)
    if Path(name).suffix.lower() not in DATA_SUFFIXES:
        raise UploadRefused(
            f"{name}: unknown file type {Path(name).suffix or '(none)'}; expected CSV, TSV, TXT, "
            "XLSX, XLS, a FHIR JSON bundle or NDJSON"
        )
    if name.lower() in DICTIONARY_NAMES or name.lower().startswith("mapping."):
        name = f"records-{name}"  # keep the names of the companion files free
    if mapping is not None and Path(safe_filename(mapping.filename)).suffix.lower() not in (
        MAPPING_SUFFIXES
    ):
        raise UploadRefused("mapping file: expected a YAML file (.yaml or .yml)")
    purge_stale_uploads(study)
    token = secrets.token_urlsafe(24)
    folder = uploads_dir(study) / token
    source = folder / SOURCE_DIR
    source.mkdir(parents=True)
    try:
        size, digest = _copy(data.file, source / name, limit=limit, what=name)
        staged = StagedUpload(
            token=token,
            file_name=name,
            size_bytes=size,
            sha256=digest,
            uploaded_by=username,
            uploaded_at=datetime.now(UTC),
            register=register,
            cohort=(cohort or "").strip() or None,
        )
        if mapping is not None:
            _copy(mapping.file, source / "mapping.yaml", limit=MAX_MAPPING_BYTES, what="mapping")
            staged.mapping_name = safe_filename(mapping.filename)
        if dictionary is not None:
            _copy(dictionary.file, source / DICTIONARY_NAMES[0], limit=limit, what="dictionary")
            staged.dictionary_name = safe_filename(dictionary.filename)
        _check_cells(source / name, max_cells)
        if checker is not None:
            staged = checker.check(folder, staged)
        else:
            dry_run(study, folder, staged)
        _write_meta(folder, staged, key)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return staged


def _check_cells(path: Path, max_cells: int) -> None:
    """413 for a workbook of more than ``max_cells`` cells (counted before it is parsed)."""
    if path.suffix.lower() not in WORKBOOK_SUFFIXES or not zipfile.is_zipfile(path):
        return  # a legacy .xls is capped by its size; a damaged file is reported by the reader
    try:
        check_workbook_cells(path, max_cells=max_cells)
    except DataError as exc:
        raise UploadRefused(str(exc), status=413) from None
    except (zipfile.BadZipFile, OSError, EOFError):  # the reader says what is wrong
        return


def _import_options(folder: Path, staged: StagedUpload) -> dict[str, Any]:
    """Keyword arguments of :func:`import_file` for a staged upload (mapping checked first)."""
    mapping = folder / SOURCE_DIR / "mapping.yaml" if staged.mapping_name else None
    if mapping is not None:
        spec = read_mapping(mapping)
        if spec.dictionary is not None:
            where = Path(spec.dictionary).resolve()
            if not where.is_relative_to(folder.resolve()) or not where.is_file():
                raise DataError(
                    f"mapping file {staged.mapping_name}: dictionary {spec.dictionary!r} is not "
                    "a file of this upload; upload the REDCap data dictionary with the file "
                    "instead"
                )
    if staged.register == "no":  # results of subjects already stored, in the cohort named
        register, cohort = False, staged.cohort or ""
    elif staged.register == "study":
        register, cohort = True, ""
    else:
        register, cohort = True, staged.cohort or Path(staged.file_name).stem
    return {"mapping": mapping, "register": register, "cohort": cohort}


def _scrub(text: str, folder: Path) -> str:
    """A message without the server's paths (file names, or paths inside the study)."""
    study_dir = folder.parent.parent
    for prefix in (folder / SOURCE_DIR, folder, study_dir):
        text = text.replace(f"{prefix.resolve()}{os.sep}", "").replace(f"{prefix}{os.sep}", "")
    return text


def dry_run(study: StudyHandle, folder: Path, staged: StagedUpload) -> None:
    """Validate the staged file without storing anything; fills in the upload's report."""
    path = folder / SOURCE_DIR / staged.file_name
    try:
        options = _import_options(folder, staged)
        result = import_file(study, path, dry_run=True, report_dir=folder, **options)
    except ImportRefused as refused:
        _apply_report(staged, folder, refused.report, refused.report_csv, ok=False)
    except CelltrialError as exc:
        staged.ok, staged.fatal = False, _scrub(str(exc), folder)
    except _READ_ERRORS as exc:
        log.info("upload %s could not be read", staged.file_name, exc_info=True)
        detail = _scrub(str(exc), folder)[:300]
        staged.ok = False
        staged.fatal = (
            f"{staged.file_name}: the file cannot be read ({type(exc).__name__}: {detail})"
        )
    else:
        staged.layout = result.layout
        _apply_report(staged, folder, result.report, result.report_csv, ok=True)


def _apply_report(
    staged: StagedUpload,
    folder: Path,
    report: ValidationReport,
    written: Path | None,
    *,
    ok: bool,
) -> None:
    """Keep a validation report with the upload: its groups here, its CSV in the folder."""
    staged.ok = ok
    if written is not None and written.is_file():
        os.replace(written, folder / DRY_RUN_REPORT)
        staged.has_report_csv = True
    staged.accounting = report.accounting
    staged.groups = message_groups(report)
    staged.messages_total = sum(g["count"] for g in staged.groups)


def message_groups(report: ValidationReport, *, shown: int = MESSAGES_SHOWN) -> list[dict]:
    """The report's messages by severity and kind: count, meaning and the first ``shown``."""
    messages = report.messages
    groups = []
    for item in report.by_kind().itertuples(index=False):
        same = messages[(messages["severity"] == item.severity) & (messages["kind"] == item.kind)]
        groups.append(
            {
                "severity": item.severity,
                "kind": item.kind,
                "meaning": KINDS.get(item.kind, ""),
                "count": int(item.count),
                "messages": [_message(m) for m in same.head(shown).to_dict("records")],
            }
        )
    return groups


def _text(value: Any) -> str | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return str(value)


def _message(record: dict[str, Any]) -> dict[str, Any]:
    row = record.get("row")
    try:
        row = int(row)
    except (TypeError, ValueError):
        row = _text(row)
    return {
        "file": Path(str(record.get("file") or "")).name,
        "row": row,
        "column": _text(record.get("column")),
        "value": _text(record.get("value")),
        "expected": _text(record.get("expected")),
    }


def read_staged(study: StudyHandle, token: str, key: str) -> StagedUpload:
    """The staged upload ``token`` of the session ``key``; :class:`NotFound` for any other."""
    staged, owner = _read_meta(_folder(study, token) / META_FILE)
    if not hmac.compare_digest(owner, key):
        raise NotFound("no such upload (it was imported, cancelled or has expired)")
    return staged


@dataclass(frozen=True)
class Imported:
    """A confirmed upload: its batch and counts."""

    batch_id: int
    counts: dict[str, int]


def confirm_upload(study: StudyHandle, token: str, key: str, *, username: str) -> Imported:
    """Import a staged upload (all or nothing, one batch); its staging record is then removed.

    :class:`ImportRefused` if the file has errors (it stays staged, so it can be cancelled).
    """
    folder = _folder(study, token)
    staged = read_staged(study, token, key)
    if not staged.can_confirm:
        raise DataError(
            f"{staged.file_name} has errors; nothing was stored. Correct the file and upload it "
            "again, or cancel this upload."
        )
    claimed = folder / (META_FILE + ".confirming")
    try:
        os.replace(folder / META_FILE, claimed)  # a second confirm of the same upload: NotFound
    except FileNotFoundError:
        raise NotFound("no such upload (it was imported, cancelled or has expired)") from None
    try:
        result = import_file(
            study,
            folder / SOURCE_DIR / staged.file_name,
            user=username,
            **_import_options(folder, staged),
        )
    except BaseException:
        os.replace(claimed, folder / META_FILE)
        raise
    claimed.unlink()
    (folder / DRY_RUN_REPORT).unlink(missing_ok=True)
    assert result.batch_id is not None
    return Imported(batch_id=result.batch_id, counts=dict(result.counts))


def _confirm(request: Request, token: str, key: str, *, username: str) -> Imported:
    """:func:`confirm_upload`, in the app's worker process when it has one (the file is read
    again: not in the process that answers requests)."""
    checker: DryRunProcess | None = getattr(request.app.state, "dry_runs", None)
    if checker is not None:
        return checker.confirm(token, key, username=username)
    return confirm_upload(study_of(request), token, key, username=username)


def cancel_upload(study: StudyHandle, token: str, key: str) -> StagedUpload:
    """Delete a staged upload and its files (nothing was stored)."""
    staged = read_staged(study, token, key)
    shutil.rmtree(_folder(study, token))
    return staged


def purge_stale_uploads(study: StudyHandle, *, now: datetime | None = None) -> int:
    """Delete unconfirmed uploads older than :data:`STAGED_FOR`; returns how many."""
    folder = uploads_dir(study)
    if not folder.is_dir():
        return 0
    limit = (now or datetime.now(UTC)).timestamp() - STAGED_FOR.total_seconds()
    removed = 0
    for meta in folder.glob(f"*/{META_FILE}"):
        try:
            old = meta.stat().st_mtime < limit
        except FileNotFoundError:
            continue
        if old and _TOKEN.match(meta.parent.name):
            shutil.rmtree(meta.parent, ignore_errors=True)
            removed += 1
    return removed


# --- import history ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchView:
    """One import batch as listed: file, hash, counts, who, when, validation summary."""

    id: int
    time: datetime
    user: str
    kind: str
    file_name: str
    source_sha256: str | None
    counts: dict[str, int]
    accounting: dict[str, int]
    by_kind: list[dict[str, Any]]
    messages_total: int
    report_csv: Path | None

    @property
    def stored(self) -> dict[str, int]:
        """Rows written: new, updated, unchanged results and registered subjects."""
        return {k: int(self.counts.get(k, 0)) for k in ("inserted", "updated", "unchanged")} | {
            "subjects": int(self.counts.get("subjects", 0))
        }


def _report_csv(study: StudyHandle, report: dict[str, Any]) -> Path | None:
    """A batch's report CSV if it is a file inside the study directory (never elsewhere)."""
    text = report.get("report_csv") if isinstance(report, dict) else None
    if not text:
        return None
    root = study.directory.resolve()
    path = Path(str(text)).resolve()
    if not path.is_relative_to(root):  # the study moved: look in its imports/ folder
        path = (root / "imports" / Path(str(text)).name).resolve()
    return path if path.is_relative_to(root) and path.is_file() else None


def list_batches(study: StudyHandle) -> list[BatchView]:
    """Every import batch of the study, newest first."""
    frame = read_import_batches(study.engine)
    views = []
    for row in frame.to_dict("records"):
        report = row["report"] if isinstance(row["report"], dict) else {}
        counts = row["counts"] if isinstance(row["counts"], dict) else {}
        views.append(
            BatchView(
                id=int(row["id"]),
                time=pd.Timestamp(row["time"]).to_pydatetime(),
                user=str(row["user"]),
                kind=str(row["kind"]),
                file_name=Path(str(row["source"] or "")).name,
                source_sha256=row["source_sha256"] or None,
                counts={str(k): int(v) for k, v in counts.items() if isinstance(v, int | float)},
                accounting={str(k): int(v) for k, v in report.get("accounting", {}).items()},
                by_kind=list(report.get("by_kind", [])),
                messages_total=int(report.get("messages_total", 0) or 0),
                report_csv=_report_csv(study, report),
            )
        )
    return sorted(views, key=lambda v: v.id, reverse=True)


def read_batch(study: StudyHandle, batch_id: int) -> BatchView:
    for view in list_batches(study):
        if view.id == batch_id:
            return view
    raise NotFound(f"no import batch {batch_id} in this study")


# --- form parsing ------------------------------------------------------------------------------


@dataclass
class UploadForm:
    data: UploadFile
    mapping: UploadFile | None
    dictionary: UploadFile | None
    register: str
    cohort: str | None


#: The fields of an upload form (the page's form adds its CSRF token).
UPLOAD_FIELDS = frozenset({"file", "mapping", "dictionary", "register", "cohort"})
#: The routes that take an upload (their body limit is the upload limit, not the general one).
UPLOAD_ROUTES = frozenset({("POST", "/imports"), ("POST", "/api/v1/uploads")})


def upload_limit(request: Request) -> int:
    return int(getattr(request.app.state, "upload_limit", MAX_UPLOAD_BYTES))


def upload_cells(request: Request) -> int:
    return int(getattr(request.app.state, "upload_cells", MAX_UPLOAD_CELLS))


def upload_body_limit(app: Any) -> int:
    """The largest request an upload route reads: the file limit plus a mapping file."""
    return int(getattr(app.state, "upload_limit", MAX_UPLOAD_BYTES)) + MAX_MAPPING_BYTES


async def read_upload_form(
    request: Request, active: ActiveSession, *, csrf_in_form: bool
) -> UploadForm:
    """The multipart upload after the size check (before reading it) and the CSRF check."""
    limit = upload_limit(request)
    length = request.headers.get("content-length", "")
    if not length.isdigit():
        raise UploadRefused("the upload must state its size (Content-Length)", status=411)
    if int(length) > upload_body_limit(request.app):
        raise UploadRefused(
            f"the upload ({_megabytes(int(length))}) is larger than the limit of "
            f"{_megabytes(limit)}",
            status=413,
        )
    try:
        form = await request.form(max_files=3, max_fields=8)
    except FormParserError:  # Starlette before 1.7 lets the multipart parser's errors through
        raise UploadRefused("the upload is not a well-formed multipart form", status=400) from None
    if csrf_in_form:
        check_csrf(active, str(form.get(CSRF_FIELD) or ""))
    unknown = sorted(set(form.keys()) - UPLOAD_FIELDS - ({CSRF_FIELD} if csrf_in_form else set()))
    if unknown:
        raise UploadRefused(f"{', '.join(unknown)[:200]}: not a field of an upload")

    def file(name: str) -> UploadFile | None:
        value = form.get(name)
        return value if isinstance(value, UploadFile) and value.filename else None

    data = file("file")
    if data is None:
        raise UploadRefused("file: choose a file to import")
    return UploadForm(
        data=data,
        mapping=file("mapping"),
        dictionary=file("dictionary"),
        register=str(form.get("register") or "no"),
        cohort=str(form.get("cohort") or "") or None,
    )


async def _stage(request: Request, active: ActiveSession, *, csrf_in_form: bool) -> StagedUpload:
    form = await read_upload_form(request, active, csrf_in_form=csrf_in_form)
    try:
        return await run_in_threadpool(
            stage_upload,
            study_of(request),
            data=form.data,
            mapping=form.mapping,
            dictionary=form.dictionary,
            register=form.register,
            cohort=form.cohort,
            username=active.account.username,
            key=session_key(request),
            limit=upload_limit(request),
            max_cells=upload_cells(request),
            checker=getattr(request.app.state, "dry_runs", None),
        )
    finally:
        for upload in (form.data, form.mapping, form.dictionary):
            if upload is not None:
                await upload.close()


# --- pages -------------------------------------------------------------------------------------


def _imports_page(
    request: Request,
    active: ActiveSession,
    *,
    error: str | None = None,
    notice: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "imports.html.j2",
        active,
        status=status,
        batches=list_batches(study_of(request)),
        register_choices=REGISTER_CHOICES,
        limit=_megabytes(upload_limit(request)),
        accept=",".join(DATA_SUFFIXES),
        error=error,
        notice=notice,
    )


@router.get("/imports")
def imports_page(request: Request, active: HistoryReader, cancelled: str = "") -> HTMLResponse:
    notice = (
        "The upload was cancelled: nothing was stored and the staged file was deleted."
        if cancelled
        else None
    )
    return _imports_page(request, active, notice=notice)


@router.post("/imports")
async def upload(request: Request, active: Importer) -> Response:
    try:
        staged = await _stage(request, active, csrf_in_form=True)
    except UploadRefused as exc:
        return _imports_page(request, active, error=str(exc), status=exc.status)
    return RedirectResponse(f"/imports/{staged.token}", status_code=303)


@router.get("/imports/batches/{batch_id}")
def batch_page(
    batch_id: int, request: Request, active: HistoryReader, imported: str = ""
) -> HTMLResponse:
    batch = read_batch(study_of(request), batch_id)
    return render(request, "import_batch.html.j2", active, batch=batch, imported=bool(imported))


@router.get("/imports/batches/{batch_id}/report.csv")
def batch_report(batch_id: int, request: Request, _active: HistoryReader) -> Response:
    batch = read_batch(study_of(request), batch_id)
    if batch.report_csv is None:
        raise NotFound(f"import batch {batch_id} has no validation report file")
    return _csv(batch.report_csv, f"import-{batch_id}-report.csv")


def _csv(path: Path, name: str) -> StreamingResponse:
    """A report CSV as downloaded: every text cell made safe for spreadsheets and every file
    named without its server folder (also in reports written before these rules)."""
    return StreamingResponse(
        _safe_csv_lines(path),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{safe_filename(name)}"'},
    )


def _safe_csv_lines(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            return
        file_column = header.index("file") if "file" in header else None
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")  # a line break in a cell is quoted
        writer.writerow(header)
        for number, row in enumerate(reader, start=1):
            if file_column is not None and file_column < len(row) and row[file_column]:
                row[file_column] = re.split(r"[\\/]", row[file_column])[-1]
            writer.writerow([safe_cell(cell) for cell in row])
            if number % 1000 == 0:
                yield out.getvalue()
                out.seek(0)
                out.truncate()
        yield out.getvalue()


def _review(
    request: Request,
    active: ActiveSession,
    staged: StagedUpload,
    *,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "import_review.html.j2",
        active,
        status=status,
        staged=staged,
        error=error,
    )


@router.get("/imports/{token}")
def review_page(token: str, request: Request, active: Importer) -> HTMLResponse:
    staged = read_staged(study_of(request), token, session_key(request))
    return _review(request, active, staged)


@router.get("/imports/{token}/report.csv")
def staged_report(token: str, request: Request, _active: Importer) -> Response:
    study = study_of(request)
    staged = read_staged(study, token, session_key(request))
    path = _folder(study, token) / DRY_RUN_REPORT
    if not path.is_file():
        raise NotFound("this upload has no validation report file")
    return _csv(path, f"{Path(staged.file_name).stem}-dry-run-report.csv")


async def _checked(request: Request, active: ActiveSession) -> None:
    form = await request.form(max_files=0, max_fields=4)
    check_csrf(active, str(form.get(CSRF_FIELD) or ""))


@router.post("/imports/{token}/confirm")
async def confirm(token: str, request: Request, active: Importer) -> Response:
    await _checked(request, active)
    study, key = study_of(request), session_key(request)
    try:
        done = await run_in_threadpool(
            _confirm, request, token, key, username=active.account.username
        )
    except DataError as exc:
        folder = _folder(study, token)
        staged = read_staged(study, token, key)
        if isinstance(exc, ImportRefused):  # the study changed since the dry run
            _apply_report(staged, folder, exc.report, None, ok=False)
            _write_meta(folder, staged, key)
        message = _scrub(str(exc), folder)
        return _review(request, active, staged, error=message, status=422)
    return RedirectResponse(f"/imports/batches/{done.batch_id}?imported=1", status_code=303)


@router.post("/imports/{token}/cancel")
async def cancel(token: str, request: Request, active: Importer) -> Response:
    await _checked(request, active)
    await run_in_threadpool(cancel_upload, study_of(request), token, session_key(request))
    return RedirectResponse("/imports?cancelled=1", status_code=303)


# --- JSON API ----------------------------------------------------------------------------------


class MessageOut(BaseModel):
    file: str
    row: int | str | None
    column: str | None
    value: str | None
    expected: str | None


class MessageGroupOut(BaseModel):
    severity: str = Field(description="error (refuses the file), warning or info")
    kind: str
    meaning: str
    count: int
    messages: list[MessageOut]


class StagedUploadOut(BaseModel):
    """A staged upload and the report of its dry run (nothing stored yet)."""

    token: str
    file_name: str
    size_bytes: int
    sha256: str
    uploaded_by: str
    uploaded_at: datetime
    register_subjects: str = Field(description="no, cohort or study (see the upload's register)")
    cohort: str | None
    mapping_name: str | None
    dictionary_name: str | None
    layout: str | None
    ok: bool
    fatal: str | None
    can_confirm: bool
    accounting: dict[str, int]
    groups: list[MessageGroupOut]
    messages_total: int
    report_csv_url: str | None


class BatchOut(BaseModel):
    """One import batch (file, hash, counts, who, when, validation summary)."""

    id: int
    time: datetime
    user: str
    kind: str
    file_name: str
    source_sha256: str | None
    counts: dict[str, int]
    accounting: dict[str, int]
    by_kind: list[dict[str, Any]]
    messages_total: int
    report_csv_url: str | None


def _staged_out(staged: StagedUpload) -> StagedUploadOut:
    data = asdict(staged)
    data.pop("has_report_csv")
    data["register_subjects"] = data.pop("register")
    return StagedUploadOut(
        **data,
        can_confirm=staged.can_confirm,
        report_csv_url=f"/api/v1/uploads/{staged.token}/report.csv"
        if staged.has_report_csv
        else None,
    )


def _batch_out(batch: BatchView) -> BatchOut:
    data = asdict(batch)
    data.pop("report_csv")
    return BatchOut(
        **data,
        report_csv_url=f"/api/v1/import-batches/{batch.id}/report.csv"
        if batch.report_csv
        else None,
    )


_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "additionalProperties": False,
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "CSV/TSV/XLSX (long or wide), REDCap records CSV, "
                            "FHIR JSON bundle or NDJSON.",
                        },
                        "mapping": {
                            "type": "string",
                            "format": "binary",
                            "description": "Optional column-mapping YAML.",
                        },
                        "dictionary": {
                            "type": "string",
                            "format": "binary",
                            "description": "REDCap data dictionary CSV (REDCap records only).",
                        },
                        "register": {
                            "type": "string",
                            "enum": list(REGISTER_CHOICES),
                            "default": "no",
                            "description": "Register subjects the study lacks: no, as an "
                            "external cohort, or as the study's own subjects.",
                        },
                        "cohort": {
                            "type": "string",
                            "maxLength": MAX_COHORT,
                            "description": "External cohort name (default: the file name).",
                        },
                    },
                },
                # the file's type is read from its name: the names a client sends as written
                "encoding": {
                    part: {
                        "headers": {
                            "Content-Disposition": {
                                "description": "The file's name; its extension gives its type "
                                f"({', '.join(suffixes)}).",
                                "schema": {"type": "string", "example": example},
                            }
                        }
                    }
                    for part, suffixes, example in (
                        (
                            "file",
                            DATA_SUFFIXES,
                            'form-data; name="file"; filename="results.csv"',
                        ),
                        (
                            "mapping",
                            MAPPING_SUFFIXES,
                            'form-data; name="mapping"; filename="mapping.yaml"',
                        ),
                        (
                            "dictionary",
                            (".csv",),
                            'form-data; name="dictionary"; filename="dictionary.csv"',
                        ),
                    )
                },
            }
        },
    }
}

_api_errors = {
    401: {"model": ErrorOut, "description": "Not signed in"},
    403: {"model": ErrorOut, "description": "Role not permitted, or CSRF token missing"},
    404: {"model": ErrorOut, "description": "No such upload or batch (or not this session's)"},
}


@api_router.post(
    "/v1/uploads",
    response_model=StagedUploadOut,
    status_code=201,
    openapi_extra=_UPLOAD_BODY,
    responses=_api_errors
    | {
        400: {"model": ErrorOut, "description": "Not a well-formed multipart form"},
        411: {"model": ErrorOut, "description": "No Content-Length"},
        413: {"model": ErrorOut, "description": "Larger than the upload limit"},
        422: {"model": ErrorOut, "description": "No file, or not a supported file type"},
    },
)
async def api_upload(
    request: Request, active: Annotated[ActiveSession, api_write("import_data")]
) -> StagedUploadOut:
    """Upload a file: it is staged and validated as a dry run; nothing is stored until confirmed."""
    try:
        staged = await _stage(request, active, csrf_in_form=False)
    except UploadRefused as exc:
        raise HTTPException(exc.status, str(exc)) from None
    return _staged_out(staged)


@api_router.get("/v1/uploads/{token}", response_model=StagedUploadOut, responses=_api_errors)
def api_staged(token: str, request: Request, _active: Importer) -> StagedUploadOut:
    """A staged upload of this session with its dry-run report."""
    return _staged_out(read_staged(study_of(request), token, session_key(request)))


_CSV = {200: {"content": {"text/csv": {}}, "description": "The report (CSV)"}}


@api_router.get(
    "/v1/uploads/{token}/report.csv", response_class=FileResponse, responses=_api_errors | _CSV
)
def api_staged_report(token: str, request: Request, active: Importer) -> Response:
    """The dry run's validation report (every message) as CSV."""
    return staged_report(token, request, active)


@api_router.post(
    "/v1/uploads/{token}/confirm",
    response_model=BatchOut,
    status_code=201,
    responses=_api_errors
    | {422: {"model": ErrorOut, "description": "The file has errors; nothing was stored"}},
)
def api_confirm(
    token: str, request: Request, active: Annotated[ActiveSession, api_write("import_data")]
) -> BatchOut:
    """Import a staged upload: all or nothing, in one transaction, recorded as one batch."""
    study = study_of(request)
    try:
        done = _confirm(request, token, session_key(request), username=active.account.username)
    except ImportRefused as refused:  # the study changed since the dry run: nothing stored
        raise DataError(_scrub(str(refused), _folder(study, token))) from None
    return _batch_out(read_batch(study, done.batch_id))


@api_router.delete("/v1/uploads/{token}", status_code=204, responses=_api_errors)
def api_cancel(
    token: str, request: Request, _active: Annotated[ActiveSession, api_write("import_data")]
) -> None:
    """Cancel a staged upload: its files are deleted, nothing was stored."""
    cancel_upload(study_of(request), token, session_key(request))


@api_router.get("/v1/import-batches", response_model=list[BatchOut], responses=_api_errors)
def api_batches(request: Request, _active: HistoryReader) -> list[BatchOut]:
    """Every import batch of the study, newest first."""
    return [_batch_out(b) for b in list_batches(study_of(request))]


@api_router.get("/v1/import-batches/{batch_id}", response_model=BatchOut, responses=_api_errors)
def api_batch(batch_id: int, request: Request, _active: HistoryReader) -> BatchOut:
    return _batch_out(read_batch(study_of(request), batch_id))


@api_router.get(
    "/v1/import-batches/{batch_id}/report.csv",
    response_class=FileResponse,
    responses=_api_errors | _CSV,
)
def api_batch_report(batch_id: int, request: Request, active: HistoryReader) -> Response:
    """The batch's validation report (every message) as CSV."""
    return batch_report(batch_id, request, active)
