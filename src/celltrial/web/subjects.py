"""Enrolment, demographics and lab results of a subject: the pages and the JSON API beside them.

A coordinator or investigator enrols a subject with their demographics and corrects them later
(with a reason, like every other edit); everyone reads a subject's lab results by test and
study day, graded as the safety analysis grades them, and a data manager raises a query on any
value from there.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from celltrial.services import enrolment, lab_results
from celltrial.services.accounts import ActiveSession
from celltrial.web.forms import parse_form, record_values
from celltrial.web.pages import _save_edit, _saved, render
from celltrial.web.paths import path_part
from celltrial.web.schemas import (
    DemographicsOut,
    DemographicsUpdate,
    ErrorOut,
    LabTestOut,
    SubjectEnrol,
)
from celltrial.web.security import allowed, api_write, checked_form, study_of

router = APIRouter(include_in_schema=False)
_errors = {
    401: {"model": ErrorOut, "description": "Not signed in"},
    403: {"model": ErrorOut, "description": "Role not permitted, or CSRF token missing"},
    404: {"model": ErrorOut, "description": "No such subject in this study"},
}
api_router = APIRouter(prefix="/api", tags=["subjects"], responses=_errors)
_refused = {422: {"model": ErrorOut, "description": "Entry refused (the message names the field)"}}
_conflict = {409: {"model": ErrorOut, "description": "Changed since the version you read"}}

Reader = Annotated[ActiveSession, allowed("read_study")]
Enroller = Annotated[ActiveSession, allowed("enrol_subject")]
Editor = Annotated[ActiveSession, allowed("edit_data")]
ENROL_PAGE = "/enrol"


def _subject_page(code: str) -> str:
    return f"/subjects/{path_part(code)}"


# --- pages ---------------------------------------------------------------------------------------


def _demographics_form(
    request: Request,
    active: ActiveSession,
    *,
    values: dict[str, Any],
    record: enrolment.DemographicsRecord | None = None,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    study = study_of(request)
    return render(
        request,
        "demographics_form.html.j2",
        active,
        status=status,
        values=values,
        record=record,
        error=error,
        sites=enrolment.list_sites(study) if record is None else [],
        sexes=enrolment.SEXES,
    )


@router.get(ENROL_PAGE)
def enrol_page(request: Request, active: Enroller) -> HTMLResponse:
    """The enrolment form: subject code and demographics."""
    return _demographics_form(request, active, values={})


@router.post(ENROL_PAGE)
async def enrol(request: Request, active: Enroller) -> Response:
    values = await checked_form(request, active)
    study = study_of(request)

    def save() -> str:
        body = parse_form(values, SubjectEnrol, kind="demographics", zone=study.protocol.study.zone)
        record = enrolment.enrol(
            study, body.code, body.entry(), user=active.account.username, site=body.site
        )
        return _subject_page(record.code)

    return _saved(save, partial(_demographics_form, request, active), values)


@router.get("/subjects/{code}/demographics/edit")
def edit_demographics_page(code: str, request: Request, active: Editor) -> HTMLResponse:
    study = study_of(request)
    record = enrolment.read_demographics(study, code)
    values = record_values(record, study.protocol.study.zone)
    return _demographics_form(request, active, values=values, record=record)


@router.post("/subjects/{code}/demographics/edit")
async def edit_demographics(code: str, request: Request, active: Editor) -> Response:
    values = await checked_form(request, active)
    study = study_of(request)
    record = enrolment.read_demographics(study, code)
    return _save_edit(
        values,
        study,
        active,
        code,  # type: ignore[arg-type]  # the subject is named by its code
        schema=DemographicsUpdate,
        kind="demographics",
        edit=enrolment.edit_demographics,
        then=_subject_page(record.code),
        show=partial(_demographics_form, request, active, record=record),
    )


@router.get("/subjects/{code}/labs")
def labs_page(code: str, request: Request, active: Reader) -> HTMLResponse:
    """The subject's lab results by test and study day: value, unit, reference range, CTCAE
    grade and flags, each with a link to raise a query on it."""
    study = study_of(request)
    record = enrolment.read_demographics(study, code)
    tests = lab_results.summarize_subject_labs(study, record.code)
    return render(request, "labs.html.j2", active, code=record.code, tests=tests)


# --- JSON API ------------------------------------------------------------------------------------


@api_router.post(
    "/v1/subjects",
    response_model=DemographicsOut,
    status_code=201,
    responses=_refused
    | {409: {"model": ErrorOut, "description": "A subject of this code is enrolled already"}},
)
def enrol_subject(
    body: SubjectEnrol,
    request: Request,
    active: Annotated[ActiveSession, api_write("enrol_subject")],
) -> DemographicsOut:
    """Enrol a subject with their demographics (a birth date gives the age at admission).

    Besides the schema, rules that relate two values or a value and the clock (422 naming the
    field): the admission and the enrolment are not in the future; the birth date is not after
    the admission (else the enrolment) and gives an age of at most 120 years; an age sent
    beside a birth date must be the one it gives."""
    record = enrolment.enrol(
        study_of(request), body.code, body.entry(), user=active.account.username, site=body.site
    )
    return DemographicsOut.model_validate(record)


@api_router.get("/v1/subjects/{code}/demographics", response_model=DemographicsOut)
def subject_demographics(code: str, request: Request, _active: Reader) -> DemographicsOut:
    return DemographicsOut.model_validate(enrolment.read_demographics(study_of(request), code))


@api_router.put(
    "/v1/subjects/{code}/demographics",
    response_model=DemographicsOut,
    responses=_conflict | _refused,
)
def update_demographics(
    code: str,
    body: DemographicsUpdate,
    request: Request,
    active: Annotated[ActiveSession, api_write("edit_data")],
) -> DemographicsOut:
    """Change a subject's demographics: every fact as it should be, the version you read and a
    reason (the rules relating the values are those of ``POST /api/v1/subjects``)."""
    record = body.save(
        enrolment.edit_demographics,
        study_of(request),
        code,  # type: ignore[arg-type]
        active.account.username,
    )
    return DemographicsOut.model_validate(record)


@api_router.get("/v1/subjects/{code}/labs", response_model=list[LabTestOut])
def subject_labs(code: str, request: Request, _active: Reader) -> list[LabTestOut]:
    """The subject's lab results by test, oldest first, graded (CTCAE) with their flags."""
    tests = lab_results.summarize_subject_labs(study_of(request), code)
    return [LabTestOut.model_validate(t) for t in tests]
