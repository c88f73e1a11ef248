"""The JSON API beside the pages (OpenAPI at /api/openapi.json): every read and write of the
pages, behind the same sign-in, roles and CSRF token (``X-CSRF-Token`` header on writes)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from celltrial.services import accounts as account_service
from celltrial.services import (
    adverse_events,
    clinical_status,
    ct_scans,
    enrolment,
    infusions,
    lots,
    monitoring,
    queries,
    signatures,
    vital_signs,
)
from celltrial.services.accounts import SESSION_LIFETIME, ActiveSession, sign_in, sign_out
from celltrial.services.audit_log import LOG_TABLES, read_audit_log
from celltrial.services.audit_trail import read_audit_trail
from celltrial.services.errors import AccountError, EditConflict, NotPermitted, SignInRefused
from celltrial.services.subject_records import read_subject_records
from celltrial.web.openapi import build_openapi
from celltrial.web.schemas import (
    TEXT,
    AdverseEventCreate,
    AdverseEventOut,
    AdverseEventUpdate,
    AuditTrailOut,
    ClinicalStatusCreate,
    ClinicalStatusOut,
    ClinicalStatusUpdate,
    CtScanOut,
    DashboardOut,
    EntryRefusedOut,
    ErrorOut,
    InfusionCreate,
    InfusionOut,
    InfusionUpdate,
    LotCreate,
    LotOut,
    LotUpdate,
    QueryAnswer,
    QueryClose,
    QueryCreate,
    QueryOut,
    SignatureCreate,
    SignatureOut,
    SignInRequest,
    SignInResponse,
    SubjectOut,
    VitalSignsCreate,
    VitalSignsOut,
    VitalSignsUpdate,
)
from celltrial.web.security import (
    CSRF_HEADER,
    SESSION_COOKIE,
    allowed,
    api_write,
    check_csrf,
    clear_session_cookie,
    client_address,
    set_session_cookie,
    signed_in,
    study_of,
)
from celltrial.web.validation import register_pattern

_errors = {
    401: {"model": ErrorOut, "description": "Not signed in"},
    403: {"model": ErrorOut, "description": "Role not permitted, or CSRF token missing"},
    404: {"model": ErrorOut, "description": "No such record in this study"},
}
router = APIRouter(prefix="/api", tags=["api"], responses=_errors)

Reader = Annotated[ActiveSession, allowed("read_study")]


@router.get("/openapi.json", include_in_schema=False)
def openapi(request: Request, _active: Reader) -> dict:
    sites = enrolment.list_sites(study_of(request))
    return build_openapi(request.app, sites=sites)  # every router of the app; not the pages


@router.post("/v1/session", response_model=SignInResponse, responses={401: _errors[401]})
def create_session(body: SignInRequest, request: Request, response: Response) -> SignInResponse:
    """Sign in; the session cookie is set, the CSRF token is returned. An account whose password
    an administrator set may then only change it (``POST /api/v1/account/password``)."""
    signed = sign_in(
        study_of(request).engine, body.username, body.password, address=client_address(request)
    )
    set_session_cookie(response, signed.token, max_age=int(SESSION_LIFETIME.total_seconds()))
    return SignInResponse(
        username=signed.account.username,
        role=signed.account.role,
        csrf_token=signed.csrf_token,
        expires_at=signed.expires_at,
    )


@router.delete("/v1/session", status_code=204)
def delete_session(
    request: Request, response: Response, active: Annotated[ActiveSession, Depends(signed_in)]
) -> None:
    """Sign out (needs the CSRF header)."""
    check_csrf(active, request.headers.get(CSRF_HEADER))
    sign_out(
        study_of(request).engine,
        request.cookies.get(SESSION_COOKIE, ""),
        address=client_address(request),
    )
    clear_session_cookie(response)


#: Answers made from what the services keep (the dashboard, a subject's view and records), kept
#: while the services hand out those very objects: (study URL, route, key) -> (the objects, the
#: answer). Making them again (a deep copy and a validation) was most of these reads' work.
_answers: dict[tuple[str, ...], tuple[tuple[object, ...], BaseModel]] = {}


def _answer_of(key: tuple[str, ...], sources: tuple[object, ...], make: Callable[[], Any]) -> Any:
    kept = _answers.get(key)
    if kept is not None and all(a is b for a, b in zip(kept[0], sources, strict=True)):
        return kept[1]
    answer = make()
    _answers[key] = (sources, answer)
    return answer


@router.get("/v1/dashboard", response_model=DashboardOut)
def dashboard(request: Request, _active: Reader) -> DashboardOut:
    study = study_of(request)
    made = monitoring.summarize_dashboard(study)
    return _answer_of((study.url, "dashboard"), (made,), lambda: DashboardOut(**asdict(made)))


@router.get("/v1/subjects/{code}", response_model=SubjectOut)
def subject(code: str, request: Request, _active: Reader) -> SubjectOut:
    study = study_of(request)
    view = monitoring.summarize_subject(study, code)
    records = read_subject_records(study, code)

    def make() -> SubjectOut:
        return SubjectOut(
            **{k: v for k, v in asdict(view).items() if k != "has_observations"},
            recorded_infusions=[InfusionOut.model_validate(r) for r in records.infusions],
            adverse_events=[AdverseEventOut.model_validate(r) for r in records.adverse_events],
            vital_signs=[VitalSignsOut.model_validate(r) for r in records.vital_signs],
            clinical_status=[ClinicalStatusOut.model_validate(r) for r in records.clinical_status],
            ct_scans=[CtScanOut.model_validate(r) for r in records.ct_scans],
        )

    return _answer_of((study.url, "subject", code), (view, records), make)


@router.get("/v1/subjects/{code}/infusions", response_model=list[InfusionOut])
def subject_infusions(code: str, request: Request, _active: Reader) -> list[InfusionOut]:
    return [
        InfusionOut.model_validate(r) for r in infusions.list_infusions(study_of(request), code)
    ]


@router.post(
    "/v1/subjects/{code}/infusions",
    response_model=InfusionOut,
    status_code=201,
    responses={422: {"model": EntryRefusedOut, "description": "Bedside check or entry refused"}},
)
def create_infusion(
    code: str,
    body: InfusionCreate,
    request: Request,
    active: Annotated[ActiveSession, api_write("enter_infusion")],
) -> InfusionOut:
    """Record an infusion; the bedside check (lot of this study, released, label) must pass. A
    dose outside the protocol's tolerance needs ``override_reason``; a start before the study or
    the subject's enrolment, or after the subject's death, needs ``confirm_warnings`` (422
    lists them by field)."""
    record = infusions.record_infusion(
        study_of(request), code, body.entry(), user=active.account.username
    )
    return InfusionOut.model_validate(record)


@router.get("/v1/infusions/{infusion_id}", response_model=InfusionOut)
def get_infusion(infusion_id: int, request: Request, _active: Reader) -> InfusionOut:
    return InfusionOut.model_validate(infusions.read_infusion(study_of(request), infusion_id))


@router.put(
    "/v1/infusions/{infusion_id}",
    response_model=InfusionOut,
    responses={
        409: {"model": ErrorOut, "description": "Changed since the version you read"},
        422: {"model": EntryRefusedOut, "description": "Entry refused (by field)"},
    },
)
def update_infusion(
    infusion_id: int,
    body: InfusionUpdate,
    request: Request,
    active: Annotated[ActiveSession, api_write("edit_data")],
) -> InfusionOut:
    """Edit a saved infusion: the version you read and a reason are required."""
    record = body.save(
        infusions.edit_infusion, study_of(request), infusion_id, active.account.username
    )
    return InfusionOut.model_validate(record)


@router.get("/v1/subjects/{code}/adverse-events", response_model=list[AdverseEventOut])
def subject_events(code: str, request: Request, _active: Reader) -> list[AdverseEventOut]:
    return [
        AdverseEventOut.model_validate(r)
        for r in adverse_events.list_events(study_of(request), code)
    ]


@router.post(
    "/v1/subjects/{code}/adverse-events",
    response_model=AdverseEventOut,
    status_code=201,
    responses={422: {"model": EntryRefusedOut, "description": "Entry refused (by field)"}},
)
def create_event(
    code: str,
    body: AdverseEventCreate,
    request: Request,
    active: Annotated[ActiveSession, api_write("enter_adverse_event")],
) -> AdverseEventOut:
    """Record an adverse event: the vocabulary, the subject's dates and the death rules (grade 5
    is serious and fatal) must hold; an onset before the study, a resolution after the subject's
    death or in the future needs ``confirm_warnings`` (422 lists them by field)."""
    record = adverse_events.record_event(
        study_of(request), code, body.entry(), user=active.account.username
    )
    return AdverseEventOut.model_validate(record)


@router.get("/v1/adverse-events/{event_id}", response_model=AdverseEventOut)
def get_event(event_id: int, request: Request, _active: Reader) -> AdverseEventOut:
    return AdverseEventOut.model_validate(adverse_events.read_event(study_of(request), event_id))


@router.put(
    "/v1/adverse-events/{event_id}",
    response_model=AdverseEventOut,
    responses={
        409: {"model": ErrorOut, "description": "Changed since the version you read"},
        422: {"model": EntryRefusedOut, "description": "Entry refused (by field)"},
    },
)
def update_event(
    event_id: int,
    body: AdverseEventUpdate,
    request: Request,
    active: Annotated[ActiveSession, api_write("edit_data")],
) -> AdverseEventOut:
    record = body.save(
        adverse_events.edit_event, study_of(request), event_id, active.account.username
    )
    return AdverseEventOut.model_validate(record)


# --- vital signs ---------------------------------------------------------------------------------

_conflict = {409: {"model": ErrorOut, "description": "Changed since the version you read"}}
_refused = {422: {"model": ErrorOut, "description": "Entry refused (the message names the field)"}}


@router.get("/v1/subjects/{code}/vital-signs", response_model=list[VitalSignsOut])
def subject_vital_signs(code: str, request: Request, _active: Reader) -> list[VitalSignsOut]:
    """Every round of vital signs of the subject (entered or imported), oldest first."""
    return [
        VitalSignsOut.model_validate(r)
        for r in vital_signs.list_vital_signs(study_of(request), code)
    ]


@router.post(
    "/v1/subjects/{code}/vital-signs",
    response_model=VitalSignsOut,
    status_code=201,
    responses=_refused,
)
def create_vital_signs(
    code: str,
    body: VitalSignsCreate,
    request: Request,
    active: Annotated[ActiveSession, api_write("enter_vital_signs")],
) -> VitalSignsOut:
    """Record a round: converted to canonical units, refused when a value is implausible."""
    record = vital_signs.record_vital_signs(
        study_of(request), code, body.entry(), user=active.account.username
    )
    return VitalSignsOut.model_validate(record)


@router.get("/v1/vital-signs/{round_id}", response_model=VitalSignsOut)
def get_vital_signs(round_id: int, request: Request, _active: Reader) -> VitalSignsOut:
    """The round that observation ``round_id`` belongs to."""
    return VitalSignsOut.model_validate(vital_signs.read_vital_signs(study_of(request), round_id))


@router.put(
    "/v1/vital-signs/{round_id}",
    response_model=VitalSignsOut,
    responses=_conflict | _refused,
)
def update_vital_signs(
    round_id: int,
    body: VitalSignsUpdate,
    request: Request,
    active: Annotated[ActiveSession, api_write("edit_data")],
) -> VitalSignsOut:
    """Edit a round (a value left out is removed): the version you read and a reason."""
    record = body.save(
        vital_signs.edit_vital_signs, study_of(request), round_id, active.account.username
    )
    return VitalSignsOut.model_validate(record)


# --- clinical status -----------------------------------------------------------------------------


@router.get("/v1/subjects/{code}/clinical-status", response_model=list[ClinicalStatusOut])
def subject_clinical_status(
    code: str, request: Request, _active: Reader
) -> list[ClinicalStatusOut]:
    """The subject's daily statuses, oldest first."""
    return [
        ClinicalStatusOut.model_validate(r)
        for r in clinical_status.list_clinical_status(study_of(request), code)
    ]


