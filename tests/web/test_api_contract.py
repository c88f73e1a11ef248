"""The API's contract with its clients (issue 25): a request that does not fit the schema is
answered in plain words naming the field; the schema says what the API accepts (subject codes,
sexes, plausible ranges, times, strict types) and what it refuses; a casebook with open queries
is signed through the API only with an explicit confirmation."""

from __future__ import annotations

import re
from datetime import UTC, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from tests.web.conftest import NOW, PASSWORD

#: pydantic's and Python's own words, which a client must never read.
TECHNICAL = ("Input should", "unable to parse", "Value error", "Timestamp(", "ValueError")


def _problems(response) -> dict[str, str]:
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list)
    for problem in detail:
        assert set(problem) == {"loc", "field", "msg", "type"}
        assert not any(word in problem["msg"] for word in TECHNICAL), problem
        assert problem["msg"].startswith(f"{problem['field'] or 'request body'}: ")
    return {p["field"]: p["msg"] for p in detail}


def test_a_wrong_type_is_named_by_field_with_what_was_expected(clients):
    coordinator = clients["coordinator"]
    sent = {
        "term": 5,
        "onset_at": "2020-01-01T00:00:00",
        "grade": "abc",
        "serious": "maybe",
        "serious_criteria": ["x"],
        "colour": "red",
    }
    said = _problems(coordinator.post("/api/v1/subjects/S001/adverse-events", json=sent))
    assert said["term"] == "term: 5 is not text"
    assert said["grade"] == "grade: 'abc' is not a whole number"
    assert said["serious"] == "serious: 'maybe': expected true or false"
    assert said["onset_at"] == (
        "onset_at: '2020-01-01T00:00:00' is not a date and time in the years 1900–2099 with its "
        "UTC offset (e.g. 2020-02-10T14:30:00+08:00)"
    )
    assert said["serious_criteria[0]"].startswith("serious_criteria[0]: 'x' is not one of")
    assert said["colour"] == "colour: not a field of this request"


def test_a_union_is_said_once_and_a_password_never_repeated(clients):
    coordinator = clients["coordinator"]
    round_ = {"time": NOW.isoformat(), "temperature": [37], "spo2": "9" * 40}
    said = _problems(coordinator.post("/api/v1/subjects/S001/vital-signs", json=round_))
    assert said == {
        "temperature": "temperature: [37] is not a number or text",
        "spo2": "spo2: at most 32 characters",
    }
    secret = "x" * 1025
    said = _problems(
        coordinator.post(
            "/api/v1/account/password", json={"current_password": secret, "new_password": 7}
        )
    )
    assert said["current_password"] == "current_password: at most 1024 characters"
    assert said["new_password"] == "new_password: the value given is not text"


def test_malformed_json_a_missing_body_and_a_path_number(clients):
    coordinator = clients["coordinator"]
    broken = coordinator.post(
        "/api/v1/subjects/S001/vital-signs",
        content=b'{"time": ',
        headers={"content-type": "application/json"},
    )
    said = _problems(broken)
    assert said == {"": "request body: not valid JSON (expecting value at character 9)"}
    assert broken.json()["detail"][0]["type"] == "json_invalid"
    said = _problems(coordinator.post("/api/v1/subjects/S001/vital-signs"))
    assert said == {"": "request body: required"}
    said = _problems(coordinator.get("/api/v1/infusions/twelve"))
    assert said == {"infusion_id": "infusion_id: 'twelve' is not a whole number"}
    page = coordinator.get("/infusions/twelve/edit")
    assert page.status_code == 422 and "text/html" in page.headers["content-type"]
    assert "infusion number: &#39;twelve&#39; is not a whole number" in page.text


# --- signing with open queries -----------------------------------------------------------------


def _raise_query(clients, code: str, question: str) -> int:
    event = clients["coordinator"].post(
        f"/api/v1/subjects/{code}/adverse-events",
        json={"term": "Headache", "onset_at": (NOW - timedelta(days=1)).isoformat(), "grade": 1},
    )
    assert event.status_code == 201, event.text
    raised = clients["data_manager"].post(
        "/api/v1/queries",
        json={
            "table": "adverse_event",
            "row_id": event.json()["id"],
            "field": "grade",
            "question": question,
        },
    )
    assert raised.status_code == 201, raised.text
    return raised.json()["id"]


