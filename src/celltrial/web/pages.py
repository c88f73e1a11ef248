"""Server-rendered pages: parse the form, call a service, render (plain HTML forms, no script)."""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable
from functools import partial
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel

from celltrial.catalogue import load_catalogue
from celltrial.errors import DataError, StudyBusy
from celltrial.safety.events import load_ae_vocabulary
from celltrial.services import (
    adverse_events,
    clinical_status,
    ct_scans,
    infusions,
    lots,
    monitoring,
    queries,
    signatures,
    vital_signs,
)
from celltrial.services.accounts import (
    ROLES,
    SESSION_LIFETIME,
    ActiveSession,
    add_user,
    change_password,
    deactivate,
    end_sessions,
    list_users,
    reactivate,
    read_session,
    reset_password,
    set_role,
    sign_in,
    sign_out,
    unlock,
)
from celltrial.services.audit_log import read_audit_log
from celltrial.services.audit_trail import audit_chain_status, read_audit_trail
from celltrial.services.casebook import MYCOPLASMA_RESULTS, RELEASE_STATUSES, STERILITY_RESULTS
from celltrial.services.errors import (
    AccountError,
    EditConflict,
    NotFound,
    NotPermitted,
    SignatureRefused,
    SignInRefused,
)
from celltrial.services.passwords import MIN_PASSWORD_LENGTH
from celltrial.services.subject_records import read_subject_records
from celltrial.study import StudyHandle
from celltrial.web.forms import (
    ErrorMessage,
    local_input,
    parse_form,
    record_values,
    unstorable_fields,
)
from celltrial.web.paths import path_part
from celltrial.web.schemas import (
    AdverseEventCreate,
    AdverseEventUpdate,
    ClinicalStatusCreate,
    ClinicalStatusUpdate,
    InfusionCreate,
    InfusionUpdate,
    LotCreate,
    LotUpdate,
    VitalSignsCreate,
    VitalSignsUpdate,
)
from celltrial.web.security import (
    CHANGE_PASSWORD_PAGE,
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    allowed,
    checked_form,
    clear_session_cookie,
    client_address,
    new_sign_in_token,
    set_session_cookie,
    set_sign_in_cookie,
    signed_in,
    study_of,
)

router = APIRouter(include_in_schema=False)
Reader = Annotated[ActiveSession, allowed("read_study")]


