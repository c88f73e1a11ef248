"""Routes, roles, CSRF, bedside check, edits with reason, optimistic locking, inert injection."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from fastapi.routing import APIRoute
from markupsafe import escape

from celltrial.labels import name_codes
from celltrial.web.schemas import InfusionFields
from tests.web.conftest import NOW, PASSWORD, QUARANTINED, RELEASED, client_for


def iso(days: float, hours: float = 0) -> str:
    return (NOW - timedelta(days=days, hours=hours)).isoformat()


def infusion(days: float, **changes) -> dict:
    body = {
        "lot_code": RELEASED,
        "vial_id": "V-1",
        "started_at": iso(days),
        "ended_at": iso(days, -0.5),
        "cells_given": 3.0e7,
        "volume_ml": 100,
        "label_subject_code": "S001",
    }
    return body | changes


def test_every_route_refuses_anonymous(app, anonymous):
    public = {("GET", "/login"), ("POST", "/login"), ("GET", "/static/style.css")}
    public.add(("POST", "/api/v1/session"))
    checked = 0
    from celltrial.web import api, pages

    for route in [*api.router.routes, *pages.router.routes]:
        if not isinstance(route, APIRoute):
            continue
        path = re.sub(r"\{[^}]+\}", "1", route.path).replace("/subjects/1", "/subjects/S001")
        for method in route.methods - {"HEAD"}:
            if (method, route.path) in public:
                continue
            response = anonymous.request(method, path, json={}, follow_redirects=False)
            if path.startswith("/api/"):
                assert response.status_code == 401, (method, path)
            else:
                assert response.status_code == 303, (method, path)
                assert response.headers["location"].startswith("/login?next=")
            checked += 1
    assert checked >= 20
    assert anonymous.get("/api/openapi.json").status_code == 401


def test_session_cookie_is_secure_httponly_samesite(app):
    client = client_for(app)
    response = client.post("/api/v1/session", json={"username": "monitor", "password": PASSWORD})
    cookie = response.headers["set-cookie"].lower()
    assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    assert response.headers["content-security-policy"].startswith("default-src 'none'")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/", "all"),
        ("GET", "/api/v1/dashboard", "all"),
        ("GET", "/subjects/S004/infusions/new", {"investigator", "coordinator"}),
        ("POST", "/api/v1/subjects/S004/infusions", {"investigator", "coordinator"}),
        ("POST", "/api/v1/subjects/S004/adverse-events", {"investigator", "coordinator"}),
        ("PUT", "/api/v1/infusions/999", {"investigator", "coordinator"}),
        (
            "GET",
            "/audit/subject/1",
            {"investigator", "coordinator", "data_manager", "monitor", "admin"},
        ),
        ("GET", "/users", {"admin"}),
        ("POST", "/users", {"admin"}),
    ],
)
def test_each_role_is_refused_what_it_may_not_do(clients, method, path, allowed):
    for role, client in clients.items():
        data = (
            {"csrf_token": client.csrf}
            if method == "POST" and not path.startswith("/api")
            else None
        )
        response = client.request(
            method,
            path,
            data=data,
            json={} if path.startswith("/api") and method != "GET" else None,
            follow_redirects=False,
        )
        if allowed == "all" or role in allowed:
            assert response.status_code != 403, (role, method, path, response.text)
        else:
            assert response.status_code == 403, (role, method, path, response.status_code)


def test_monitor_sees_no_entry_buttons(clients):
    page = clients["monitor"].get("/subjects/S001").text
    assert "Record infusion" not in page and "Record adverse event" not in page
    assert "Record infusion" in clients["coordinator"].get("/subjects/S001").text


def test_form_without_csrf_token_is_refused_and_stores_nothing(clients):
    client = clients["coordinator"]
    form = {k: str(v) for k, v in infusion(9).items()} | {"started_at": iso(9)[:16]}
    response = client.post("/subjects/S003/infusions", data=form)
    assert response.status_code == 403 and "security token" in response.text
    response = client.post("/subjects/S003/infusions", data=form | {"csrf_token": "forged"})
    assert response.status_code == 403
    assert client.get("/api/v1/subjects/S003/infusions").json() == []
    api = client_for(client.app)
    api.cookies = client.cookies
    assert api.post("/api/v1/subjects/S003/infusions", json=infusion(9)).status_code == 403


def test_bedside_check_refuses_wrong_lot_or_label(clients):
    client = clients["coordinator"]
    refused = client.post(
        "/api/v1/subjects/S002/infusions",
        json=infusion(9, lot_code=QUARANTINED, label_subject_code="S002"),
    )
    assert refused.status_code == 422
    assert "not released" in refused.json()["detail"]
    refused = client.post(
        "/api/v1/subjects/S002/infusions", json=infusion(9, label_subject_code="S001")
    )
    assert refused.status_code == 422 and "do not infuse" in refused.json()["detail"]
    refused = client.post(
        "/api/v1/subjects/S002/infusions",
        json=infusion(9, lot_code="OTHER", label_subject_code="S002"),
    )
    assert refused.status_code == 422 and "not a lot of study" in refused.json()["detail"]
    assert client.get("/api/v1/subjects/S002/infusions").json() == []


def test_record_infusions_through_the_form_late_one_is_flagged(clients):
    client = clients["coordinator"]
    page = client.get("/subjects/S001/infusions/new").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    for number, days in ((1, 10), (2, 7), (3, 2)):  # day 0, 3, 8: the third is late
        form = {
            "csrf_token": token,
            "lot_code": RELEASED,
            "vial_id": f"V-{number}",
            "label_subject_code": "S001",
            "started_at": (NOW - timedelta(days=days)).isoformat(),
            "cells_given": "3.0e7",
            "completed": "on",
        }
        response = client.post("/subjects/S001/infusions", data=form, follow_redirects=False)
        assert response.status_code == 303, response.text
    dashboard = client.get("/api/v1/dashboard").json()
    row = next(s for s in dashboard["subjects"] if s["subject_id"] == "S001")
    assert [i["status"] for i in row["infusions"]] == ["on_time", "on_time", "late"]
    assert any(
        d["kind"] == "infusion_late" and d["subject_id"] == "S001" for d in dashboard["deviations"]
    )
    html = client.get("/").text
    assert "#3 late" in html
    # deviations name their tests as the report and the CLI do; the API keeps the codes
    coded = [d for d in dashboard["deviations"] if name_codes(d["what"]) != d["what"]]
    assert coded, "no deviation names a test: the check below would test nothing"
    for deviation in coded:
        assert str(escape(name_codes(deviation["what"]))) in html
        assert str(escape(deviation["what"])) not in html


def test_serious_ae_goes_to_the_top_of_the_safety_panel(clients):
    client = clients["investigator"]
    body = {
        "term": "Anaphylaxis",
        "onset_at": iso(2, -1),
        "grade": 3,
        "serious": True,
        "serious_criteria": ["life-threatening"],
        "relatedness": "possibly related",
        "outcome": "recovering",
    }
    created = client.post("/api/v1/subjects/S001/adverse-events", json=body)
    assert created.status_code == 201, created.text
    dashboard = client.get("/api/v1/dashboard").json()
    assert dashboard["alerts"][0]["kind"] == "serious adverse event"
    assert "Anaphylaxis" in dashboard["alerts"][0]["text"]
    bad = client.post("/api/v1/subjects/S001/adverse-events", json=body | {"serious_criteria": []})
    assert bad.status_code == 422 and "at least one criterion" in bad.json()["detail"]


def test_an_edited_ae_meets_the_rules_of_a_new_one(clients):
    client = clients["investigator"]
    body = {"term": "Fever", "onset_at": iso(2, -1), "grade": 1, "serious": False}
    created = client.post("/api/v1/subjects/S001/adverse-events", json=body)
    assert created.status_code == 201, created.text
    record = created.json()
    future = body | {"onset_at": "2099-01-01T10:00:00+08:00"}
    edit = future | {"version": record["version"], "reason": "wrong date"}
    refused = client.put(f"/api/v1/adverse-events/{record['id']}", json=edit)
    assert refused.status_code == 422 and "a time that has passed" in refused.json()["detail"]
    new = client.post("/api/v1/subjects/S001/adverse-events", json=future)
    assert new.status_code == 422 and "a time that has passed" in new.json()["detail"]
    assert "2099-01-01 10:00" in new.json()["detail"]  # shown in the study's time zone


def test_edit_needs_a_reason_and_the_audit_trail_shows_it(clients):
    client = clients["coordinator"]
    record = client.post(
        "/api/v1/subjects/S002/infusions", json=infusion(5, label_subject_code="S002")
    ).json()
    change = {k: v for k, v in infusion(5).items() if k != "label_subject_code"}
    change |= {"cells_given": 2.8e7, "version": record["version"]}
    assert (
        client.put(f"/api/v1/infusions/{record['id']}", json=change | {"reason": "  "}).status_code
        == 422
    )
    updated = client.put(
        f"/api/v1/infusions/{record['id']}",
        json=change | {"reason": "transcription error, bag label"},
    )
    assert updated.status_code == 200 and updated.json()["version"] == record["version"] + 1
    trail = client.get(f"/api/v1/audit/infusion/{record['id']}").json()["entries"]
    assert [e["action"] for e in trail] == ["insert", "update"]
    assert (
        trail[1]["user"] == "coordinator" and trail[1]["reason"] == "transcription error, bag label"
    )
    assert ["cells_given", 3.0e7, 2.8e7] in trail[1]["changes"]
    page = client.get(f"/audit/infusion/{record['id']}").text
    assert "transcription error, bag label" in page and "coordinator" in page


def test_two_users_editing_the_same_record_get_a_conflict(clients):
    coordinator, investigator = clients["coordinator"], clients["investigator"]
    record = coordinator.post(
        "/api/v1/subjects/S003/infusions", json=infusion(10, label_subject_code="S003")
    ).json()
    change = {k: v for k, v in infusion(10).items() if k != "label_subject_code"}
    first = coordinator.put(
        f"/api/v1/infusions/{record['id']}",
        json=change
        | {"volume_ml": 90, "version": record["version"], "reason": "volume from chart"},
    )
    assert first.status_code == 200
    second = investigator.put(
        f"/api/v1/infusions/{record['id']}",
        json=change
        | {"volume_ml": 110, "version": record["version"], "reason": "volume from pump"},
    )
    assert second.status_code == 409
    assert "changed by coordinator" in second.json()["detail"]
    assert coordinator.get(f"/api/v1/infusions/{record['id']}").json()["volume_ml"] == 90
    # the same through the edit page: the stale form is shown again with the message
    page = investigator.get(f"/infusions/{record['id']}/edit").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    form = {
        "csrf_token": token,
        "version": str(record["version"]),
        "lot_code": RELEASED,
        "vial_id": "V-1",
        "started_at": change["started_at"],
        "cells_given": "3e7",
        "completed": "on",
        "reason": "late edit",
    }
    response = investigator.post(f"/infusions/{record['id']}/edit", data=form)
    assert response.status_code == 409 and "after you opened it" in response.text


INJECTIONS = [
    "'); DROP TABLE subject; --",
    "<script>alert('x')</script>",
    '" onmouseover="alert(1)',
]


def test_injection_strings_are_stored_and_shown_inertly(clients):
    client = clients["investigator"]
    # treated: the dashboard's safety tables list the safety population's events
    given = clients["coordinator"].post(
        "/api/v1/subjects/S004/infusions", json=infusion(2, label_subject_code="S004")
    )
    assert given.status_code == 201, given.text
    for text in INJECTIONS:
        body = {"term": text, "onset_at": iso(1), "grade": 1, "description": text}
        assert client.post("/api/v1/subjects/S004/adverse-events", json=body).status_code == 201
    stored = client.get("/api/v1/subjects/S004/adverse-events").json()
    assert [e["term"] for e in stored] == INJECTIONS
    for page in (client.get("/subjects/S004").text, client.get("/").text):
        assert "<script>alert" not in page
        assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
        assert '" onmouseover="' not in page
    assert client.get("/api/v1/dashboard").status_code == 200  # the subject table survived


def test_lockout_after_repeated_failures(app):
    from celltrial.services.accounts import MAX_FAILED_SIGN_INS, add_user

    add_user(
        app.state.study.engine, username="locked-out", role="monitor", password=PASSWORD, by="t"
    )
    client = client_for(app)
    for _ in range(MAX_FAILED_SIGN_INS):
        bad = client.post(
            "/api/v1/session", json={"username": "locked-out", "password": "wrong password"}
        )
        assert bad.status_code == 401
    good = client.post("/api/v1/session", json={"username": "locked-out", "password": PASSWORD})
    assert good.status_code == 401 and "locked" in good.json()["detail"]


def test_sign_in_page_flow_and_no_open_redirect(app):
    client = client_for(app)
    page = client.get("/login?next=//evil.example/x")
    token = re.search(r'name="form_token" value="([^"]+)"', page.text).group(1)
    assert 'value="/"' in page.text
    response = client.post(
        "/login",
        data={
            "form_token": token,
            "next": "//evil.example/x",
            "username": "monitor",
            "password": PASSWORD,
        },
        follow_redirects=False,
    )
    assert response.status_code == 303 and response.headers["location"] == "/"
    assert client.get("/").status_code == 200
    forged = client_for(app).post(
        "/login", data={"form_token": "x", "username": "monitor", "password": PASSWORD}
    )
    assert forged.status_code == 403


def test_users_add_command(study_dir, db_url, app):
    from typer.testing import CliRunner

    from celltrial.web.command import users_app

    runner = CliRunner()
    result = runner.invoke(
        users_app,
        [
            "add",
            str(study_dir),
            "--db",
            db_url,
            "--username",
            "newadmin",
            "--role",
            "admin",
            "--password-stdin",
        ],
        input=PASSWORD + "\n",
    )
    assert result.exit_code == 0, result.output
    weak = runner.invoke(
        users_app,
        [
            *("add", str(study_dir), "--db", db_url, "--username", "weak"),
            *("--role", "admin", "--password-stdin"),
        ],
        input="short\n",
    )
    assert weak.exit_code != 0
    assert (
        client_for(app)
        .post("/api/v1/session", json={"username": "newadmin", "password": PASSWORD})
        .status_code
        == 200
    )


def test_openapi_lists_reads_and_writes(clients):
    schema = clients["monitor"].get("/api/openapi.json").json()
    paths = schema["paths"]
    assert "post" in paths["/api/v1/subjects/{code}/infusions"]
    assert "put" in paths["/api/v1/adverse-events/{event_id}"]
    assert "get" in paths["/api/v1/audit/{table}/{row_id}"]


def test_an_infusion_read_through_the_api_can_be_saved_back_unchanged_in_form(clients):
    """``reaction`` null means "not recorded" (imported infusions): what GET returns, PUT
    takes, and the edit keeps it null rather than turning it into "no reaction"."""
    client = clients["coordinator"]
    created = client.post(
        "/api/v1/subjects/S004/infusions",
        json=infusion(2, label_subject_code="S004", reaction=None),
    )
    assert created.status_code == 201, created.text
    read = client.get(f"/api/v1/infusions/{created.json()['id']}").json()
    assert read["reaction"] is None
    editable = {k: v for k, v in read.items() if k in InfusionFields.model_fields}
    body = editable | {
        "lot_code": RELEASED,
        "volume_ml": 95,
        "version": read["version"],
        "reason": "volume from the pump log",
    }
    saved = client.put(f"/api/v1/infusions/{read['id']}", json=body)
    assert saved.status_code == 200, saved.text
    assert saved.json()["reaction"] is None and saved.json()["volume_ml"] == 95


def test_the_edit_form_keeps_an_unrecorded_reaction_unless_someone_answers(clients):
    client = clients["coordinator"]
    created = client.post(
        "/api/v1/subjects/S004/infusions",
        json=infusion(1, label_subject_code="S004", reaction=None, vial_id="V-9"),
    ).json()
    page = client.get(f"/infusions/{created['id']}/edit").text
    assert 'name="reaction_answer"' in page and 'name="reaction"' not in page
    form = {
        "csrf_token": re.search(r'name="csrf_token" value="([^"]+)"', page).group(1),
        "version": str(created["version"]),
        "lot_code": RELEASED,
        "vial_id": "V-9",
        "started_at": (NOW - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"),
        "cells_given": "3e7",
        "completed": "on",
        "volume_ml": "90",
        "reason": "volume from the pump log",
    }
    url = f"/infusions/{created['id']}/edit"
    saved = client.post(url, data=form | {"reaction_answer": ""}, follow_redirects=False)
    assert saved.status_code == 303, saved.text
    after = client.get(f"/api/v1/infusions/{created['id']}").json()
    assert after["reaction"] is None and after["volume_ml"] == 90
    answered = form | {"version": str(after["version"]), "reason": "asked the ward"}
    saved = client.post(url, data=answered | {"reaction_answer": "no"}, follow_redirects=False)
    assert saved.status_code == 303, saved.text
    assert client.get(f"/api/v1/infusions/{created['id']}").json()["reaction"] is False
    # answered, the form shows the usual checkbox again
    assert 'name="reaction"' in client.get(url).text


def test_a_lost_update_at_the_flush_is_an_edit_conflict_naming_the_record():
    from sqlalchemy.orm.exc import StaleDataError

    from celltrial.services.editing import refusing_lost_updates
    from celltrial.services.errors import EditConflict

    expected = r"^the lot was changed by someone else while you saved; your changes were not"
    with pytest.raises(EditConflict, match=expected), refusing_lost_updates("the lot was"):
        raise StaleDataError("UPDATE statement on table 'product_lot' expected 1 row")
    with pytest.raises(ValueError), refusing_lost_updates("the lot was"):
        raise ValueError("other errors pass through")