def test_the_api_signs_a_casebook_with_open_queries_only_when_confirmed(clients):
    investigator, url = clients["investigator"], "/api/v1/subjects/S003/signatures"
    first = _raise_query(clients, "S003", "Grade from the chart?")
    sign = {"password": PASSWORD, "meaning": "review"}

    refused = investigator.post(url, json=sign)
    assert refused.status_code == 422, refused.text
    body = refused.json()
    assert body["warnings"] == {
        "open_queries": [f"#{first} adverse event: Headache: grade, 'Grade from the chart?' (open)"]
    }
    assert "1 query is not closed" in body["detail"] and "confirm" in body["detail"]
    assert investigator.get(url).json() == []  # nothing signed

    # a wrong password is refused before the queries are looked at
    wrong = investigator.post(url, json=sign | {"password": "not mine", "confirm_open_queries": 1})
    assert wrong.status_code == 422  # 1 is not true: the field takes true or false only
    wrong = investigator.post(url, json=sign | {"password": "not mine"})
    assert wrong.status_code == 403

    signed = investigator.post(url, json=sign | {"confirm_open_queries": True})
    assert signed.status_code == 201, signed.text
    trail = clients["coordinator"].get(f"/api/v1/audit/casebook_signature/{signed.json()['id']}")
    assert f"signed with 1 open queries (#{first})" in trail.json()["entries"][0]["reason"]


def test_the_form_confirms_the_queries_it_showed_and_no_other(clients):
    investigator = clients["investigator"]
    first = _raise_query(clients, "S004", "Onset time?")
    form = investigator.get("/subjects/S004/sign").text
    shown = re.search(r'name="confirm_open_queries" value="([\d,]+)"', form).group(1)
    assert shown.split(",")[-1] == str(first)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    later = _raise_query(clients, "S004", "Raised while the form was open")

    post = {"csrf_token": token, "meaning": "review", "password": PASSWORD}
    refused = investigator.post("/subjects/S004/sign", data=post | {"confirm_open_queries": shown})
    assert refused.status_code == 422
    assert "Raised while the form was open" in refused.text and f"#{later}" in refused.text
    again = re.search(r'name="confirm_open_queries" value="([\d,]+)"', refused.text).group(1)
    assert str(later) in again.split(",")
    done = investigator.post(
        "/subjects/S004/sign",
        data=post | {"confirm_open_queries": again},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text


def test_signing_is_documented_with_its_confirmation(clients):
    schema = clients["investigator"].get("/api/openapi.json").json()
    operation = schema["paths"]["/api/v1/subjects/{code}/signatures"]["post"]
    body = schema["components"]["schemas"]["SignatureCreate"]["properties"]
    assert body["confirm_open_queries"]["type"] == "boolean"
    assert "open_queries" in operation["responses"]["422"]["description"]


@pytest.mark.parametrize("role", ["coordinator"])
def test_the_documented_422_shape_holds_the_field(clients, role):
    schema = clients[role].get("/api/openapi.json").json()
    problem = schema["components"]["schemas"]["ValidationError"]
    assert set(problem["required"]) == {"loc", "field", "msg", "type"}


# --- the schema says what the API takes -----------------------------------------------------------


@given(st.text(alphabet=st.sampled_from("aZ9ÄЖ字٣_-.+() /?#%\t\u0301"), max_size=8))
@settings(max_examples=300, deadline=None, derandomize=True)
def test_the_subject_code_pattern_is_the_rule_every_way_in_applies(code):
    from celltrial.ingest.subject_codes import subject_code_problem
    from celltrial.web.schemas import SUBJECT_CODE_PATTERN

    allowed = subject_code_problem(code) is None and code == code.strip()
    assert bool(re.search(SUBJECT_CODE_PATTERN, code)) == allowed, code


def test_every_time_the_schema_allows_can_be_stored_and_read_back():
    from celltrial.store.unreadable_times import EARLIEST, LATEST
    from celltrial.web.schemas import TIME_PATTERN, StudyTime

    adapter = TypeAdapter(StudyTime)
    for text in ("1900-01-01T00:00:00+23:59", "2099-12-31T23:59:59.999999-23:59"):
        assert re.search(TIME_PATTERN, text)
        utc = adapter.validate_python(text).astimezone(UTC).replace(tzinfo=None)
        assert EARLIEST <= utc < LATEST
    for text in ("1899-12-31T23:59:59+00:00", "2100-01-01T00:00:00Z", "2020-01-01T10:00Z"):
        assert not re.search(TIME_PATTERN, text)
        with pytest.raises(ValidationError):
            adapter.validate_python(text)
    with pytest.raises(ValidationError, match="not a day of the calendar"):
        adapter.validate_python("2021-02-29T10:00:00Z")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("confirm_warnings", 0),  # not false
        ("grade", "2"),  # not 2
        ("grade", 2.5),
        ("onset_at", 1577836800),  # not a Unix time
        ("onset_at", "2020-01-01 10:00:00Z"),  # not RFC 3339
        ("term", "   "),  # not only spaces
    ],
)
def test_a_value_of_another_type_than_the_schema_says_is_refused(clients, field, value):
    event = {"term": "Fever", "onset_at": (NOW - timedelta(days=1)).isoformat(), "grade": 1}
    refused = clients["coordinator"].post(
        "/api/v1/subjects/S001/adverse-events", json=event | {field: value}
    )
    assert list(_problems(refused)) == [field]