@router.post(
    "/v1/subjects/{code}/clinical-status",
    response_model=ClinicalStatusOut,
    status_code=201,
    responses=_refused,
)
def create_clinical_status(
    code: str,
    body: ClinicalStatusCreate,
    request: Request,
    active: Annotated[ActiveSession, api_write("enter_clinical_status")],
) -> ClinicalStatusOut:
    """Record the day's status (one a calendar day; the score must fit the oxygen support)."""
    record = clinical_status.record_clinical_status(
        study_of(request), code, body.entry(), user=active.account.username
    )
    return ClinicalStatusOut.model_validate(record)


@router.get("/v1/clinical-status/{status_id}", response_model=ClinicalStatusOut)
def get_clinical_status(status_id: int, request: Request, _active: Reader) -> ClinicalStatusOut:
    return ClinicalStatusOut.model_validate(
        clinical_status.read_clinical_status(study_of(request), status_id)
    )


@router.put(
    "/v1/clinical-status/{status_id}",
    response_model=ClinicalStatusOut,
    responses=_conflict | _refused,
)
def update_clinical_status(
    status_id: int,
    body: ClinicalStatusUpdate,
    request: Request,
    active: Annotated[ActiveSession, api_write("edit_data")],
) -> ClinicalStatusOut:
    """Edit a saved status: the version you read and a reason."""
    record = body.save(
        clinical_status.edit_clinical_status, study_of(request), status_id, active.account.username
    )
    return ClinicalStatusOut.model_validate(record)


