"""Vital signs, daily clinical status, product lots and chest CT in the web app: forms and JSON API,
plausibility messages, roles, CSRF, edits with a reason and the version read, audit trails."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from tests.web.conftest import NOW, client_for


def zone_of(client):
    return client.app.state.study.protocol.study.zone


def local(client, days: float, hours: float = 0) -> str:
    """A ``datetime-local`` form value in the study zone, ``days`` before now."""
    from celltrial.web.forms import local_input

    return local_input(NOW - timedelta(days=days, hours=hours), zone_of(client))


def another_time_that_day(client, days: float) -> str:
    """A ``datetime-local`` value 30 minutes from ``local(client, days)`` on the same local date
    (earlier, unless that is within the first 30 minutes of the day), whatever the time the
    tests run at."""
    moment = (NOW - timedelta(days=days)).astimezone(zone_of(client))
    hours = 0.5 if moment.hour * 60 + moment.minute >= 30 else -0.5
    return local(client, days, hours)


def iso(days: float, hours: float = 0) -> str:
    return (NOW - timedelta(days=days, hours=hours)).isoformat()


def token_of(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def version_of(page: str) -> str:
    return re.search(r'name="version" value="([^"]+)"', page).group(1)


VITALS = {
    "heart_rate": 88,
    "systolic_bp": 118,
    "diastolic_bp": 76,
    "respiratory_rate": 20,
    "spo2": 94,
}


# --- vital signs -------------------------------------------------------------------------------


def test_vital_signs_form_stores_canonical_values_beside_the_text_entered(clients):
    client = clients["coordinator"]
    page = client.get("/subjects/S001/vital-signs/new")
    assert page.status_code == 200 and 'name="temperature_unit"' in page.text
    form = {
        "csrf_token": token_of(page.text),
        "time": local(client, 2),
        "temperature": "100,4",  # decimal comma, in °F
        "temperature_unit": "degF",
        "heart_rate": "88",
        "systolic_bp": "118",
        "diastolic_bp": "76",
        "spo2": "94",
        "fio2": "40",
        "fio2_unit": "%",
    }
    response = client.post("/subjects/S001/vital-signs", data=form, follow_redirects=False)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/subjects/S001#vital-signs"
    [stored] = client.get("/api/v1/subjects/S001/vital-signs").json()
    assert stored["temperature"] == pytest.approx(38.0) and stored["fio2"] == pytest.approx(0.4)
    assert stored["heart_rate"] == 88 and stored["respiratory_rate"] is None
    temperature = next(v for v in stored["values"] if v["test"] == "TEMP")
    assert (temperature["raw_value"], temperature["raw_unit"], temperature["unit"]) == (
        "100,4",
        "degF",
        "degC",
    )
    subject = client.get("/subjects/S001").text
    assert 'id="vital-signs"' in subject and "Record vital signs" in subject
    timeline = client.get("/api/v1/subjects/S001").json()["timeline"]
    assert any(i["kind"] == "vital signs" and "T 38 °C" in i["text"] for i in timeline)


def test_implausible_vital_sign_is_refused_with_a_message_naming_the_field(clients):
    client = clients["investigator"]
    page = client.get("/subjects/S002/vital-signs/new")
    form = {"csrf_token": token_of(page.text), "time": local(client, 1), "temperature": "52"}
    refused = client.post("/subjects/S002/vital-signs", data=form)
    assert refused.status_code == 422
    assert "temperature: 52 °C is not plausible for body temperature (expected 25–45 °C)" in (
        refused.text
    )
    assert 'value="52"' in refused.text  # the form comes back with what was typed
    api = client.post(
        "/api/v1/subjects/S002/vital-signs", json={"time": iso(1), "fio2": 40, **VITALS}
    )
    assert api.status_code == 422
    assert (
        "FiO2: 40 is not plausible for inhaled oxygen fraction (expected a fraction, 0.21–1)"
        in api.json()["detail"]
    )
    assert "choose %" in api.json()["detail"]
    swapped = client.post(
        "/api/v1/subjects/S002/vital-signs",
        json={"time": iso(1), "systolic_bp": 70, "diastolic_bp": 110},
    )
    assert swapped.status_code == 422
    assert "diastolic blood pressure: 110 mmHg is not below" in swapped.json()["detail"]
    empty = client.post("/api/v1/subjects/S002/vital-signs", json={"time": iso(1)})
    assert "at least one value" in empty.json()["detail"]
    assert client.get("/api/v1/subjects/S002/vital-signs").json() == []


def test_vital_signs_edit_needs_a_reason_and_the_version_read_and_is_audited(clients):
    coordinator, investigator = clients["coordinator"], clients["investigator"]
    created = coordinator.post(
        "/api/v1/subjects/S003/vital-signs",
        json={"time": iso(3), "temperature": 37.2, **VITALS},
    )
    assert created.status_code == 201, created.text
    record = created.json()
    change = {"time": iso(3), "temperature": 37.2, **VITALS, "heart_rate": 98}
    no_reason = coordinator.put(
        f"/api/v1/vital-signs/{record['id']}",
        json=change | {"version": record["version"], "reason": " "},
    )
    assert no_reason.status_code == 422 and "reason" in no_reason.text
    updated = coordinator.put(
        f"/api/v1/vital-signs/{record['id']}",
        json=change | {"version": record["version"], "reason": "pulse recounted"},
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["heart_rate"] == 98 and updated.json()["version"] != record["version"]
    stale = investigator.put(
        f"/api/v1/vital-signs/{record['id']}",
        json=change | {"heart_rate": 70, "version": record["version"], "reason": "late edit"},
    )
    assert stale.status_code == 409 and "changed by coordinator" in stale.json()["detail"]
    pulse = next(v for v in updated.json()["values"] if v["test"] == "HR")
    trail = coordinator.get(f"/api/v1/audit/observation/{pulse['id']}").json()["entries"]
    assert [e["action"] for e in trail] == ["insert", "update"]
    assert trail[1]["reason"] == "pulse recounted" and ["value", 88.0, 98.0] in trail[1]["changes"]

    # the same through the edit page: no reason refused, then a value cleared with a reason
    page = investigator.get(f"/vital-signs/{record['id']}/edit").text
    assert 'value="98"' in page
    form = {
        "csrf_token": token_of(page),
        "version": version_of(page),
        "time": local(investigator, 3),
        "temperature": "37.2",
        "temperature_unit": "degC",
        **{k: str(v) for k, v in VITALS.items()},
        "heart_rate": "98",
        "respiratory_rate": "",
    }
    refused = investigator.post(f"/vital-signs/{record['id']}/edit", data=form)
    assert refused.status_code == 422 and "reason" in refused.text
    saved = investigator.post(
        f"/vital-signs/{record['id']}/edit",
        data=form | {"reason": "respiratory rate was not counted"},
        follow_redirects=False,
    )
    assert saved.status_code == 303, saved.text
    now = investigator.get(f"/api/v1/vital-signs/{record['id']}").json()
    assert now["respiratory_rate"] is None and now["heart_rate"] == 98
    rate = next(v for v in record["values"] if v["test"] == "RESP")
    removed = investigator.get(f"/api/v1/audit/observation/{rate['id']}").json()["entries"]
    assert removed[-1]["action"] == "delete"
    assert removed[-1]["reason"] == "respiratory rate was not counted"
    assert (
        "respiratory rate was not counted"
        in investigator.get(f"/audit/observation/{rate['id']}").text
    )


def test_a_second_round_at_the_same_time_is_refused(clients):
    client = clients["coordinator"]
    body = {"time": iso(4), "spo2": 93}
    assert client.post("/api/v1/subjects/S004/vital-signs", json=body).status_code == 201
    again = client.post("/api/v1/subjects/S004/vital-signs", json=body)
    assert again.status_code == 422 and "edit that round instead" in again.json()["detail"]


# --- clinical status ---------------------------------------------------------------------------


def test_clinical_status_form_edit_with_reason_and_audit_trail(clients):
    client = clients["coordinator"]
    page = client.get("/subjects/S001/clinical-status/new")
    assert page.status_code == 200 and "5 — hospitalised, oxygen by mask" in page.text
    form = {
        "csrf_token": token_of(page.text),
        "assessed_at": local(client, 2),
        "who_scale": "5",
        "oxygen_support": "nasal cannula",
        "fio2": "30",
        "fio2_unit": "%",
    }
    created = client.post("/subjects/S001/clinical-status", data=form, follow_redirects=False)
    assert created.status_code == 303, created.text
    [status] = client.get("/api/v1/subjects/S001/clinical-status").json()
    assert (status["who_scale"], status["fio2"]) == (5, pytest.approx(0.3))
    same_day = client.post(
        "/subjects/S001/clinical-status",
        data=form | {"assessed_at": another_time_that_day(client, 2)},
    )
    assert same_day.status_code == 422 and "already has a status on" in same_day.text
    misfit = client.post(
        "/api/v1/subjects/S001/clinical-status",
        json={"assessed_at": iso(1), "who_scale": 5, "oxygen_support": "invasive ventilation"},
    )
    assert misfit.status_code == 422
    assert (
        "WHO scale: 5 does not fit oxygen support 'invasive ventilation'"
        in (misfit.json()["detail"])
    )

    page = client.get(f"/clinical-status/{status['id']}/edit").text
    edit = {
        "csrf_token": token_of(page),
        "version": version_of(page),
        "assessed_at": local(client, 2),
        "who_scale": "6",
        "oxygen_support": "high-flow nasal oxygen",
        "fio2": "0.5",
        "fio2_unit": "1",
    }
    assert client.post(f"/clinical-status/{status['id']}/edit", data=edit).status_code == 422
    saved = client.post(
        f"/clinical-status/{status['id']}/edit",
        data=edit | {"reason": "escalated to high-flow at the ward round"},
        follow_redirects=False,
    )
    assert saved.status_code == 303, saved.text
    stale = client.put(
        f"/api/v1/clinical-status/{status['id']}",
        json={"assessed_at": iso(2), "who_scale": 5, "version": 1, "reason": "x"},
    )
    assert stale.status_code == 409
    trail = client.get(f"/api/v1/audit/clinical_status/{status['id']}").json()["entries"]
    assert trail[-1]["reason"] == "escalated to high-flow at the ward round"
    assert ["who_scale", 5, 6] in trail[-1]["changes"]
    timeline = client.get("/api/v1/subjects/S001").json()["timeline"]
    assert any(i["kind"] == "clinical status" and "WHO 6" in i["text"] for i in timeline)


# --- product lots ------------------------------------------------------------------------------


def lot_body(**changes) -> dict:
    markers = {"CD73": 98.5, "CD90": 99.0, "CD105": 97.0}
    markers |= {m: 0.4 for m in ("CD34", "CD45", "CD14", "CD19", "HLA-DR")}
    body = {
        "code": "LOT-N1",
        "release_status": "quarantine",
        "viability_pct": 92.0,
        "markers_pct": markers,
        "sterility": "no growth",
        "mycoplasma": "negative",
        "endotoxin_eu_per_ml": 0.2,
        "expires_at": (NOW + timedelta(days=60)).isoformat(),
    }
    return body | changes


def test_lot_forms_show_the_release_check_and_edits_need_a_reason(clients):
    client = clients["data_manager"]
    page = client.get("/lots/new")
    assert page.status_code == 200 and 'name="marker_CD73"' in page.text
    form = {
        "csrf_token": token_of(page.text),
        "code": "LOT-W1",
        "release_status": "released",
        "viability_pct": "61",
        "marker_CD73": "99",
        "sterility": "no growth",
        "mycoplasma": "negative",
    }
    refused = client.post("/lots", data=form)
    assert refused.status_code == 422
    assert "cannot be released" in refused.text and "viability 61 % &lt; 80 %" in refused.text
    created = client.post("/lots", data=form | {"release_status": "quarantine"})
    assert created.status_code == 200 and "LOT-W1" in created.text  # redirected to the list
    assert "not met:" in created.text and "CD90 not tested" in created.text
    lots = {lot["code"]: lot for lot in client.get("/api/v1/lots").json()}
    assert lots["LOT-W1"]["criteria_met"] is False and lots["LOT-R1"]["criteria_met"] is True
    assert lots["LOT-W1"]["markers_pct"] == {"CD73": 99.0}

    lot = client.post("/api/v1/lots", json=lot_body()).json()
    release = lot_body(release_status="released", version=lot["version"])
    assert client.put(f"/api/v1/lots/{lot['id']}", json=release | {"reason": ""}).status_code == 422
    released = client.put(
        f"/api/v1/lots/{lot['id']}", json=release | {"reason": "QA release signed"}
    )
    assert released.status_code == 200 and released.json()["release_status"] == "released"
    stale = client.put(f"/api/v1/lots/{lot['id']}", json=release | {"reason": "again"})
    assert stale.status_code == 409
    trail = client.get(f"/api/v1/audit/product_lot/{lot['id']}").json()["entries"]
    assert ["release_status", "quarantine", "released"] in trail[-1]["changes"]
    assert trail[-1]["reason"] == "QA release signed" and trail[-1]["user"] == "data-manager"

    page = client.get(f"/lots/{lot['id']}/edit").text
    assert 'value="98.5"' in page
    edit = {
        "csrf_token": token_of(page),
        "version": version_of(page),
        "code": "LOT-N1",
        "release_status": "rejected",
        "viability_pct": "92",
        "reason": "sterility retest positive",
        "sterility": "growth",
        "mycoplasma": "negative",
    }
    saved = client.post(f"/lots/{lot['id']}/edit", data=edit, follow_redirects=False)
    assert saved.status_code == 303, saved.text
    assert client.get(f"/api/v1/lots/{lot['id']}").json()["release_status"] == "rejected"


# --- roles and CSRF ----------------------------------------------------------------------------

SITE = {"investigator", "coordinator"}
LOT_KEEPERS = {"data_manager", "admin"}


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/subjects/S004/vital-signs", "all"),
        ("GET", "/api/v1/subjects/S004/vital-signs", "all"),
        ("GET", "/subjects/S004/vital-signs/new", SITE),
        ("POST", "/subjects/S004/vital-signs", SITE),
        ("POST", "/api/v1/subjects/S004/vital-signs", SITE),
        ("GET", "/vital-signs/999/edit", SITE),
        ("PUT", "/api/v1/vital-signs/999", SITE),
        ("GET", "/subjects/S004/clinical-status/new", SITE),
        ("POST", "/api/v1/subjects/S004/clinical-status", SITE),
        ("PUT", "/api/v1/clinical-status/999", SITE),
        ("GET", "/lots", "all"),
        ("GET", "/api/v1/lots", "all"),
        ("GET", "/lots/new", LOT_KEEPERS),
        ("POST", "/lots", LOT_KEEPERS),
        ("POST", "/api/v1/lots", LOT_KEEPERS),
        ("PUT", "/api/v1/lots/999", LOT_KEEPERS),
        ("GET", "/api/v1/subjects/S004/ct-scans", "all"),
    ],
)
def test_each_role_is_refused_what_it_may_not_do(clients, method, path, allowed):
    for role, client in clients.items():
        api = path.startswith("/api")
        response = client.request(
            method,
            path,
            data={"csrf_token": client.csrf} if method == "POST" and not api else None,
            json={} if api and method != "GET" else None,
            follow_redirects=False,
        )
        if allowed == "all" or role in allowed:
            assert response.status_code != 403, (role, method, path, response.text)
        else:
            assert response.status_code == 403, (role, method, path, response.status_code)


def test_forms_and_api_writes_without_the_csrf_token_are_refused(clients):
    coordinator, manager = clients["coordinator"], clients["data_manager"]
    rounds = coordinator.get("/api/v1/subjects/S004/vital-signs").json()
    posts = [
        (coordinator, "/subjects/S004/vital-signs", {"time": local(coordinator, 6), "spo2": "97"}),
        (
            coordinator,
            "/subjects/S004/clinical-status",
            {"assessed_at": local(coordinator, 6), "who_scale": "4"},
        ),
        (manager, "/lots", {"code": "LOT-X9", "release_status": "quarantine"}),
    ]
    for client, path, form in posts:
        for data in (form, form | {"csrf_token": "forged"}):
            response = client.post(path, data=data)
            assert response.status_code == 403 and "security token" in response.text, path
    for client, path, body in (
        (coordinator, "/api/v1/subjects/S004/vital-signs", {"time": iso(6), "spo2": 97}),
        (
            coordinator,
            "/api/v1/subjects/S004/clinical-status",
            {"assessed_at": iso(6), "who_scale": 4},
        ),
        (manager, "/api/v1/lots", lot_body(code="LOT-X9")),
    ):
        bare = client_for(client.app)
        bare.cookies = client.cookies
        assert bare.post(path, json=body).status_code == 403, path
    assert coordinator.get("/api/v1/subjects/S004/vital-signs").json() == rounds
    assert coordinator.get("/api/v1/subjects/S004/clinical-status").json() == []
    assert "LOT-X9" not in {lot["code"] for lot in manager.get("/api/v1/lots").json()}


# --- chest CT ----------------------------------------------------------------------------------


def test_subject_page_shows_ct_scans_and_the_baseline_beside_follow_up(clients, study_dir):
    from celltrial.imaging.demo import write_demo_scan
    from celltrial.imaging.records import measure_scan_record, store_ct_results, study_views_dir

    coordinator = clients["coordinator"]
    study = coordinator.app.state.study
    infused = coordinator.post(
        "/api/v1/subjects/S002/infusions",
        json={
            "lot_code": "LOT-R1",
            "vial_id": "V-CT",
            "started_at": iso(6),
            "cells_given": 3e7,
            "label_subject_code": "S002",
        },
    )
    assert infused.status_code == 201, infused.text
    assert coordinator.get("/api/v1/subjects/S002").json()["ct_scans"] == []  # kept: none yet
    folder = study_dir / "ct"
    folder.mkdir(exist_ok=True)
    records = [
        measure_scan_record(
            write_demo_scan(folder / name, factor, seed=seed),
            views_dir=study_views_dir(study_dir),
        )
        for name, factor, seed in (("S002_a.nii.gz", 1.2, 1), ("S002_b.nii.gz", 0.5, 2))
    ]
    store_ct_results(
        study.engine,
        study.study_id,
        records,
        subjects=["S002", "S002"],
        times=[NOW - timedelta(days=7), NOW - timedelta(days=1)],
        user="radiology",
    )
    scans = coordinator.get("/api/v1/subjects/S002/ct-scans").json()
    assert [s["study_day"] for s in scans] == [-1, 5]
    assert scans[0]["status"] == "baseline" and scans[1]["status"] == "improved"
    assert scans[1]["lesion_change_ml"] < 0
    page = coordinator.get("/subjects/S002").text
    assert 'id="chest-ct"' in page and 'src="/subjects/S002/ct.png"' in page
    image = coordinator.get("/subjects/S002/ct.png")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content.startswith(b"\x89PNG\r\n\x1a\n") and len(image.content) > 5000
    assert coordinator.get("/subjects/S003/ct.png").status_code == 404
    # the subject's whole record lists the same scans, study days and changes
    assert coordinator.get("/api/v1/subjects/S002").json()["ct_scans"] == scans


def test_openapi_lists_the_new_reads_and_writes(clients):
    paths = clients["monitor"].get("/api/openapi.json").json()["paths"]
    assert {"get", "post"} <= set(paths["/api/v1/subjects/{code}/vital-signs"])
    assert {"get", "put"} <= set(paths["/api/v1/vital-signs/{round_id}"])
    assert {"get", "post"} <= set(paths["/api/v1/subjects/{code}/clinical-status"])
    assert {"get", "put"} <= set(paths["/api/v1/clinical-status/{status_id}"])
    assert {"get", "post"} <= set(paths["/api/v1/lots"])
    assert {"get", "put"} <= set(paths["/api/v1/lots/{lot_id}"])
    assert "get" in paths["/api/v1/subjects/{code}/ct-scans"]
