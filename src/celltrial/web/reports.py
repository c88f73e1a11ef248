"""Report page and API: build the study report in the background, then download HTML or PDF.

Building takes seconds (every analysis, figures, WeasyPrint), so a background thread of the web
process runs it in a fresh (spawned) process: the request that starts it returns at once, the
event loop is never blocked, and the page shows the build's state (building, ready, failed with
the message), refreshing itself while building. One build at a time per study. Outputs go to
``<study>/reports/`` (``report.html``, ``report.pdf``, ``report-listings.html`` when long listings
went to a file of their own, ``status.json``), written to a temporary folder first and moved into
place, so a download never sees half a file and the previous report stays available while a new
one is built.

The report names its listings file as it is downloaded (``<study>-report-<time>-listings.html``,
beside ``<study>-report-<time>.html`` and ``.pdf``), so its links work in the downloaded files
opened from disk; in the browser, that name under ``/reports/`` shows the listings of the report
shown at ``/reports/view``.

Downloading needs ``read_report`` (statistician, investigator, monitor, admin); building needs
``build_report`` (the same roles except the read-only monitor).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import secrets
import shutil
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel

from celltrial.errors import CelltrialError
from celltrial.services.accounts import ActiveSession
from celltrial.services.errors import EditConflict, NotFound
from celltrial.study import StudyHandle
from celltrial.web.pages import render
from celltrial.web.schemas import ErrorOut
from celltrial.web.security import allowed, api_write, checked_form, study_of

log = logging.getLogger(__name__)

REPORT_DIR = "reports"
#: Who the build process opens the study as (it reads only; nothing it does is audited).
BUILD_USER = "celltrial-web"
STATUS_FILE = "status.json"
#: The listings file in the reports folder (its name in the report is the download name).
LISTINGS_FILE = "report-listings.html"
#: How the report names its listings file after its own (``celltrial.report.tables``, which is
#: not imported here: the report's modules load only in the build process).
LISTINGS_SUFFIX = "-listings"
FORMATS = {"html": "text/html; charset=utf-8", "pdf": "application/pdf"}
#: The report is self-contained: inline CSS and data: images, no script.
VIEW_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; "
    "frame-ancestors 'none'; base-uri 'none'"
)

State = Literal["none", "building", "ready", "failed"]


@dataclass(frozen=True)
class ReportStatus:
    """The last build of the study report and the files it left.

    ``state`` is that of the last build; ``built_at`` and ``html``/``pdf`` describe the report
    that can be downloaded (a previous one while a new build runs or after one failed);
    ``stem`` is that report's download name without suffix (its listings file is
    ``<stem>-listings.html``; None for a report built before the name was recorded).
    """

    state: State = "none"
    started_at: datetime | None = None
    finished_at: datetime | None = None
    started_by: str | None = None
    message: str | None = None
    seconds: float | None = None
    built_at: datetime | None = None
    built_by: str | None = None
    html: bool = False
    pdf: bool = False
    pdf_message: str | None = None
    listings: bool = False
    stem: str | None = None


def _to_json(status: ReportStatus) -> str:
    data = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(status).items()}
    return json.dumps(data)


def _from_json(text: str) -> ReportStatus:
    data = json.loads(text)
    for key in ("started_at", "finished_at", "built_at"):
        if data.get(key):
            data[key] = datetime.fromisoformat(data[key])
    return ReportStatus(**{k: v for k, v in data.items() if k in ReportStatus.__dataclass_fields__})


class ReportBuilder:
    """Builds one study's report in a background thread, one build at a time."""

    def __init__(self, study: StudyHandle) -> None:
        self.study = study
        self.folder = study.directory / REPORT_DIR
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._status = self._load()

    def _load(self) -> ReportStatus:
        """The status left by an earlier server; a build it did not finish was interrupted."""
        try:
            status = _from_json((self.folder / STATUS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError, TypeError):
            status = ReportStatus()
        status = replace(
            status,
            html=(self.folder / "report.html").is_file(),
            pdf=(self.folder / "report.pdf").is_file(),
            listings=(self.folder / LISTINGS_FILE).is_file(),
        )
        if status.state == "building":
            status = replace(
                status, state="failed", message="interrupted: the server stopped during the build"
            )
        return status

    def _save(self, status: ReportStatus) -> None:
        self._status = status
        self.folder.mkdir(parents=True, exist_ok=True)
        temporary = self.folder / (STATUS_FILE + ".tmp")
        temporary.write_text(_to_json(status), encoding="utf-8")
        os.replace(temporary, self.folder / STATUS_FILE)

    @property
    def status(self) -> ReportStatus:
        return self._status

    def path(self, kind: str) -> Path:
        return self.folder / f"report.{kind}"

    @property
    def listings_path(self) -> Path:
        return self.folder / LISTINGS_FILE

    def start(self, user: str) -> ReportStatus:
        """Start a build; :class:`EditConflict` if one is already running."""
        with self._lock:
            if self._status.state == "building":
                raise EditConflict(
                    f"the report is already being built (started by {self._status.started_by}); "
                    "wait for it to finish"
                )
            self._save(
                replace(
                    self._status,
                    state="building",
                    started_at=datetime.now(UTC),
                    finished_at=None,
                    started_by=user,
                    message=None,
                    seconds=None,
                )
            )
            self._thread = threading.Thread(
                target=self._run, args=(user,), name="celltrial-report", daemon=True
            )
            self._thread.start()
            return self._status

    def wait(self, timeout: float | None = None) -> ReportStatus:
        """The status once the running build (if any) has finished or ``timeout`` passed."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self._status

    def _run(self, user: str) -> None:
        began = time.monotonic()
        stem = report_stem(self.study.study_id, self._status.started_at or datetime.now(UTC))
        try:
            # a fresh process: the analyses fork workers of their own, which a threaded server
            # must not do, and they neither hold this process's GIL nor grow its memory
            spawn = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(1, mp_context=spawn) as pool:
                pdf_message = pool.submit(
                    build_in_process, str(self.study.directory), self.study.url, stem
                ).result()
        except Exception as exc:  # a failed build is shown to the user, with the log's traceback
            log.exception("building the report of %s failed", self.study.study_id)
            message = (
                str(exc) if isinstance(exc, CelltrialError) else f"{type(exc).__name__}: {exc}"
            )
            status = replace(
                self._status,
                state="failed",
                finished_at=datetime.now(UTC),
                message=message,
                seconds=round(time.monotonic() - began, 1),
            )
        else:
            now = datetime.now(UTC)
            status = replace(
                self._status,
                state="ready",
                finished_at=now,
                seconds=round(time.monotonic() - began, 1),
                built_at=now,
                built_by=user,
                html=True,
                pdf=pdf_message is None,
                pdf_message=pdf_message,
                listings=self.listings_path.is_file(),
                stem=stem,
            )
        with self._lock:
            self._save(status)


def report_stem(study_id: str, built: datetime) -> str:
    """The report's download name without suffix: the study and the build's time (UTC)."""
    return f"{study_id}-report-{built.astimezone(UTC):%Y%m%d-%H%M}"


def write_report_files(study: StudyHandle, folder: Path, *, stem: str = "report") -> str | None:
    """Write ``report.html``, ``report.pdf`` and the listings file (when long listings went to
    one) into ``folder``; the PDF's problem, if any.

    The report links to its listings as ``<stem>-listings.html`` (its download name). All are
    written to a temporary folder and then moved into place. Without WeasyPrint the HTML
    report is still written (and an older PDF removed, so the two always match).
    """
    from celltrial.report.build import write_report
    from celltrial.report.pdf import write_pdf

    folder.mkdir(parents=True, exist_ok=True)
    scratch = folder / f".build-{secrets.token_hex(6)}"
    try:
        html_path, *listings = write_report(
            study, out=scratch / f"{stem}.html", report_format="html"
        )
        pdf_message = None
        try:
            write_pdf(html_path.read_text(encoding="utf-8"), scratch / "report.pdf")
        except CelltrialError as exc:
            pdf_message = str(exc)
        os.replace(html_path, folder / "report.html")
        for path in listings:  # the long listings, beside the report that links to them
            os.replace(path, folder / LISTINGS_FILE)
        if not listings:
            (folder / LISTINGS_FILE).unlink(missing_ok=True)
        if pdf_message is None:
            os.replace(scratch / "report.pdf", folder / "report.pdf")
        else:
            (folder / "report.pdf").unlink(missing_ok=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return pdf_message


def build_in_process(directory: str, url: str, stem: str = "report") -> str | None:
    """The build process: open the study afresh and write the report files (see above)."""
    from celltrial.study import open_study

    study = open_study(directory, db_url=url, user=BUILD_USER)
    try:
        return write_report_files(study, study.directory / REPORT_DIR, stem=stem)
    finally:
        study.engine.dispose()


def builder_of(request: Request) -> ReportBuilder:
    return request.app.state.report_builder


def _stem(request: Request, path: Path) -> str:
    """The download name (without suffix) of the report in the reports folder."""
    status = builder_of(request).status
    if status.stem:
        return status.stem
    built = status.built_at or datetime.fromtimestamp(path.stat().st_mtime, UTC)
    return report_stem(study_of(request).study_id, built)


def _file(request: Request, kind: str) -> FileResponse:
    path = builder_of(request).path(kind)
    if kind not in FORMATS or not path.is_file():
        raise NotFound(f"no {kind.upper()} report has been built yet; build it first")
    name = f"{_stem(request, path)}.{kind}"
    return FileResponse(path, media_type=FORMATS[kind], filename=name)


def _listings_file(request: Request) -> FileResponse:
    """The listings file as a download, named as the report links to it."""
    path = builder_of(request).listings_path
    if not path.is_file():
        raise NotFound(
            "the report has no listings file: every listing is in the report itself "
            "(or no report has been built yet)"
        )
    name = f"{_stem(request, path)}{LISTINGS_SUFFIX}.html"
    return FileResponse(path, media_type=FORMATS["html"], filename=name)


# --- pages -------------------------------------------------------------------------------------

router = APIRouter(include_in_schema=False)
api_router = APIRouter(prefix="/api", tags=["report"])
ReportReader = Annotated[ActiveSession, allowed("read_report")]
ReportBuilderRole = Annotated[ActiveSession, allowed("build_report")]


@router.get("/reports")
def report_page(request: Request, active: ReportReader, busy: str = "") -> HTMLResponse:
    status = builder_of(request).status
    return render(
        request,
        "reports.html.j2",
        active,
        status=200,
        report=status,
        busy=bool(busy),
    )


@router.post("/reports/build")
async def build(request: Request, active: ReportBuilderRole) -> Response:
    await checked_form(request, active)
    try:
        builder_of(request).start(active.account.username)
    except EditConflict:
        return RedirectResponse("/reports?busy=1", status_code=303)
    return RedirectResponse("/reports", status_code=303)


@router.get("/reports/report.html")
def download_html(request: Request, _active: ReportReader) -> Response:
    return _file(request, "html")


@router.get("/reports/report.pdf")
def download_pdf(request: Request, _active: ReportReader) -> Response:
    return _file(request, "pdf")


@router.get("/reports/report-listings.html")
def download_listings(request: Request, _active: ReportReader) -> Response:
    return _listings_file(request)


@router.get("/reports/{stem}-listings.html")
def view_listings(stem: str, request: Request, _active: ReportReader) -> Response:
    """The listings in the browser, at the name the report shown at /reports/view links to
    (the report's download name; the file itself is always ``report-listings.html``)."""
    builder = builder_of(request)
    path = builder.listings_path
    if not path.is_file() or stem != builder.status.stem:
        raise NotFound(
            "these listings are not those of the current report; open the report again "
            "from the report page"
        )
    response = HTMLResponse(path.read_text(encoding="utf-8"))
    response.headers["Content-Security-Policy"] = VIEW_CSP
    return response


@router.get("/reports/view")
def view_html(request: Request, _active: ReportReader) -> Response:
    """The HTML report in the browser (its own inline styles and images allowed, no script)."""
    path = builder_of(request).path("html")
    if not path.is_file():
        raise NotFound("no report has been built yet; build it first")
    response = HTMLResponse(path.read_text(encoding="utf-8"))
    response.headers["Content-Security-Policy"] = VIEW_CSP
    return response


# --- JSON API ----------------------------------------------------------------------------------


class ReportStatusOut(BaseModel):
    """The report's last build and the files that can be downloaded."""

    state: State
    started_at: datetime | None
    finished_at: datetime | None
    started_by: str | None
    message: str | None
    seconds: float | None
    built_at: datetime | None
    built_by: str | None
    html_url: str | None
    pdf_url: str | None
    pdf_message: str | None
    listings_url: str | None


def _status_out(status: ReportStatus) -> ReportStatusOut:
    data = asdict(status)
    html, pdf, listings = data.pop("html"), data.pop("pdf"), data.pop("listings")
    data.pop("stem")
    return ReportStatusOut(
        **data,
        html_url="/api/v1/report/report.html" if html else None,
        pdf_url="/api/v1/report/report.pdf" if pdf else None,
        listings_url=f"/api/v1/report/{LISTINGS_FILE}" if listings else None,
    )


_errors = {
    401: {"model": ErrorOut, "description": "Not signed in"},
    403: {"model": ErrorOut, "description": "Role not permitted, or CSRF token missing"},
}


@api_router.get("/v1/report", response_model=ReportStatusOut, responses=_errors)
def api_status(request: Request, _active: ReportReader) -> ReportStatusOut:
    """The state of the report build (building, ready, failed) and the download links."""
    return _status_out(builder_of(request).status)


@api_router.post(
    "/v1/report/build",
    response_model=ReportStatusOut,
    status_code=202,
    responses=_errors | {409: {"model": ErrorOut, "description": "A build is already running"}},
)
def api_build(
    request: Request, active: Annotated[ActiveSession, api_write("build_report")]
) -> ReportStatusOut:
    """Start building the report (HTML and PDF) in the background; poll GET /api/v1/report."""
    return _status_out(builder_of(request).start(active.account.username))


@api_router.get(
    "/v1/report/report.{kind}",
    response_class=FileResponse,
    responses=_errors
    | {
        200: {"content": {t.split(";")[0]: {} for t in FORMATS.values()}, "description": "File"},
        404: {"model": ErrorOut, "description": "Not built yet"},
    },
)
def api_download(kind: Literal["html", "pdf"], request: Request, _active: ReportReader) -> Response:
    """The last report built, as a file."""
    return _file(request, kind)


@api_router.get(
    f"/v1/report/{LISTINGS_FILE}",
    response_class=FileResponse,
    responses=_errors
    | {
        200: {"content": {"text/html": {}}, "description": "File"},
        404: {"model": ErrorOut, "description": "No listings file"},
    },
)
def api_download_listings(request: Request, _active: ReportReader) -> Response:
    """The listings file of the last report built (long listings and subject profiles), when
    they went to a file of their own; the report links to it by the name it is downloaded as."""
    return _listings_file(request)