# --- product lots --------------------------------------------------------------------------------


@router.get("/v1/lots", response_model=list[LotOut])
def list_lots(request: Request, _active: Reader) -> list[LotOut]:
    """Every product lot with its release check against the protocol's criteria."""
    return [LotOut.model_validate(r) for r in lots.list_lots(study_of(request))]


@router.post("/v1/lots", response_model=LotOut, status_code=201, responses=_refused)
def create_lot(
    body: LotCreate,
    request: Request,
    active: Annotated[ActiveSession, api_write("manage_lots")],
) -> LotOut:
    """Add a lot; a lot marked released must meet the release criteria."""
    record = lots.create_lot(study_of(request), body.entry(), user=active.account.username)
    return LotOut.model_validate(record)


@router.get("/v1/lots/{lot_id}", response_model=LotOut)
def get_lot(lot_id: int, request: Request, _active: Reader) -> LotOut:
    return LotOut.model_validate(lots.read_lot(study_of(request), lot_id))


@router.put("/v1/lots/{lot_id}", response_model=LotOut, responses=_conflict | _refused)
def update_lot(
    lot_id: int,
    body: LotUpdate,
    request: Request,
    active: Annotated[ActiveSession, api_write("manage_lots")],
) -> LotOut:
    """Edit a lot's results or status: the version you read and a reason."""
    record = body.save(lots.edit_lot, study_of(request), lot_id, active.account.username)
    return LotOut.model_validate(record)