def test_enrolment_as_the_schema_says(clients):
    coordinator = clients["coordinator"]
    schema = coordinator.get("/api/openapi.json").json()
    fields = schema["components"]["schemas"]["SubjectEnrol"]["properties"]
    assert fields["site"]["anyOf"][0]["enum"] == ["01"]  # the study's sites
    assert (fields["age"]["minimum"], fields["age"]["maximum"]) == (0, 120)
    assert "male" in fields["sex"]["anyOf"][0]["enum"]
    # the limits are the service's: the edges are taken, a step beyond refused
    made = coordinator.post("/api/v1/subjects", json={"code": "C-1", "age": 120, "height_cm": 30})
    assert made.status_code == 201, made.text
    beyond = coordinator.post("/api/v1/subjects", json={"code": "C-2", "age": 120.5})
    assert beyond.status_code == 422 and "age: 120.5" in beyond.json()["detail"]
    assert coordinator.post("/api/v1/subjects", json={"code": "C-1"}).status_code == 409
    elsewhere = coordinator.post("/api/v1/subjects", json={"code": "C-3", "site": "02"})
    assert elsewhere.status_code == 422
    spaced = coordinator.post("/api/v1/subjects", json={"code": "C-4 "})
    assert _problems(spaced)["code"].startswith("code: 'C-4 ': spaces at its start or end")
    # sex words as EDC systems and people write them, in any of the usual cases
    for code, word in (("C-5", "Female"), ("C-6", "MALE"), ("C-7", "f")):
        made = coordinator.post("/api/v1/subjects", json={"code": code, "sex": word})
        assert made.status_code == 201, made.text
        assert made.json()["sex"] == ("M" if word == "MALE" else "F"), made.text
    assert list(_problems(coordinator.post("/api/v1/subjects", json={"code": "C-8", "sex": "x"})))


def test_the_upload_names_the_file_types_it_takes(clients):
    schema = clients["coordinator"].get("/api/openapi.json").json()
    body = schema["paths"]["/api/v1/uploads"]["post"]["requestBody"]["content"]
    named = body["multipart/form-data"]["encoding"]["file"]["headers"]["Content-Disposition"]
    assert ".csv" in named["description"] and ".xlsx" in named["description"]
    assert 'filename="results.csv"' in named["schema"]["example"]


