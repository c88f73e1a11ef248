"""Enrolment and demographics in the browser and the API, a subject's lab results page (graded as
the safety analysis grades them), queries raised on any value (labs, each vital sign) and shown
with field labels and study local times."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from fastapi.routing import APIRoute

from celltrial.errors import DataError
from celltrial.store.database import study_session
from celltrial.store.models import Observation, Subject
from tests.web.test_app import infusion

ZONE = ZoneInfo("Asia/Shanghai")  # the built-in protocol's time zone


def _token(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def _enrol_form(client, **fields) -> dict:
    return {"csrf_token": _token(client.get("/enrol").text)} | fields


def test_enrolment_form_stores_demographics_with_age_from_the_birth_date(clients):
    coordinator = clients["coordinator"]
    # admitted 01:30 on 15 June in Shanghai (17:30 on 14 June in UTC): the 65th birthday is
    # the local day of admission, so the subject is 65, not 64
    form = _enrol_form(
        coordinator,
        code="E-101",
        sex="F",
        birth_date="1960-06-15",
        height_cm="162",
        weight_kg="58.5",
        admitted_at="2025-06-15T01:30",
    )
    saved = coordinator.post("/enrol", data=form, follow_redirects=False)
    assert saved.status_code == 303, saved.text
    assert saved.headers["location"] == "/subjects/E-101"
    stored = coordinator.get("/api/v1/subjects/E-101/demographics").json()
    assert stored["sex"] == "F" and stored["age"] == 65
    assert (stored["height_cm"], stored["weight_kg"]) == (162, 58.5)
    assert datetime.fromisoformat(stored["admitted_at"]) == datetime(
        2025, 6, 14, 17, 30, tzinfo=UTC
    )
    assert stored["site"] == "01" and stored["version"] == 1
    page = " ".join(coordinator.get("/subjects/E-101").text.split())
    assert "F, 65 y, 58.5 kg, 162 cm" in page
    # one day earlier the birthday is still to come
    earlier = _enrol_form(
        coordinator, code="E-102", birth_date="1960-06-15", admitted_at="2025-06-14T23:30"
    )
    assert coordinator.post("/enrol", data=earlier, follow_redirects=False).status_code == 303
    assert coordinator.get("/api/v1/subjects/E-102/demographics").json()["age"] == 64


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"code": "E/1"}, "subject code: 'E/1': / is not allowed"),
        ({"code": "S001"}, "subject code 'S001': already enrolled"),
        (
            {"code": "E-9", "height_cm": "300"},
            "height: 300 — expected a number of cm from 30 to 250",
        ),
        (
            {"code": "E-9", "weight_kg": "0.2"},
            "weight: 0.2 — expected a number of kg from 0.5 to 400",
        ),
        ({"code": "E-9", "sex": "x"}, "sex: 'x' is not one of the choices ('F', 'M', 'm', 'male'"),
        (
            {
                "code": "E-9",
                "age": "50",
                "birth_date": "1960-06-15",
                "admitted_at": "2025-06-15T08:00",
            },
            "age: 50 years does not match the birth date (65 years at admission)",
        ),
        ({"code": "E-9", "admitted_at": "2099-01-01T08:00"}, "admission: is in the future"),
    ],
)
def test_enrolment_refused_with_the_field_named(clients, fields, message):
    coordinator = clients["coordinator"]
    refused = coordinator.post("/enrol", data=_enrol_form(coordinator, **fields))
    assert refused.status_code == (409 if "already enrolled" in message else 422)
    assert message in refused.text.replace("&#39;", "'")
    assert coordinator.get("/api/v1/subjects/E-9/demographics").status_code == 404


def test_enrolment_roles_and_csrf(clients):
    for role in ("data_manager", "monitor", "statistician", "admin"):
        assert clients[role].get("/enrol").status_code == 403, role
        body = {"code": f"R-{role}"}
        assert clients[role].post("/api/v1/subjects", json=body).status_code == 403, role
    investigator = clients["investigator"]
    assert "Enrol a subject" in investigator.get("/").text
    assert "Enrol a subject" not in clients["monitor"].get("/").text
    no_token = investigator.post("/enrol", data={"code": "R-1"})
    assert no_token.status_code == 403
    created = investigator.post(
        "/api/v1/subjects", json={"code": "R-1", "sex": "male", "age": 47, "weight_kg": 80}
    )
    assert created.status_code == 201, created.text
    assert created.json()["sex"] == "M" and created.json()["age"] == 47
    assert investigator.post("/api/v1/subjects", json={"code": "R-1"}).status_code == 409


def test_demographics_edit_needs_reason_and_version_and_is_audited(clients):
    coordinator, investigator = clients["coordinator"], clients["investigator"]
    created = coordinator.post("/api/v1/subjects", json={"code": "D-1", "age": 70, "weight_kg": 90})
    assert created.status_code == 201, created.text
    subject_id = _subject_id(coordinator, "D-1")
    edit = {"age": 70, "weight_kg": 88, "height_cm": 175, "version": 1}
    assert coordinator.put("/api/v1/subjects/D-1/demographics", json=edit).status_code == 422
    changed = coordinator.put(
        "/api/v1/subjects/D-1/demographics", json=edit | {"reason": "weighed on the ward"}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["weight_kg"] == 88 and changed.json()["version"] == 2
    stale = investigator.put(
        "/api/v1/subjects/D-1/demographics", json=edit | {"weight_kg": 87, "reason": "again"}
    )
    assert stale.status_code == 409

    # the form: the values read, a reason required
    page = investigator.get("/subjects/D-1/demographics/edit").text
    assert 'name="weight_kg"' in page and 'value="88"' in page and 'name="reason"' in page
    form = {"csrf_token": _token(page), "version": "2", "age": "70", "weight_kg": "86"}
    assert investigator.post("/subjects/D-1/demographics/edit", data=form).status_code == 422
    form["reason"] = "scale recalibrated"
    saved = investigator.post("/subjects/D-1/demographics/edit", data=form, follow_redirects=False)
    assert saved.status_code == 303 and saved.headers["location"] == "/subjects/D-1"
    now = investigator.get("/api/v1/subjects/D-1/demographics").json()
    assert now["weight_kg"] == 86 and now["height_cm"] is None  # every fact as posted
    trail = clients["monitor"].get(f"/api/v1/audit/subject/{subject_id}").json()["entries"]
    assert [(e["action"], e["user"], e["reason"]) for e in trail] == [
        ("insert", "coordinator", "subject enrolled"),
        ("update", "coordinator", "weighed on the ward"),
        ("update", "investigator", "scale recalibrated"),
    ]
    assert clients["data_manager"].get("/subjects/D-1/demographics/edit").status_code == 403


def _subject_id(client, code: str) -> int:
    study = client.app.state.study
    with study_session(study.engine, user="read") as session:
        return session.query(Subject.id).filter_by(study_id=study.study_id, code=code).scalar()


def _add_labs(client, code: str, rows: list[tuple[datetime, str, float, str, float, float]]):
    """Store lab values as an import would (canonical value and unit, reference range)."""
    study = client.app.state.study
    subject_id = _subject_id(client, code)
    with study_session(study.engine, user="setup", reason="test labs") as session:
        for when, test, value, unit, low, high in rows:
            session.add(
                Observation(
                    subject_id=subject_id,
                    time=when,
                    test=test,
                    raw_value=f"{value:g}",
                    raw_unit=unit,
                    value=value,
                    unit=unit,
                    qualifier="",
                    ref_low=low,
                    ref_high=high,
                )
            )


@pytest.fixture(scope="module")
def labs(clients):
    """Subject L-1: first infusion at a known time, then lab values with known CTCAE grades."""
    coordinator = clients["coordinator"]
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=5)
    enrolled = (start - timedelta(days=1)).isoformat()
    body = {"code": "L-1", "enrolled_at": enrolled}
    assert coordinator.post("/api/v1/subjects", json=body).status_code == 201
    given = coordinator.post(
        "/api/v1/subjects/L-1/infusions",
        json=infusion(5, started_at=start.isoformat(), ended_at=None, label_subject_code="L-1")
        | {"ended_at": (start + timedelta(minutes=30)).isoformat()},
    )
    assert given.status_code == 201, given.text
    _add_labs(
        coordinator,
        "L-1",
        [
            # lymphocytes 0.3 × 10⁹/L: CTCAE "Lymphocyte count decreased" grade 3 (<0.5–0.2)
            (start + timedelta(days=2), "LYM", 0.3, "10^9/L", 1.1, 3.2),
            (start - timedelta(days=1), "LYM", 1.5, "10^9/L", 1.1, 3.2),
            # platelets 60 × 10⁹/L: "Platelet count decreased" grade 2 (<75–50)
            (start + timedelta(days=3), "PLAT", 60.0, "10^9/L", 125, 350),
            # CD4 150 cells/µL: "CD4 lymphocytes decreased" grade 3 (<200–100)
            (start + timedelta(days=3), "CD4", 150.0, "cells/uL", 404, 1612),
            # CRP has no CTCAE term
            (start + timedelta(days=1), "CRP", 80.0, "mg/L", 0, 10),
        ],
    )
    return start


def test_lab_results_by_test_and_study_day_with_units_ranges_grades_and_flags(clients, labs):
    monitor = clients["monitor"]
    tests = {t["code"]: t for t in monitor.get("/api/v1/subjects/L-1/labs").json()}
    assert set(tests) == {"LYM", "PLAT", "CD4", "CRP"}
    lym = tests["LYM"]
    assert lym["unit"] == "×10⁹/L" and tests["CD4"]["unit"] == "cells/µL"
    assert [(r["study_day"], r["value"]) for r in lym["results"]] == [(-1, 1.5), (2, 0.3)]
    low = lym["results"][1]
    assert (low["grade"], low["ctcae_term"]) == (3, "Lymphocyte count decreased")
    assert "low" in low["flags"] and "treatment-emergent" in low["flags"]
    assert lym["results"][0]["grade"] == 0 and lym["results"][0]["flags"] == []
    assert tests["PLAT"]["results"][0]["grade"] == 2
    assert tests["CD4"]["results"][0]["grade"] == 3
    crp = tests["CRP"]["results"][0]
    assert crp["grade"] is None and crp["ctcae_term"] is None and crp["flags"] == ["high"]
    assert crp["study_day"] == 1

    page = monitor.get("/subjects/L-1/labs").text
    assert "Lymphocytes" in page and "×10⁹/L" in page and "cells/µL" in page
    assert "1.1–3.2" in page and "grade 3" in page and "Lymphocyte count decreased" in page
    assert "/queries/new" not in page  # the monitor may not raise queries
    assert 'href="/subjects/L-1/labs"' in monitor.get("/subjects/L-1").text
    assert monitor.get("/subjects/NOPE/labs").status_code == 404


def test_query_on_a_lab_value_shows_labels_and_local_times(clients, labs):
    dm = clients["data_manager"]
    page = dm.get("/subjects/L-1/labs").text
    low_id = next(
        r["id"]
        for t in dm.get("/api/v1/subjects/L-1/labs").json()
        for r in t["results"]
        if r["value"] == 0.3
    )
    link = f"/queries/new?table=observation&amp;row_id={low_id}&amp;field=value"
    assert link in page
    form = dm.get(link.replace("&amp;", "&")).text
    taken = (labs + timedelta(days=2)).astimezone(ZONE).strftime("%Y-%m-%d %H:%M")
    assert f"lab result: Lymphocytes, {taken}" in form
    assert '<option value="value" selected>value: 0.3 ×10⁹/L</option>' in form
    assert "raw_value" not in form.replace('value="raw_value"', "")
    raised = dm.post(
        "/queries",
        data={
            "csrf_token": _token(form),
            "table": "observation",
            "row_id": str(low_id),
            "field": "value",
            "question": "Lymphocytes 0.3: haemolysed sample?",
        },
        follow_redirects=False,
    )
    assert raised.status_code == 303 and raised.headers["location"] == "/subjects/L-1#queries"
    for page in (dm.get("/subjects/L-1").text, dm.get("/").text):
        row = next(r for r in page.split("<tr") if "haemolysed sample" in r)
        assert f"lab result: Lymphocytes, {taken}: <b>value</b> = 0.3 ×10⁹/L" in row
        assert "observation" not in row and "record " not in row
    query = next(q for q in dm.get("/api/v1/queries").json() if "haemolysed" in q["question"])
    assert query["field_label"] == "value" and query["record_label"] == "lab result: Lymphocytes"


def test_query_on_a_time_shows_the_study_local_time(clients, labs):
    dm = clients["data_manager"]
    [record] = dm.get("/api/v1/subjects/L-1/infusions").json()
    ask = {"table": "infusion", "row_id": record["id"], "field": "started_at", "question": "Start?"}
    raised = dm.post("/api/v1/queries", json=ask)
    assert raised.status_code == 201, raised.text
    local = labs.astimezone(ZONE).strftime("%Y-%m-%d %H:%M")
    row = next(r for r in dm.get("/subjects/L-1").text.split("<tr") if "Start?" in r)
    assert f"infusion 1, {local}: <b>start</b> = {local}" in row
    assert "+00:00" not in row and "started_at" not in row


def test_vital_sign_query_link_targets_the_value_clicked(clients):
    coordinator, dm = clients["coordinator"], clients["data_manager"]
    when = (datetime.now(UTC) - timedelta(hours=3)).replace(second=0, microsecond=0)
    body = {"time": when.isoformat(), "temperature": 38.4, "heart_rate": 112, "spo2": 91}
    created = coordinator.post("/api/v1/subjects/S002/vital-signs", json=body)
    assert created.status_code == 201, created.text
    ids = {v["field"]: v["id"] for v in created.json()["values"]}
    assert len(set(ids.values())) == 3
    page = dm.get("/subjects/S002").text
    for field in ("temperature", "heart_rate", "spo2"):
        assert f"/queries/new?table=observation&amp;row_id={ids[field]}&amp;field=value" in page
    form = dm.get(f"/queries/new?table=observation&row_id={ids['heart_rate']}&field=value").text
    assert "vital sign: Heart rate" in form
    assert '<option value="value" selected>value: 112 /min</option>' in form
    # the page of all rounds too; a coordinator sees no query links
    assert f"row_id={ids['spo2']}&amp;field=value" in dm.get("/subjects/S002/vital-signs").text
    assert "/queries/new" not in coordinator.get("/subjects/S002").text


def test_new_routes_refuse_anonymous_and_are_in_the_openapi_schema(app, anonymous, clients):
    from celltrial.web import subjects

    for route in [*subjects.router.routes, *subjects.api_router.routes]:
        assert isinstance(route, APIRoute)
        path = route.path.replace("{code}", "S001")
        for method in route.methods - {"HEAD"}:
            response = anonymous.request(method, path, json={}, follow_redirects=False)
            assert response.status_code in (401, 303), (method, path, response.status_code)
    schema = clients["monitor"].get("/api/openapi.json").json()
    assert "post" in schema["paths"]["/api/v1/subjects"]
    assert {"get", "put"} <= set(schema["paths"]["/api/v1/subjects/{code}/demographics"])
    assert "get" in schema["paths"]["/api/v1/subjects/{code}/labs"]
    assert "/enrol" not in schema["paths"]


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"height_cm": 250.0, "weight_kg": 0.5, "age": 120.0}, None),  # the limits themselves
        ({"height_cm": 250.5}, "height: 250.5 — expected a number of cm from 30 to 250"),
        ({"age": 120.5}, "age: 120.5 — expected a number of years from 0 to 120"),
        (
            {"birth_date": datetime(2025, 3, 3).date()},
            "birth date: 2025-03-03 is after the admission",
        ),
        # born on the local day of admission (the UTC date is the day before): age 0
        ({"birth_date": datetime(2025, 3, 2).date()}, None),
        ({"sex": "female"}, None),
        ({"sex": "女"}, None),
    ],
)
def test_demographics_rules_at_their_limits(fields, problem):
    from celltrial.errors import DataError
    from celltrial.services.enrolment import DemographicsEntry, check_demographics

    admitted = datetime(2025, 3, 1, 20, 0, tzinfo=UTC)  # 04:00 on 2 March in Shanghai
    entry = DemographicsEntry(admitted_at=admitted, **fields)
    enrolled = admitted + timedelta(days=1)
    if problem is None:
        values = check_demographics(entry, zone=ZONE, enrolled_at=enrolled)
        assert values["sex"] in (None, "F")
        assert values["age"] == fields.get("age", 0.0 if "birth_date" in fields else None)
        return
    with pytest.raises(DataError) as refused:
        check_demographics(entry, zone=ZONE, enrolled_at=enrolled)
    assert problem in str(refused.value)


def test_the_set_up_path_refuses_as_the_enrolment_form_does(study_dir, db_url):
    """Scripts and imports that enrol through :func:`celltrial.services.casebook.enrol_subject`
    meet the same refusals as the form: a code already enrolled (409's AlreadyExists, same words)
    and a site the study does not have, and nothing is stored."""
    from celltrial.services.casebook import NewSubject, enrol_subject
    from celltrial.services.errors import AlreadyExists
    from celltrial.study import open_study

    study = open_study(study_dir, db_url=db_url)
    when = datetime(2025, 6, 1, tzinfo=UTC)
    with pytest.raises(AlreadyExists, match="subject code 'S001': already enrolled in this study"):
        enrol_subject(study, NewSubject(code="S001", enrolled_at=when), user="coordinator")
    with pytest.raises(DataError, match=r"site '99': not a site of this study \(sites: 01\)"):
        enrol_subject(study, NewSubject(code="E-900", enrolled_at=when, site="99"), user="x")
    with study_session(study.engine, user="read") as session:
        codes = {s.code for s in session.query(Subject).filter(Subject.code == "E-900")}
    assert codes == set()