# --- chest CT ------------------------------------------------------------------------------------


@router.get("/v1/subjects/{code}/ct-scans", response_model=list[CtScanOut])
def subject_ct_scans(code: str, request: Request, _active: Reader) -> list[CtScanOut]:
    """The subject's quantified chest CT scans with the change from the baseline scan (the
    overlay image: ``/subjects/{code}/ct.png``)."""
    return [CtScanOut.model_validate(r) for r in ct_scans.list_ct_scans(study_of(request), code)]


@router.get("/v1/audit/{table}/{row_id}", response_model=AuditTrailOut)
def audit_trail(
    table: str,
    row_id: int,
    request: Request,
    _active: Annotated[ActiveSession, allowed("read_audit")],
) -> AuditTrailOut:
    return AuditTrailOut.model_validate(asdict(read_audit_trail(study_of(request), table, row_id)))


# --- queries -----------------------------------------------------------------------------------


@router.get("/v1/queries", response_model=list[QueryOut])
def list_queries(
    request: Request,
    _active: Reader,
    subject: str | None = None,
    open_only: bool = False,
) -> list[QueryOut]:
    """Queries of the study, oldest first (``open_only``: not yet closed)."""
    found = queries.list_queries(study_of(request), subject_code=subject, open_only=open_only)
    return [QueryOut.model_validate(q) for q in found]


