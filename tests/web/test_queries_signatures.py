"""Queries (raised, answered, closed, each step audited) and the investigator's casebook
signature (password again, meaning, time; invalidated by a later change to signed data)."""

from __future__ import annotations

import re

from tests.web.conftest import PASSWORD
from tests.web.test_app import infusion, iso


def _token(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def test_query_raised_answered_closed_with_roles_and_history(clients):
    coordinator, dm, monitor = clients["coordinator"], clients["data_manager"], clients["monitor"]
    given = coordinator.post("/api/v1/subjects/S001/infusions", json=infusion(4))
    assert given.status_code == 201, given.text
    row = given.json()["id"]
    ask = {"table": "infusion", "row_id": row, "field": "cells_given", "question": "Dose 3e7?"}

    for role in ("coordinator", "investigator", "monitor"):
        assert clients[role].post("/api/v1/queries", json=ask).status_code == 403, role
    raised = dm.post("/api/v1/queries", json=ask)
    assert raised.status_code == 201, raised.text
    query = raised.json()
    assert query["status"] == "open" and query["value_text"] == "30000000.0"
    assert query["subject_code"] == "S001" and query["raised_by"] == "data-manager"

    dashboard = monitor.get("/").text
    assert "Open queries (1)" in dashboard and "Dose 3e7?" in dashboard
    assert [q["id"] for q in monitor.get("/api/v1/queries?open_only=true").json()] == [query["id"]]

    answer = {"answer": "Checked against the pump log: 3.0e7 given."}
    assert dm.post(f"/api/v1/queries/{query['id']}/answer", json=answer).status_code == 403
    answered = coordinator.post(f"/api/v1/queries/{query['id']}/answer", json=answer)
    assert answered.status_code == 200 and answered.json()["status"] == "answered"
    assert answered.json()["answered_by"] == "coordinator"

    assert coordinator.post(f"/api/v1/queries/{query['id']}/close", json={}).status_code == 403
    stale = dm.post(f"/api/v1/queries/{query['id']}/close", json={"version": query["version"]})
    assert stale.status_code == 409
    closed = dm.post(f"/api/v1/queries/{query['id']}/close", json={"note": "resolved"})
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    again = coordinator.post(f"/api/v1/queries/{query['id']}/answer", json=answer)
    assert again.status_code == 422 and "closed" in again.json()["detail"]

    assert "Open queries (0)" in monitor.get("/").text
    subject_page = monitor.get("/subjects/S001").text
    assert "Dose 3e7?" in subject_page and "Checked against the pump log" in subject_page
    trail = monitor.get(f"/api/v1/audit/data_query/{query['id']}").json()["entries"]
    assert [(e["action"], e["user"], e["reason"]) for e in trail] == [
        ("insert", "data-manager", "query raised"),
        ("update", "coordinator", "query answered"),
        ("update", "data-manager", "query closed"),
    ]
    assert ["status", "answered", "closed"] in trail[2]["changes"]


def test_query_refuses_unknown_fields_records_and_closing_unanswered_without_note(clients):
    dm, investigator = clients["data_manager"], clients["investigator"]
    event = investigator.post(
        "/api/v1/subjects/S002/adverse-events", json={"term": "Fever", "onset_at": iso(3)}
    ).json()
    base = {"table": "adverse_event", "row_id": event["id"], "question": "grade?"}
    bad_field = dm.post("/api/v1/queries", json=base | {"field": "password_hash"})
    assert bad_field.status_code == 422 and "expected one of" in bad_field.json()["detail"]
    missing = dm.post("/api/v1/queries", json=base | {"field": "grade", "row_id": 99999})
    assert missing.status_code == 404
    assert dm.post("/api/v1/queries", json=base | {"table": "app_user"}).status_code == 422
    query = dm.post("/api/v1/queries", json=base | {"field": "grade"}).json()
    no_note = dm.post(f"/api/v1/queries/{query['id']}/close", json={})
    assert no_note.status_code == 422 and "not answered" in no_note.json()["detail"]
    closed = dm.post(f"/api/v1/queries/{query['id']}/close", json={"note": "raised in error"})
    assert closed.json()["status"] == "closed"


def test_query_through_the_pages_and_injection_shown_inertly(clients):
    dm, coordinator = clients["data_manager"], clients["coordinator"]
    event = (
        clients["investigator"]
        .post("/api/v1/subjects/S003/adverse-events", json={"term": "Headache", "onset_at": iso(2)})
        .json()
    )
    assert (
        f"/queries/new?table=adverse_event&amp;row_id={event['id']}"
        in dm.get("/subjects/S003").text
    )
    form_page = dm.get(f"/queries/new?table=adverse_event&row_id={event['id']}")
    assert form_page.status_code == 200 and "Headache" in form_page.text
    evil = "<script>alert('q')</script>"
    form = {
        "csrf_token": _token(form_page.text),
        "table": "adverse_event",
        "row_id": str(event["id"]),
        "field": "term",
        "question": evil,
    }
    assert dm.post("/queries", data=form | {"csrf_token": "forged"}).status_code == 403
    response = dm.post("/queries", data=form, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/subjects/S003#queries"
    page = coordinator.get("/subjects/S003").text
    assert evil not in page and "&lt;script&gt;alert(" in page
    query_id = coordinator.get("/api/v1/queries?subject=S003").json()[-1]["id"]
    answered = coordinator.post(
        f"/queries/{query_id}/answer",
        data={"csrf_token": _token(page), "answer": "Term is right."},
        follow_redirects=False,
    )
    assert answered.status_code == 303
    assert coordinator.get(f"/api/v1/queries/{query_id}").json()["status"] == "answered"


def test_casebook_signature_needs_password_and_role_and_is_invalidated_by_a_change(clients):
    investigator, coordinator = clients["investigator"], clients["coordinator"]
    event = investigator.post(
        "/api/v1/subjects/S004/adverse-events",
        json={"term": "Fever", "onset_at": iso(2), "grade": 1},
    ).json()
    url = "/api/v1/subjects/S004/signatures"
    sign = {"password": PASSWORD, "meaning": "review"}
    assert coordinator.post(url, json=sign).status_code == 403
    wrong = investigator.post(url, json=sign | {"password": "not my password"})
    assert wrong.status_code == 403 and "not confirmed" in wrong.json()["detail"]
    assert investigator.get(url).json() == []

    signed = investigator.post(url, json=sign)
    assert signed.status_code == 201, signed.text
    signature = signed.json()
    assert signature["valid"] and signature["signed_by"] == "investigator"
    assert signature["meaning"].startswith("I have reviewed the data")
    page = coordinator.get("/subjects/S004").text
    assert "Signed</b> by" in page and "I have reviewed the data" in page

    # a query is not signed data: raising one leaves the signature standing
    clients["data_manager"].post(
        "/api/v1/queries",
        json={"table": "adverse_event", "row_id": event["id"], "field": "grade", "question": "?"},
    )
    assert coordinator.get(url).json()[0]["valid"]

    change = {"term": "Fever", "onset_at": iso(2), "grade": 2, "version": event["version"]}
    edited = coordinator.put(
        f"/api/v1/adverse-events/{event['id']}", json=change | {"reason": "grade from chart"}
    )
    assert edited.status_code == 200, edited.text
    now = coordinator.get(url).json()[0]
    assert not now["valid"]
    assert "adverse event" in now["invalidated_by"] and "coordinator" in now["invalidated_by"]
    assert "grade from chart" in now["invalidated_by"]
    assert "Signature no longer valid" in coordinator.get("/subjects/S004").text

    # signing again through the page: a valid signature on top, the old one kept
    form_page = investigator.get("/subjects/S004/sign")
    assert form_page.status_code == 200 and "Meaning of the signature" in form_page.text
    assert coordinator.get("/subjects/S004/sign").status_code == 403
    refused = investigator.post(
        "/subjects/S004/sign",
        data={"csrf_token": _token(form_page.text), "meaning": "approval", "password": "wrong"},
    )
    assert refused.status_code == 403 and "not confirmed" in refused.text
    shown = re.search(r'name="confirm_open_queries" value="([\d,]+)"', form_page.text).group(1)
    response = investigator.post(
        "/subjects/S004/sign",
        data={
            "csrf_token": _token(form_page.text),
            "meaning": "approval",
            "password": PASSWORD,
            "confirm_open_queries": shown,  # the open query the form showed
        },
        follow_redirects=False,
    )
    assert response.status_code == 303
    newest, older = coordinator.get(url).json()
    assert (
        newest["valid"]
        and newest["meaning"].startswith("As the investigator")
        and not older["valid"]
    )
    trail = coordinator.get(f"/api/v1/audit/casebook_signature/{newest['id']}").json()["entries"]
    assert trail[0]["action"] == "insert" and trail[0]["user"] == "investigator"


def test_query_on_a_daily_clinical_status(clients):
    coordinator, dm = clients["coordinator"], clients["data_manager"]
    status = coordinator.post(
        "/api/v1/subjects/S003/clinical-status",
        json={"assessed_at": iso(5), "who_scale": 5, "oxygen_support": "nasal cannula"},
    )
    assert status.status_code == 201, status.text
    row = status.json()["id"]
    assert f"/queries/new?table=clinical_status&amp;row_id={row}" in dm.get("/subjects/S003").text
    ask = {"table": "clinical_status", "row_id": row, "field": "who_scale", "question": "5 or 6?"}
    raised = dm.post("/api/v1/queries", json=ask)
    assert raised.status_code == 201, raised.text
    assert raised.json()["value_text"] == "5" and raised.json()["subject_code"] == "S003"
    bookkeeping = dm.post("/api/v1/queries", json=ask | {"field": "source_row"})
    assert bookkeeping.status_code == 422


def test_the_api_offers_queries_on_every_queryable_record():
    from typing import get_args

    from celltrial.services.queries import QUERYABLE
    from celltrial.web.schemas import QueryTable

    assert set(get_args(QueryTable)) == set(QUERYABLE)