def render(
    request: Request,
    template: str,
    active: ActiveSession | None,
    *,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    study = study_of(request)
    html = request.app.state.templates.get_template(template).render(
        active=active,
        csrf_token=active.csrf_token if active else "",
        study_id=study.study_id,
        zone=study.protocol.study.timezone,
        local=lambda t: local_input(t, study.protocol.study.zone).replace("T", " "),
        **context,
    )
    return HTMLResponse(html, status_code=status)


def _safe_next(target: str | None) -> str:
    """Only a path on this site (no scheme, no host, no '//'): no open redirect."""
    if not target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


def _saved(
    save: Callable[[], str],
    show: Callable[..., HTMLResponse],
    values: dict[str, Any],
    *,
    kind: str = "",
) -> Response:
    """Run ``save`` (it returns the page to go to next); when the entry is refused or the record
    changed meanwhile, show the form again with the values posted and the message (what it
    says of each field of form ``kind`` beside the field: :class:`ErrorMessage`)."""
    try:
        target = save()
    except EditConflict as exc:
        return show(values=values, error=str(exc), status=409)
    except DataError as exc:
        values.pop("confirm_warnings", None)  # a confirmation holds for the warnings it saw
        return show(values=values, error=ErrorMessage.of(exc, kind=kind), status=422)
    except StudyBusy as exc:  # nothing stored; the entry stays in the form to submit again
        response = show(
            values=values,
            error=f"{exc} Your entry is kept below: submit it again in a moment.",
            status=503,
        )
        response.headers["Retry-After"] = str(exc.retry_after_seconds)
        return response
    return RedirectResponse(target, status_code=303)


def _save_edit(
    values: dict[str, Any],
    study: StudyHandle,
    active: ActiveSession,
    row_id: int,
    *,
    schema: type[BaseModel],
    kind: str,
    edit: Callable[..., object],
    then: str,
    show: Callable[..., HTMLResponse],
) -> Response:
    """Save an edit posted from a form (version and reason included) through the service's
    ``edit`` and go to ``then``, or show the form again with the message (:func:`_saved`)."""

    def save() -> str:
        body = parse_form(values, schema, kind=kind, zone=study.protocol.study.zone)
        body.save(edit, study, row_id, active.account.username)
        return then

    return _saved(save, show, values, kind=kind)


# --- sign-in -----------------------------------------------------------------------------------


def _login_form(
    request: Request, *, next: str, status: int = 200, error: str | None = None
) -> HTMLResponse:
    # keep a token the browser already holds: a second tab or a redirected favicon request must
    # not invalidate the form on screen (a refused attempt gets a new one)
    held = request.cookies.get(SIGN_IN_COOKIE, "")
    token = held if len(held) == 43 and error is None else new_sign_in_token()
    response = render(
        request, "login.html.j2", None, status=status, next=next, form_token=token, error=error
    )
    set_sign_in_cookie(response, token)
    return response


@router.get("/login")
def login_page(request: Request, next: str = "/") -> Response:
    target = _safe_next(next)
    token = request.cookies.get(SESSION_COOKIE, "")
    active = read_session(study_of(request).engine, token) if token else None
    if active is not None and active.account.must_change_password:
        # a session whose password an administrator set: to the page that changes it
        return RedirectResponse(f"{CHANGE_PASSWORD_PAGE}?next={quote(target)}", status_code=303)
    return _login_form(request, next=target)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    cookie = request.cookies.get(SIGN_IN_COOKIE, "")
    posted = str(form.get("form_token") or "")
    target = _safe_next(str(form.get("next") or "/"))
    if not cookie or not hmac.compare_digest(cookie, posted):
        error = "The sign-in form expired. Please sign in again."
        return _login_form(request, next=target, status=403, error=error)
    unstorable = unstorable_fields(dict(form), {"username": "user name", "password": "password"})
    if unstorable is not None:
        return _login_form(request, next=target, status=422, error=unstorable)
    try:
        signed = sign_in(
            study_of(request).engine,
            str(form.get("username") or "").strip(),
            str(form.get("password") or ""),
            address=client_address(request),
        )
    except SignInRefused as exc:
        return _login_form(request, next=target, status=401, error=str(exc))
    if signed.account.must_change_password:
        target = f"{CHANGE_PASSWORD_PAGE}?next={quote(target)}"
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(response, signed.token, max_age=int(SESSION_LIFETIME.total_seconds()))
    response.delete_cookie(SIGN_IN_COOKIE, path="/")
    return response


@router.post("/logout")
async def logout(request: Request, active: Reader) -> Response:
    await checked_form(request, active)
    sign_out(
        study_of(request).engine,
        request.cookies.get(SESSION_COOKIE, ""),
        address=client_address(request),
    )
    response = RedirectResponse("/login", status_code=303)
    clear_session_cookie(response)
    return response


def _password_form(
    request: Request,
    active: ActiveSession,
    *,
    next: str,
    status: int = 200,
    error: str | None = None,
) -> HTMLResponse:
    return render(
        request,
        "account_password.html.j2",
        active,
        status=status,
        next=next,
        error=error,
        min_length=MIN_PASSWORD_LENGTH,
    )


#: The fields of the change-password form, as its messages name them.
_PASSWORD_FIELDS = {
    "current_password": "current password",
    "new_password": "new password",
    "confirm_password": "new password again",
}


@router.get(CHANGE_PASSWORD_PAGE)
def password_page(
    request: Request, active: Annotated[ActiveSession, Depends(signed_in)], next: str = "/"
) -> HTMLResponse:
    """Change one's own password (the only page a password set by an administrator reaches)."""
    return _password_form(request, active, next=_safe_next(next))


@router.post(CHANGE_PASSWORD_PAGE)
async def change_own_password(
    request: Request, active: Annotated[ActiveSession, Depends(signed_in)]
) -> Response:
    values = await checked_form(request, active)
    target = _safe_next(str(values.get("next") or "/"))
    unstorable = unstorable_fields(values, _PASSWORD_FIELDS)
    if unstorable is not None:
        return _password_form(request, active, next=target, status=422, error=unstorable)
    new = str(values.get("new_password") or "")
    if new != str(values.get("confirm_password") or ""):
        error = "new password: the two entries differ; nothing was changed"
        return _password_form(request, active, next=target, status=422, error=error)
    try:
        change_password(
            study_of(request).engine,
            active.account.username,
            str(values.get("current_password") or ""),
            new,
            keep_token=request.cookies.get(SESSION_COOKIE, ""),
            address=client_address(request),
        )
    except SignInRefused as exc:
        return _password_form(request, active, next=target, status=403, error=str(exc))
    except AccountError as exc:
        return _password_form(request, active, next=target, status=422, error=str(exc))
    return RedirectResponse(target, status_code=303)


# --- reading -----------------------------------------------------------------------------------


@router.get("/")
def dashboard(request: Request, active: Reader) -> HTMLResponse:
    study = study_of(request)
    view = monitoring.summarize_dashboard(study)
    open_queries = queries.list_queries(study, open_only=True)
    return render(
        request,
        "dashboard.html.j2",
        active,
        view=view,
        open_queries=open_queries,
        audit_chain=audit_chain_status(study),
    )


@router.get("/subjects/{code}")
def subject(code: str, request: Request, active: Reader) -> HTMLResponse:
    study = study_of(request)
    view = monitoring.summarize_subject(study, code)
    records = read_subject_records(study, code, with_review=True)
    return render(
        request,
        "subject.html.j2",
        active,
        view=view,
        recorded=records.infusions,
        events=records.adverse_events,
        queries=records.queries,
        signatures=records.signatures,
        rounds=records.vital_signs,
        statuses=records.clinical_status,
        scans=records.ct_scans,
        labels=vital_signs.FIELD_LABELS,
    )


@router.get("/subjects/{code}/profile.png")
def subject_figure(code: str, request: Request, _active: Reader) -> Response:
    png = monitoring.render_subject_figure(study_of(request), code)
    return Response(png, media_type="image/png")


@router.get("/subjects/{code}/ct.png")
def subject_ct_figure(code: str, request: Request, _active: Reader) -> Response:
    """The subject's baseline CT beside the last follow-up (overlays kept at quantification)."""
    return Response(ct_scans.render_ct_comparison(study_of(request), code), media_type="image/png")


@router.get("/audit/{table}/{row_id}")
def audit_trail(
    table: str,
    row_id: int,
    request: Request,
    active: Annotated[ActiveSession, allowed("read_audit")],
) -> HTMLResponse:
    trail = read_audit_trail(study_of(request), table, row_id)
    return render(request, "audit.html.j2", active, trail=trail)


# --- infusions ---------------------------------------------------------------------------------


def _infusion_form(
    request: Request,
    active: ActiveSession,
    code: str,
    *,
    values: dict[str, Any],
    record: infusions.InfusionRecord | None = None,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    study = study_of(request)
    for box in ("completed", "reaction"):  # a posted form has "on" or nothing
        values[box] = bool(values.get(box))
    return render(
        request,
        "infusion_form.html.j2",
        active,
        status=status,
        code=code,
        values=values,
        record=record,
        error=error,
        dose=study.protocol.regimen.dose.cells,
        n_infusions=study.protocol.regimen.n_infusions,
    )


@router.get("/subjects/{code}/infusions/new")
def new_infusion(
    code: str, request: Request, active: Annotated[ActiveSession, allowed("enter_infusion")]
) -> HTMLResponse:
    monitoring.summarize_subject(study_of(request), code)  # 404 for an unknown subject
    return _infusion_form(request, active, code, values={"completed": True})


@router.post("/subjects/{code}/infusions")
async def create_infusion(
    code: str, request: Request, active: Annotated[ActiveSession, allowed("enter_infusion")]
) -> Response:
    values = await checked_form(request, active)
    study = study_of(request)

    def save() -> str:
        body = parse_form(values, InfusionCreate, kind="infusion", zone=study.protocol.study.zone)
        record = infusions.record_infusion(study, code, body.entry(), user=active.account.username)
        if record.reaction:
            return f"/subjects/{path_part(code)}/adverse-events/new?infusion={record.number}"
        return f"/subjects/{path_part(code)}"

    show = partial(_infusion_form, request, active, code)
    return _saved(save, show, values, kind="infusion")


@router.get("/infusions/{infusion_id}/edit")
def edit_infusion_page(
    infusion_id: int, request: Request, active: Annotated[ActiveSession, allowed("edit_data")]
) -> HTMLResponse:
    study = study_of(request)
    record = infusions.read_infusion(study, infusion_id)
    values = record_values(record, study.protocol.study.zone)
    return _infusion_form(request, active, record.subject_code, values=values, record=record)


@router.post("/infusions/{infusion_id}/edit")
async def edit_infusion(
    infusion_id: int, request: Request, active: Annotated[ActiveSession, allowed("edit_data")]
) -> Response:
    values = await checked_form(request, active)
    study = study_of(request)
    record = infusions.read_infusion(study, infusion_id)
    return _save_edit(
        values,
        study,
        active,
        infusion_id,
        schema=InfusionUpdate,
        kind="infusion",
        edit=infusions.edit_infusion,
        then=f"/subjects/{path_part(record.subject_code)}",
        show=partial(_infusion_form, request, active, record.subject_code, record=record),
    )


# --- adverse events ----------------------------------------------------------------------------


def _event_form(
    request: Request,
    active: ActiveSession,
    code: str,
    *,
    values: dict[str, Any],
    record: adverse_events.AdverseEventRecord | None = None,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    criteria = values.get("serious_criteria") or []
    values["serious_criteria"] = [criteria] if isinstance(criteria, str) else list(criteria)
    return render(
        request,
        "event_form.html.j2",
        active,
        status=status,
        code=code,
        values=values,
        record=record,
        error=error,
        vocabulary=load_ae_vocabulary(),
    )


@router.get("/subjects/{code}/adverse-events/new")
def new_event(
    code: str,
    request: Request,
    active: Annotated[ActiveSession, allowed("enter_adverse_event")],
    infusion: int | None = None,
) -> HTMLResponse:
    study = study_of(request)
    values: dict[str, Any] = {}
    if infusion is not None:
        for record in infusions.list_infusions(study, code):
            if record.number == infusion:
                values = {
                    "term": "Infusion related reaction",
                    "onset_at": local_input(record.started_at, study.protocol.study.zone),
                    "description": record.reaction_description or "",
                }
    else:
        monitoring.summarize_subject(study, code)
    return _event_form(request, active, code, values=values)


@router.post("/subjects/{code}/adverse-events")
async def create_event(
    code: str, request: Request, active: Annotated[ActiveSession, allowed("enter_adverse_event")]
) -> Response:
    values = await checked_form(request, active)
    study = study_of(request)

    def save() -> str:
        zone = study.protocol.study.zone
        body = parse_form(values, AdverseEventCreate, kind="adverse_event", zone=zone)
        adverse_events.record_event(study, code, body.entry(), user=active.account.username)
        return f"/subjects/{path_part(code)}"

    return _saved(save, partial(_event_form, request, active, code), values, kind="adverse_event")


@router.get("/adverse-events/{event_id}/edit")
def edit_event_page(
    event_id: int, request: Request, active: Annotated[ActiveSession, allowed("edit_data")]
) -> HTMLResponse:
    study = study_of(request)
    record = adverse_events.read_event(study, event_id)
    values = record_values(record, study.protocol.study.zone)
    values["expected"] = {True: "yes", False: "no"}.get(record.expected, "")
    return _event_form(request, active, record.subject_code, values=values, record=record)


@router.post("/adverse-events/{event_id}/edit")
async def edit_event(
    event_id: int, request: Request, active: Annotated[ActiveSession, allowed("edit_data")]
) -> Response:
    values = await checked_form(request, active)
    study = study_of(request)
    record = adverse_events.read_event(study, event_id)
    return _save_edit(
        values,
        study,
        active,
        event_id,
        schema=AdverseEventUpdate,
        kind="adverse_event",
        edit=adverse_events.edit_event,
        then=f"/subjects/{path_part(record.subject_code)}",
        show=partial(_event_form, request, active, record.subject_code, record=record),
    )


# --- vital signs -------------------------------------------------------------------------------


def _vital_signs_form(
    request: Request,
    active: ActiveSession,
    code: str,
    *,
    values: dict[str, Any],
    record: vital_signs.VitalSignsRecord | None = None,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "vital_signs_form.html.j2",
        active,
        status=status,
        code=code,
        values=values,
        record=record,
        error=error,
        fields=vital_signs.VITAL_FIELDS,
        labels=vital_signs.FIELD_LABELS,
        entry_units=vital_signs.ENTRY_UNITS,
        unit_labels=vital_signs.UNIT_LABELS,
        catalogue={f: load_catalogue().get(c) for f, c in vital_signs.VITAL_FIELDS.items()},
    )


@router.get("/subjects/{code}/vital-signs")
def vital_signs_page(code: str, request: Request, active: Reader) -> HTMLResponse:
    """Every round of vital signs of the subject, newest first."""
    study = study_of(request)
    rounds = vital_signs.list_vital_signs(study, code)
    return render(
        request,
        "vital_signs.html.j2",
        active,
        code=code,
        rounds=rounds[::-1],
        labels=vital_signs.FIELD_LABELS,
    )


@router.get("/subjects/{code}/vital-signs/new")
def new_vital_signs(
    code: str, request: Request, active: Annotated[ActiveSession, allowed("enter_vital_signs")]
) -> HTMLResponse:
    monitoring.summarize_subject(study_of(request), code)  # 404 for an unknown subject
    return _vital_signs_form(request, active, code, values={})


@router.post("/subjects/{code}/vital-signs")
async def create_vital_signs(
    code: str, request: Request, active: Annotated[ActiveSession, allowed("enter_vital_signs")]
) -> Response:
    values = await checked_form(request, active)
    study = study_of(request)

    def save() -> str:
        zone = study.protocol.study.zone
        body = parse_form(values, VitalSignsCreate, kind="vital_signs", zone=zone)
        vital_signs.record_vital_signs(study, code, body.entry(), user=active.account.username)
        return f"/subjects/{path_part(code)}#vital-signs"

    show = partial(_vital_signs_form, request, active, code)
    return _saved(save, show, values, kind="vital_signs")


@router.get("/vital-signs/{round_id}/edit")
def edit_vital_signs_page(
    round_id: int, request: Request, active: Annotated[ActiveSession, allowed("edit_data")]
) -> HTMLResponse:
    study = study_of(request)
    record = vital_signs.read_vital_signs(study, round_id)
    values = vital_signs.form_values(record) | {
        "time": local_input(record.time, study.protocol.study.zone),
        "version": record.version,
    }
    return _vital_signs_form(request, active, record.subject_code, values=values, record=record)


@router.post("/vital-signs/{round_id}/edit")
async def edit_vital_signs(
    round_id: int, request: Request, active: Annotated[ActiveSession, allowed("edit_data")]
) -> Response:
    values = await checked_form(request, active)
    study = study_of(request)
    record = vital_signs.read_vital_signs(study, round_id)
    return _save_edit(
        values,
        study,
        active,
        round_id,
        schema=VitalSignsUpdate,
        kind="vital_signs",
        edit=vital_signs.edit_vital_signs,
        then=f"/subjects/{path_part(record.subject_code)}#vital-signs",
        show=partial(_vital_signs_form, request, active, record.subject_code, record=record),
    )


# --- clinical status ---------------------------------------------------------------------------


def _status_form(
    request: Request,
    active: ActiveSession,
    code: str,
    *,
    values: dict[str, Any],
    record: clinical_status.ClinicalStatusRecord | None = None,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "clinical_status_form.html.j2",
        active,
        status=status,
        code=code,
        values=values,
        record=record,
        error=error,
        levels=clinical_status.who_levels(),
        supports=clinical_status.offered_support(),
        fio2_units=vital_signs.ENTRY_UNITS["fio2"],
        unit_labels=vital_signs.UNIT_LABELS,
    )


@router.get("/subjects/{code}/clinical-status/new")
def new_clinical_status(
    code: str,
    request: Request,
    active: Annotated[ActiveSession, allowed("enter_clinical_status")],
) -> HTMLResponse:
    monitoring.summarize_subject(study_of(request), code)  # 404 for an unknown subject
    return _status_form(request, active, code, values={})


@router.post("/subjects/{code}/clinical-status")
async def create_clinical_status(
    code: str,
    request: Request,
    active: Annotated[ActiveSession, allowed("enter_clinical_status")],
) -> Response:
    values = await checked_form(request, active)
    study = study_of(request)

    def save() -> str:
        zone = study.protocol.study.zone
        body = parse_form(values, ClinicalStatusCreate, kind="clinical_status", zone=zone)
        clinical_status.record_clinical_status(
            study, code, body.entry(), user=active.account.username
        )
        return f"/subjects/{path_part(code)}#clinical-status"

    show = partial(_status_form, request, active, code)
    return _saved(save, show, values, kind="clinical_status")


@router.get("/clinical-status/{status_id}/edit")
def edit_clinical_status_page(
    status_id: int, request: Request, active: Annotated[ActiveSession, allowed("edit_data")]
) -> HTMLResponse:
    study = study_of(request)
    record = clinical_status.read_clinical_status(study, status_id)
    values = record_values(record, study.protocol.study.zone)
    return _status_form(request, active, record.subject_code, values=values, record=record)


@router.post("/clinical-status/{status_id}/edit")
async def edit_clinical_status(
    status_id: int, request: Request, active: Annotated[ActiveSession, allowed("edit_data")]
) -> Response:
    values = await checked_form(request, active)
    study = study_of(request)
    record = clinical_status.read_clinical_status(study, status_id)
    return _save_edit(
        values,
        study,
        active,
        status_id,
        schema=ClinicalStatusUpdate,
        kind="clinical_status",
        edit=clinical_status.edit_clinical_status,
        then=f"/subjects/{path_part(record.subject_code)}#clinical-status",
        show=partial(_status_form, request, active, record.subject_code, record=record),
    )


# --- product lots ------------------------------------------------------------------------------


@router.get("/lots")
def lots_page(request: Request, active: Reader) -> HTMLResponse:
    """The lot register with each lot's release check against the protocol's criteria."""
    study = study_of(request)
    return render(
        request,
        "lots.html.j2",
        active,
        lots=lots.list_lots(study),
        release=study.protocol.product.release,
    )


def _lot_form(
    request: Request,
    active: ActiveSession,
    *,
    values: dict[str, Any],
    record: lots.LotRecord | None = None,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "lot_form.html.j2",
        active,
        status=status,
        values=values,
        record=record,
        error=error,
        release=study_of(request).protocol.product.release,
        statuses=RELEASE_STATUSES,
        sterility_results=STERILITY_RESULTS,
        mycoplasma_results=MYCOPLASMA_RESULTS,
    )


@router.get("/lots/new")
def new_lot(
    request: Request, active: Annotated[ActiveSession, allowed("manage_lots")]
) -> HTMLResponse:
    return _lot_form(request, active, values={"release_status": "quarantine"})


@router.post("/lots")
async def create_lot(
    request: Request, active: Annotated[ActiveSession, allowed("manage_lots")]
) -> Response:
    values = await checked_form(request, active)
    study = study_of(request)

    def save() -> str:
        body = parse_form(values, LotCreate, kind="lot", zone=study.protocol.study.zone)
        lots.create_lot(study, body.entry(), user=active.account.username)
        return "/lots"

    return _saved(save, partial(_lot_form, request, active), values)


@router.get("/lots/{lot_id}/edit")
def edit_lot_page(
    lot_id: int, request: Request, active: Annotated[ActiveSession, allowed("manage_lots")]
) -> HTMLResponse:
    study = study_of(request)
    record = lots.read_lot(study, lot_id)
    values = record_values(record, study.protocol.study.zone)
    return _lot_form(request, active, values=values, record=record)


@router.post("/lots/{lot_id}/edit")
async def edit_lot(
    lot_id: int, request: Request, active: Annotated[ActiveSession, allowed("manage_lots")]
) -> Response:
    values = await checked_form(request, active)
    study = study_of(request)
    record = lots.read_lot(study, lot_id)
    return _save_edit(
        values,
        study,
        active,
        lot_id,
        schema=LotUpdate,
        kind="lot",
        edit=lots.edit_lot,
        then="/lots",
        show=partial(_lot_form, request, active, record=record),
    )


# --- accounts ----------------------------------------------------------------------------------

#: What the users page says after an administrator's action (?done=KEY&user=NAME).
_DONE = {
    "created": "account created; its password must be changed at the first sign-in",
    "unlocked": "unlocked",
    "deactivated": "deactivated; its sessions ended",
    "reactivated": "reactivated",
    "role": "role changed",
    "sessions": "sessions ended",
}
Admin = Annotated[ActiveSession, allowed("manage_users")]


def _users_page(
    request: Request,
    active: ActiveSession,
    *,
    values: dict[str, Any] | None = None,
    status: int = 200,
    error: str | None = None,
    notice: str | None = None,
    one_time: tuple[str, str] | None = None,
) -> HTMLResponse:
    return render(
        request,
        "users.html.j2",
        active,
        status=status,
        users=list_users(study_of(request).engine),
        roles=ROLES,
        values=values or {},
        error=error,
        notice=notice,
        one_time=one_time,
        min_length=MIN_PASSWORD_LENGTH,
    )


@router.get("/users")
def users_page(request: Request, active: Admin, done: str = "", user: str = "") -> HTMLResponse:
    notice = None
    if done in _DONE and re.fullmatch(r"[a-z0-9._-]{1,64}", user):
        notice = f"{user}: {_DONE[done]}."
    return _users_page(request, active, notice=notice)


#: The fields of the new-account form, as its messages name them.
_NEW_USER_FIELDS = {"username": "user name", "full_name": "full name", "password": "password"}


@router.post("/users")
async def create_user(request: Request, active: Admin) -> Response:
    values = await checked_form(request, active)
    unstorable = unstorable_fields(values, _NEW_USER_FIELDS)
    if unstorable is not None:
        refused = {"password", *unstorable.problems}
        shown = {k: v for k, v in values.items() if k not in refused}
        return _users_page(request, active, values=shown, status=422, error=unstorable)
    username = str(values.get("username") or "").strip()
    try:
        add_user(
            study_of(request).engine,
            username=username,
            role=str(values.get("role") or ""),
            password=str(values.get("password") or ""),
            full_name=str(values.get("full_name") or ""),
            by=active.account.username,
            must_change_password=True,
        )
    except AccountError as exc:
        values.pop("password", None)
        return _users_page(request, active, values=values, status=422, error=str(exc))
    return RedirectResponse(f"/users?done=created&user={quote(username)}", status_code=303)


@router.post("/users/{username}/{action}")
async def change_user(username: str, action: str, request: Request, active: Admin) -> Response:
    """An administrator's change to one account: reset-password, unlock, deactivate, reactivate,
    role or end-sessions (each audited, with the reason given)."""
    values = await checked_form(request, active)
    engine = study_of(request).engine
    by = active.account.username
    reason = str(values.get("reason") or "")
    try:
        if action == "reset-password":
            one_time = reset_password(engine, username, by=by, reason=reason)
            return _users_page(request, active, one_time=(username, one_time))
        if action == "unlock":
            unlock(engine, username, by=by, reason=reason)
            done = "unlocked"
        elif action == "deactivate":
            deactivate(engine, username, by=by, reason=reason)
            done = "deactivated"
        elif action == "reactivate":
            reactivate(engine, username, by=by, reason=reason)
            done = "reactivated"
        elif action == "role":
            set_role(engine, username, str(values.get("role") or ""), by=by, reason=reason)
            done = "role"
        elif action == "end-sessions":
            end_sessions(engine, username, by=by, reason=reason)
            done = "sessions"
        else:
            raise NotFound(f"no account action {action!r}")
    except AccountError as exc:
        return _users_page(request, active, status=422, error=str(exc))
    return RedirectResponse(f"/users?done={done}&user={quote(username)}", status_code=303)


@router.get("/audit")
def audit_log_page(
    request: Request,
    active: Annotated[ActiveSession, allowed("read_audit_log")],
    user: str = "",
    table: str = "",
    since: str = "",
    until: str = "",
    before: str = "",
    after: str = "",
) -> HTMLResponse:
    """The study's audit log, newest first, by user, table and dates (study time zone)."""
    study = study_of(request)
    filters = {"user": user, "table": table, "since": since, "until": until}
    try:
        page = read_audit_log(study, **filters, before=before, after=after)
    except DataError as exc:
        return render(
            request,
            "audit_log.html.j2",
            active,
            status=422,
            page=read_audit_log(study),
            error=str(exc),
            filters=filters,
        )
    return render(request, "audit_log.html.j2", active, page=page, error=None, filters=filters)


# --- queries -----------------------------------------------------------------------------------


def _query_form(
    request: Request,
    active: ActiveSession,
    table: str,
    row_id: int,
    *,
    values: dict[str, Any],
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    target = queries.read_target_described(study_of(request), table, row_id)
    return render(
        request,
        "query_form.html.j2",
        active,
        status=status,
        code=target.subject_code,
        table=table,
        row_id=row_id,
        target=target,
        values=values,
        error=error,
    )


@router.get("/queries/new")
def new_query(
    request: Request,
    active: Annotated[ActiveSession, allowed("raise_query")],
    table: str,
    row_id: int,
    field: str | None = None,
) -> HTMLResponse:
    return _query_form(request, active, table, row_id, values={"field": field or ""})


@router.post("/queries")
async def create_query(
    request: Request, active: Annotated[ActiveSession, allowed("raise_query")]
) -> Response:
    values = await checked_form(request, active)
    table = str(values.get("table") or "")
    try:
        row_id = int(str(values.get("row_id") or ""))
    except ValueError:
        raise DataError("record: expected a record number") from None
    try:
        record = queries.raise_query(
            study_of(request),
            table,
            row_id,
            str(values.get("field") or ""),
            str(values.get("question") or ""),
            user=active.account.username,
        )
    except DataError as exc:
        return _query_form(
            request, active, table, row_id, values=values, error=str(exc), status=422
        )
    return RedirectResponse(f"/subjects/{path_part(record.subject_code)}#queries", status_code=303)


def _version(values: dict[str, object]) -> int | None:
    text = str(values.get("version") or "").strip()
    return int(text) if text.isdigit() else None


@router.post("/queries/{query_id}/answer")
async def answer_query(
    query_id: int, request: Request, active: Annotated[ActiveSession, allowed("answer_query")]
) -> Response:
    values = await checked_form(request, active)
    record = queries.answer_query(
        study_of(request),
        query_id,
        str(values.get("answer") or ""),
        user=active.account.username,
        version=_version(values),
    )
    return RedirectResponse(f"/subjects/{path_part(record.subject_code)}#queries", status_code=303)


@router.post("/queries/{query_id}/close")
async def close_query(
    query_id: int, request: Request, active: Annotated[ActiveSession, allowed("close_query")]
) -> Response:
    values = await checked_form(request, active)
    record = queries.close_query(
        study_of(request),
        query_id,
        str(values.get("note") or ""),
        user=active.account.username,
        version=_version(values),
    )
    return RedirectResponse(f"/subjects/{path_part(record.subject_code)}#queries", status_code=303)


# --- casebook signature ------------------------------------------------------------------------


def _sign_form(
    request: Request,
    active: ActiveSession,
    code: str,
    *,
    error: str | None = None,
    status: int = 200,
    meaning: str = "",
) -> HTMLResponse:
    study = study_of(request)
    return render(
        request,
        "sign_form.html.j2",
        active,
        status=status,
        code=code,
        view=monitoring.summarize_subject(study, code),
        current=signatures.current_signature(study, code),
        meanings=signatures.SIGNATURE_MEANINGS,
        meaning=meaning,
        error=error,
        open_queries=queries.list_queries(study, subject_code=code, open_only=True),
    )


@router.get("/subjects/{code}/sign")
def sign_page(
    code: str, request: Request, active: Annotated[ActiveSession, allowed("sign_casebook")]
) -> HTMLResponse:
    return _sign_form(request, active, code)


@router.post("/subjects/{code}/sign")
async def sign(
    code: str, request: Request, active: Annotated[ActiveSession, allowed("sign_casebook")]
) -> Response:
    values = await checked_form(request, active)
    meaning = str(values.get("meaning") or "")
    # the queries the form showed open: those the signer confirms (not one raised since)
    shown = str(values.get("confirm_open_queries") or "").split(",")
    try:
        signatures.sign_casebook(
            study_of(request),
            code,
            username=active.account.username,
            password=str(values.get("password") or ""),
            meaning=meaning,
            confirm_open_queries=[int(n) for n in shown if n.strip().isdigit()],
        )
    except (SignatureRefused, DataError) as exc:
        status = 403 if isinstance(exc, NotPermitted) else 422
        return _sign_form(request, active, code, error=str(exc), status=status, meaning=meaning)
    return RedirectResponse(f"/subjects/{path_part(code)}#signature", status_code=303)
