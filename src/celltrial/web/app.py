"""The FastAPI application of one study: pages, JSON API, error pages and security headers."""

from __future__ import annotations

import gc
import importlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from importlib.resources import files
from pathlib import Path
from urllib.parse import quote

import jinja2
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from celltrial import __version__
from celltrial.errors import CelltrialError, DataError, EntryRefused, StudyBusy
from celltrial.labels import name_codes
from celltrial.services.errors import EditConflict, NotFound, NotPermitted, SignInRefused
from celltrial.services.monitoring import (
    refresh_after_write,
    start_figure_process,
    stop_figure_process,
    summarize_dashboard,
)
from celltrial.study import StudyHandle, open_study
from celltrial.web.body_limit import MAX_BODY_BYTES, BodyLimit
from celltrial.web.dry_runs import DryRunProcess
from celltrial.web.layers import AnalysesAfterWrites, SessionGate
from celltrial.web.paths import SLASH_IN_SEGMENT, EncodedSlashes, path_part, restore_slashes
from celltrial.web.security import CsrfRefused, NotSignedIn
from celltrial.web.validation import page_summary, readable_errors

WEB_USER = "celltrial-web"
_log = logging.getLogger(__name__)
#: Reachable without signing in: the sign-in page and API call, and the style sheet.
PUBLIC_ROUTES = frozenset(
    {
        ("GET", "/login"),
        ("POST", "/login"),
        ("POST", "/api/v1/session"),
        ("GET", "/static/style.css"),
    }
)


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("celltrial.web", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["status"] = lambda s: str(s or "").replace("_", " ")
    # test codes in text as their names, as the report and the CLI say them ("PLAT" → "Platelets")
    env.filters["names"] = lambda text: name_codes(text) if isinstance(text, str) else text
    env.filters["urlpart"] = path_part  # a code in an address: /subjects/{{ code|urlpart }}
    return env


#: Record numbers are 32-bit integers in the database.
_MAX_RECORD_NUMBER = 2**31 - 1


async def _record_numbers_in_range(request: Request) -> None:
    """Every route: a record number (path or query parameter ``*_id``) that no record can have is
    not found, rather than an error of the database driver (PostgreSQL: integer out of range)."""
    for params in (request.path_params, request.query_params):
        for name, value in params.items():
            digits = str(value).strip().lstrip("+-")
            if not name.endswith("_id") or not digits.isdigit():
                continue
            if len(digits) > 10 or int(digits) > _MAX_RECORD_NUMBER:
                what = name.removesuffix("_id").replace("_", " ")
                raise NotFound(f"no {what} {value}: record numbers are below 2³¹")


#: Modules the pages import on first use (CT trajectories, the report, figures drawn here).
_IMPORTED_ON_FIRST_USE = (
    "celltrial.imaging.progression",
    "celltrial.report.build",
    "celltrial.report.profiles",
)


#: Methods a route may answer, in the order an ``Allow`` header lists them.
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """The methods the routes of ``path`` answer (the ``Allow`` header of a 405): every route of
    the path, not only the first one the router found."""
    allowed = []
    for method in _METHODS:
        scope = {"type": "http", "method": method, "path": path, "root_path": ""}
        if any(route.matches(scope)[0] == Match.FULL for route in app.router.routes):
            allowed.append(method)
    return allowed


def _warm_up(study: StudyHandle) -> None:
    """Make at start what the first requests would: the study's analyses and dashboard, and the
    modules imported on first use. Then move all of it (some 300,000 objects that live as long
    as the process) out of the cyclic collector's way: its full passes then pause requests for
    a few milliseconds instead of about 0.1 s."""
    for module in _IMPORTED_ON_FIRST_USE:
        importlib.import_module(module)
    try:
        summarize_dashboard(study)
    except Exception:  # the app starts all the same; the first request shows what is wrong
        _log.exception("the study's analyses failed at start-up")
    gc.collect()
    gc.freeze()


def create_app(
    study_dir: str | Path,
    db_url: str | None = None,
    *,
    figure_process: bool = False,
    upload_process: bool = False,
) -> FastAPI:
    """The web app of the study in ``study_dir`` (database: ``db_url``, else the study default).

    ``figure_process``: draw subject figures in a separate process while the app runs (what
    ``celltrial serve`` does), so that drawing does not hold up the other requests.
    ``upload_process``: check uploaded files in a worker process (``celltrial serve`` too), so
    that parsing a large workbook does not slow the pages down.
    """
    study = open_study(study_dir, db_url=db_url, user=WEB_USER)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if figure_process:
            start_figure_process()
        if upload_process:
            app.state.dry_runs = DryRunProcess(study, user=WEB_USER)
            app.state.dry_runs.start()
        await run_in_threadpool(_warm_up, study)
        try:
            yield
        finally:
            if figure_process:
                stop_figure_process()
            if upload_process:
                app.state.dry_runs.stop()
                app.state.dry_runs = None

    app = FastAPI(
        lifespan=lifespan,
        title=f"celltrial — {study.study_id}",
        version=__version__,
        description="Study data entry, review and audit trail. Every call needs a signed-in "
        "session (POST /api/v1/session); writes need the X-CSRF-Token header.",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=[Depends(_record_numbers_in_range), Depends(restore_slashes)],
    )
    app.state.study = study
    app.state.templates = _templates()
    app.state.css = files("celltrial.web").joinpath("static/style.css").read_bytes()

    def wants_json(request: Request) -> bool:
        return request.url.path.startswith("/api/")

    def error_page(request: Request, status: int, title: str, message: str) -> Response:
        if wants_json(request):
            return JSONResponse({"detail": message}, status_code=status)
        active = getattr(request.state, "active", None)
        html = app.state.templates.get_template("error.html.j2").render(
            title=title, message=message, active=active, csrf_token=""
        )
        return HTMLResponse(html, status_code=status)

    @app.exception_handler(NotSignedIn)
    async def _not_signed_in(request: Request, _exc: NotSignedIn) -> Response:
        if wants_json(request):
            return JSONResponse({"detail": "sign in first"}, status_code=401)
        path = request.url.path.replace(SLASH_IN_SEGMENT, "%2F")
        target = path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)

    @app.exception_handler(NotPermitted)
    async def _not_permitted(request: Request, exc: NotPermitted) -> Response:
        return error_page(request, 403, "Not permitted", str(exc))

    @app.exception_handler(CsrfRefused)
    async def _csrf(request: Request, _exc: CsrfRefused) -> Response:
        return error_page(
            request,
            403,
            "Form expired",
            "The form had no valid security token (CSRF). Nothing was saved; go back, reload "
            "the page and submit again.",
        )

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> Response:
        return error_page(request, 404, "Not found", str(exc))

    @app.exception_handler(EditConflict)
    async def _conflict(request: Request, exc: EditConflict) -> Response:
        return error_page(request, 409, "Changed by someone else", str(exc))

    @app.exception_handler(SignInRefused)
    async def _refused(request: Request, exc: SignInRefused) -> Response:
        return error_page(request, 401, "Sign-in failed", str(exc))

    @app.exception_handler(DataError)
    async def _data(request: Request, exc: DataError) -> Response:
        return error_page(request, 422, "Not saved", str(exc))

    @app.exception_handler(EntryRefused)
    async def _entry_refused(request: Request, exc: EntryRefused) -> Response:
        # the API says it field by field (the forms show each message beside its field)
        if not wants_json(request):
            return error_page(request, 422, "Not saved", str(exc))
        fields = {
            "problems": exc.problems,
            "overridable": exc.overridable,
            "warnings": exc.warnings,
        }
        return JSONResponse({"detail": str(exc)} | fields, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> Response:
        # FastAPI's shape (a list of problems with their place), each said in plain words
        problems = readable_errors(exc.errors())
        if not wants_json(request):
            return error_page(request, 422, "Not done", page_summary(problems))
        return JSONResponse({"detail": problems}, status_code=422)

    @app.exception_handler(StudyBusy)
    async def _busy(request: Request, exc: StudyBusy) -> Response:
        response = error_page(request, 503, "Study busy, try again", str(exc))
        response.headers["Retry-After"] = str(exc.retry_after_seconds)
        return response

    @app.exception_handler(CelltrialError)
    async def _celltrial(request: Request, exc: CelltrialError) -> Response:
        return error_page(request, 400, "Not done", str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        response = error_page(request, exc.status_code, "Error", str(exc.detail))
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:  # every method of the path, not only its first route's
            response.headers["Allow"] = ", ".join(allowed_methods(app, request.url.path))
        return response

    @app.get("/static/style.css", include_in_schema=False)
    def stylesheet() -> Response:
        return Response(app.state.css, media_type="text/css")

    from celltrial.web import imports, reports, subjects
    from celltrial.web.api import router as api_router
    from celltrial.web.pages import router as pages_router

    def body_limit(scope) -> int:
        if (scope.get("method"), scope.get("path")) in imports.UPLOAD_ROUTES:
            return imports.upload_body_limit(app)
        return MAX_BODY_BYTES

    app.add_middleware(AnalysesAfterWrites, refresh=partial(refresh_after_write, study))

    async def not_signed_in(request: Request) -> Response:
        return await _not_signed_in(request, NotSignedIn())

    app.add_middleware(SessionGate, public=PUBLIC_ROUTES, refuse=not_signed_in)
    app.add_middleware(EncodedSlashes)
    # outermost of the app's own layers: a body over the limit is refused before anything reads it
    app.add_middleware(BodyLimit, limit_for=body_limit)

    app.state.report_builder = reports.ReportBuilder(study)
    app.include_router(api_router)
    app.include_router(imports.api_router)
    app.include_router(reports.api_router)
    app.include_router(subjects.api_router)
    app.include_router(pages_router)
    app.include_router(imports.router)
    app.include_router(reports.router)
    app.include_router(subjects.router)
    return app