@router.get("/v1/queries/{query_id}", response_model=QueryOut)
def get_query(query_id: int, request: Request, _active: Reader) -> QueryOut:
    return QueryOut.model_validate(queries.read_query(study_of(request), query_id))


@router.post(
    "/v1/queries",
    response_model=QueryOut,
    status_code=201,
    responses={422: {"model": ErrorOut, "description": "Entry refused"}},
)
def raise_query(
    body: QueryCreate,
    request: Request,
    active: Annotated[ActiveSession, api_write("raise_query")],
) -> QueryOut:
    """Raise a query on one field of an observation, infusion or adverse event."""
    record = queries.raise_query(
        study_of(request),
        body.table,
        body.row_id,
        body.field,
        body.question,
        user=active.account.username,
    )
    return QueryOut.model_validate(record)


@router.post(
    "/v1/queries/{query_id}/answer",
    response_model=QueryOut,
    responses={409: {"model": ErrorOut, "description": "Changed since the version you read"}},
)
def answer_query(
    query_id: int,
    body: QueryAnswer,
    request: Request,
    active: Annotated[ActiveSession, api_write("answer_query")],
) -> QueryOut:
    record = queries.answer_query(
        study_of(request),
        query_id,
        body.answer,
        user=active.account.username,
        version=body.version,
    )
    return QueryOut.model_validate(record)


@router.post(
    "/v1/queries/{query_id}/close",
    response_model=QueryOut,
    responses={409: {"model": ErrorOut, "description": "Changed since the version you read"}},
)
def close_query(
    query_id: int,
    body: QueryClose,
    request: Request,
    active: Annotated[ActiveSession, api_write("close_query")],
) -> QueryOut:
    record = queries.close_query(
        study_of(request), query_id, body.note, user=active.account.username, version=body.version
    )
    return QueryOut.model_validate(record)


# --- casebook signatures -----------------------------------------------------------------------


@router.get("/v1/subjects/{code}/signatures", response_model=list[SignatureOut])
def subject_signatures(code: str, request: Request, _active: Reader) -> list[SignatureOut]:
    """Signatures of the subject's casebook, newest first, each with ``valid``."""
    return [
        SignatureOut.model_validate(s) for s in signatures.list_signatures(study_of(request), code)
    ]


@router.post(
    "/v1/subjects/{code}/signatures",
    response_model=SignatureOut,
    status_code=201,
    responses={
        403: {"model": ErrorOut, "description": "Password not confirmed, or role not permitted"},
        422: {
            "model": EntryRefusedOut,
            "description": "Not signed: queries not closed (warnings.open_queries) and "
            "confirm_open_queries not given",
        },
    },
)
def sign_casebook(
    code: str,
    body: SignatureCreate,
    request: Request,
    active: Annotated[ActiveSession, api_write("sign_casebook")],
) -> SignatureOut:
    """Sign the subject's casebook: your password again and the meaning of the signature. A
    casebook with queries not yet closed is signed only with ``confirm_open_queries: true``."""
    record = signatures.sign_casebook(
        study_of(request),
        code,
        username=active.account.username,
        password=body.password,
        meaning=body.meaning,
        confirm_open_queries=body.confirm_open_queries,
    )
    return SignatureOut.model_validate(record)