def test_an_upload_takes_a_cohort_name_as_long_as_the_schema_says(clients):
    importer = clients["data_manager"]
    rows = "subject_id,time,test,value,unit\nS001,2024-01-02 08:00,CRP,12,mg/L\n"

    def send(cohort: str):
        files = {"file": ("results.csv", rows.encode(), "text/csv")}
        return importer.post(
            "/api/v1/uploads", files=files, data={"register": "cohort", "cohort": cohort}
        )

    refused = send("C" * 65)  # was cut to 64 characters and staged
    assert refused.status_code == 422 and "cohort: at most 64" in refused.json()["detail"]
    staged = send("C" * 64)
    assert staged.status_code == 201, staged.text
    assert staged.json()["cohort"] == "C" * 64
    importer.delete(f"/api/v1/uploads/{staged.json()['token']}")


def test_the_audit_log_filters_are_those_the_schema_states(clients):
    reader = clients["data_manager"]
    assert reader.get("/api/v1/audit?before=12&since=2020-01-01&table=infusion").status_code == 200
    said = _problems(reader.get("/api/v1/audit?before=x12"))
    assert said == {
        "before": "before: 'x12' is not allowed: expected an audit event number (the digits 0–9)"
    }
    assert list(_problems(reader.get("/api/v1/audit?table=nope"))) == ["table"]
    # a day the calendar lacks fits the pattern: the study's rule says it in words
    impossible = reader.get("/api/v1/audit?since=2020-02-30")
    assert impossible.status_code == 422 and "is not a date" in impossible.json()["detail"]


def test_audit_log_filters_beyond_the_numbers_and_times_a_database_holds(clients):
    reader = clients["data_manager"]

    def ids(**params) -> list[int]:
        answer = reader.get("/api/v1/audit", params={"limit": 500, **params})
        assert answer.status_code == 200, answer.text
        return [entry["id"] for entry in answer.json()["entries"]]

    every = ids()
    assert every  # the study's set-up is audited
    # event numbers are 32-bit in the database: every event is before a larger one, none after
    for number in ("2147483648", "9" * 18):
        assert ids(before=number) == every
        assert ids(after=number) == []
    assert ids(before="2147483647") == every
    # the first and last days a time can hold: before and after every event
    assert ids(since="0001-01-01") == every
    assert ids(until="9999-12-31") == every
    assert ids(since="9999-12-31") == []
    assert ids(until="0001-01-01") == []
    # the page takes them too
    assert reader.get("/audit", params={"before": "9" * 18, "until": "9999-12-31"}).is_success
    assert reader.get("/audit", params={"after": "9" * 18, "since": "0001-01-01"}).is_success


def test_an_account_state_that_refuses_a_change_is_a_conflict(clients):
    admin = clients["admin"]
    own = admin.post("/api/v1/users/admin/deactivate", json={"reason": "test"})
    assert own.status_code == 409 and "your own account" in own.json()["detail"]
    active = admin.post("/api/v1/users/monitor/reactivate", json={"reason": "test"})
    assert active.status_code == 409 and "active already" in active.json()["detail"]
    unknown = admin.post("/api/v1/users/monitor/role", json={"role": "sponsor", "reason": "x"})
    assert list(_problems(unknown)) == ["role"]  # the roles are in the schema


@pytest.mark.parametrize("field", ["lot_code", "stop_reason"])
def test_text_with_a_nul_character_is_refused_by_field_on_every_backend(clients, field):
    """PostgreSQL cannot keep the NUL character in text: the schema refuses it everywhere, on
    SQLite as well, in plain words (it reached the database as a server error before)."""
    infusion = {
        "lot_code": "LOT-1",
        "vial_id": "V1",
        "started_at": (NOW - timedelta(days=1)).isoformat(),
        "cells_given": 3e7,
        "label_subject_code": "S001",
    }
    refused = clients["coordinator"].post(
        "/api/v1/subjects/S001/infusions", json=infusion | {field: "a\x00b"}
    )
    said = _problems(refused)
    assert list(said) == [field] and "without NUL characters" in said[field]