# --- accounts ----------------------------------------------------------------------------------


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current_password: str = Field(min_length=1, max_length=1024, pattern=TEXT)
    new_password: str = Field(min_length=1, max_length=1024, pattern=TEXT)


class AccountOut(BaseModel):
    username: str
    full_name: str
    role: str
    active: bool
    must_change_password: bool
    locked_until: datetime | None
    last_login_at: datetime | None
    sessions: int


class AccountChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=2000, pattern=TEXT)


class RoleChange(AccountChange):
    role: Literal[tuple(account_service.ROLES)]  # type: ignore[valid-type]


class OneTimePassword(BaseModel):
    username: str
    one_time_password: str = Field(description="Shown once; must be changed at the next sign-in.")


class AuditLogEntryOut(BaseModel):
    id: int
    time: datetime
    user: str
    action: str
    table: str
    row_id: str | None
    subject_code: str | None
    before: dict[str, Any]
    after: dict[str, Any]
    reason: str | None


class AuditLogOut(BaseModel):
    entries: list[AuditLogEntryOut]
    older: int | None = Field(description="Pass as `before` for the next, older page.")
    newer: int | None = Field(description="Pass as `after` for the previous, newer page.")


_account_refused = {
    400: {"model": ErrorOut, "description": "Refused (weak password, last administrator…)"},
    404: {"model": ErrorOut, "description": "No such user"},
}
_account_state = {
    404: {"model": ErrorOut, "description": "No such user"},
    409: {
        "model": ErrorOut,
        "description": "The account's state does not allow it (your own account, active "
        "already, the last administrator)",
    },
}
Admin = Annotated[ActiveSession, api_write("manage_users")]


@contextmanager
def _account_state_allows() -> Iterator[None]:
    """An administrator's change the account's state refuses (deactivate one's own account,
    reactivate an active one, demote the last administrator): 409, a conflict with the state,
    not a request to correct."""
    try:
        yield
    except AccountError as exc:
        raise EditConflict(str(exc)) from None


def _reason(body: AccountChange | None) -> str:
    return body.reason if body is not None else ""


@router.post(
    "/v1/account/password",
    status_code=204,
    responses={400: _account_refused[400]},
)
def change_own_password(
    body: PasswordChange,
    request: Request,
    active: Annotated[ActiveSession, Depends(signed_in)],
) -> None:
    """Change one's own password (the current one is required); the other sessions end."""
    check_csrf(active, request.headers.get(CSRF_HEADER))
    try:
        account_service.change_password(
            study_of(request).engine,
            active.account.username,
            body.current_password,
            body.new_password,
            keep_token=request.cookies.get(SESSION_COOKIE, ""),
            address=client_address(request),
        )
    except SignInRefused as exc:  # the session stands: a refusal, not a sign-out
        raise NotPermitted(str(exc)) from None


@router.get("/v1/users", response_model=list[AccountOut])
def list_users(
    request: Request, _active: Annotated[ActiveSession, allowed("manage_users")]
) -> list[AccountOut]:
    return [
        AccountOut(
            username=u.username,
            full_name=u.full_name,
            role=u.role,
            active=u.active,
            must_change_password=u.must_change_password,
            locked_until=u.locked_until,
            last_login_at=u.last_login_at,
            sessions=u.sessions,
        )
        for u in account_service.list_users(study_of(request).engine)
    ]


@router.post(
    "/v1/users/{username}/reset-password",
    response_model=OneTimePassword,
    responses=_account_refused,
)
def reset_password(
    username: str, request: Request, active: Admin, body: AccountChange | None = None
) -> OneTimePassword:
    """A one-time password to pass on to the user, who must change it at the next sign-in."""
    one_time = account_service.reset_password(
        study_of(request).engine, username, by=active.account.username, reason=_reason(body)
    )
    return OneTimePassword(username=username, one_time_password=one_time)


@router.post("/v1/users/{username}/unlock", status_code=204, responses=_account_state)
def unlock_user(
    username: str, request: Request, active: Admin, body: AccountChange | None = None
) -> None:
    with _account_state_allows():
        account_service.unlock(
            study_of(request).engine, username, by=active.account.username, reason=_reason(body)
        )


@router.post("/v1/users/{username}/deactivate", status_code=204, responses=_account_state)
def deactivate_user(
    username: str, request: Request, active: Admin, body: AccountChange | None = None
) -> None:
    """Deactivate the account: it cannot sign in, its sessions end."""
    with _account_state_allows():
        account_service.deactivate(
            study_of(request).engine, username, by=active.account.username, reason=_reason(body)
        )


@router.post("/v1/users/{username}/reactivate", status_code=204, responses=_account_state)
def reactivate_user(
    username: str, request: Request, active: Admin, body: AccountChange | None = None
) -> None:
    with _account_state_allows():
        account_service.reactivate(
            study_of(request).engine, username, by=active.account.username, reason=_reason(body)
        )


@router.post("/v1/users/{username}/role", status_code=204, responses=_account_state)
def change_role(username: str, body: RoleChange, request: Request, active: Admin) -> None:
    with _account_state_allows():
        account_service.set_role(
            study_of(request).engine,
            username,
            body.role,
            by=active.account.username,
            reason=_reason(body),
        )


@router.post("/v1/users/{username}/end-sessions", status_code=204, responses=_account_state)
def end_user_sessions(
    username: str, request: Request, active: Admin, body: AccountChange | None = None
) -> None:
    with _account_state_allows():
        account_service.end_sessions(
            study_of(request).engine, username, by=active.account.username, reason=_reason(body)
        )


#: The audit log's filters as the schema states them: a day (YYYY-MM-DD), an event number.
_DAY = register_pattern(r"^([0-9]{4}-[0-9]{2}-[0-9]{2})?$", "a day as YYYY-MM-DD")
_EVENT = register_pattern(r"^[0-9]{0,18}$", "an audit event number (the digits 0–9)")


@router.get("/v1/audit", response_model=AuditLogOut)
def audit_log(
    request: Request,
    _active: Annotated[ActiveSession, allowed("read_audit_log")],
    user: Annotated[str, Query(max_length=64, pattern=TEXT)] = "",
    table: Annotated[Literal[("", *LOG_TABLES)], Query()] = "",  # type: ignore[valid-type]
    since: Annotated[str, Query(pattern=_DAY)] = "",
    until: Annotated[str, Query(pattern=_DAY)] = "",
    before: Annotated[str, Query(pattern=_EVENT)] = "",
    after: Annotated[str, Query(pattern=_EVENT)] = "",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> AuditLogOut:
    """The study's audit log, newest first (``since``/``until``: dates in the study's time
    zone); page with ``before`` (older) or ``after`` (newer)."""
    page = read_audit_log(
        study_of(request),
        user=user,
        table=table,
        since=since,
        until=until,
        before=before,
        after=after,
        limit=limit,
    )
    return AuditLogOut(
        entries=[
            AuditLogEntryOut(
                id=e.id,
                time=e.time,
                user=e.user,
                action=e.action,
                table=e.table,
                row_id=e.row_id,
                subject_code=e.subject_code,
                before={f: b for f, b, _ in e.changes if b is not None},
                after={f: a for f, _, a in e.changes if a is not None},
                reason=e.reason,
            )
            for e in page.entries
        ],
        older=page.older,
        newer=page.newer,
    )
