"""The analyses behind the dashboard and subject pages are kept between requests: a write shows
at once, only what it changed is read again, a record number no record can have is not found."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from celltrial.safety.analysis import analyse_safety
from celltrial.services import monitoring
from celltrial.study import read_study_frames
from tests.web.conftest import NOW, RELEASED


@pytest.fixture
def one_minute(monkeypatch):
    """The clock part of the data revision held still, so that only writes change it."""
    revision = monitoring.data_revision
    monkeypatch.setattr(monitoring, "data_revision", lambda study: (revision(study)[0], "fixed"))


def event(term: str, days: float = 1) -> dict:
    return {"term": term, "onset_at": (NOW - timedelta(days=days)).isoformat(), "grade": 2}


def test_a_write_shows_at_once_and_only_its_table_is_read_again(app, clients, one_minute):
    study, client = app.state.study, clients["coordinator"]
    client.get("/api/v1/dashboard")
    before = monitoring.read_study_state(study)

    created = client.post("/api/v1/subjects/S003/adverse-events", json=event("Cache rash"))
    assert created.status_code == 201, created.text
    after = monitoring.read_study_state(study)
    assert after is not before
    assert after.frames.adverse_events is not before.frames.adverse_events
    assert after.frames.observations is before.frames.observations  # not read again
    assert after.frames.infusions is before.frames.infusions
    assert after.overview is before.overview  # the schedule does not use AEs
    # what is kept and what is made again is what all of it made afresh would be
    frames = read_study_frames(study)
    pd.testing.assert_frame_equal(after.frames.adverse_events, frames.adverse_events)
    full = analyse_safety(study.protocol, frames)
    for table in ("listing", "serious", "lab_toxicities", "signals"):
        pd.testing.assert_frame_equal(getattr(after.safety, table), getattr(full, table))
    rows = client.get("/api/v1/dashboard").json()["subjects"]
    assert [r["adverse_events"] for r in rows if r["subject_id"] == "S003"] == [1]
    timeline = client.get("/api/v1/subjects/S003").json()["timeline"]
    assert any("Cache rash" in item["text"] for item in timeline)
    assert "Cache rash" in client.get("/subjects/S003").text


def test_a_first_infusion_moves_day_0_so_everything_is_read_again(app, clients, one_minute):
    study, client = app.state.study, clients["coordinator"]
    client.get("/api/v1/subjects/S004")
    before = monitoring.read_study_state(study)
    started = NOW - timedelta(days=3)
    body = {
        "lot_code": RELEASED,
        "vial_id": "V-9",
        "started_at": started.isoformat(),
        "ended_at": (started + timedelta(minutes=30)).isoformat(),
        "cells_given": 3.0e7,
        "label_subject_code": "S004",
    }
    assert client.post("/api/v1/subjects/S004/infusions", json=body).status_code == 201
    after = monitoring.read_study_state(study)
    assert after.frames.observations is not before.frames.observations
    subject = client.get("/api/v1/subjects/S004").json()
    assert subject["details"]["first_infusion"] is not None
    assert any(i["actual_day"] == 0 for i in subject["infusions"])


def test_a_query_leaves_the_analyses_as_they_were(app, clients, one_minute):
    study = app.state.study
    created = clients["coordinator"].post(
        "/api/v1/subjects/S002/adverse-events", json=event("Cache cough")
    )
    before = monitoring.read_study_state(study)
    query = {
        "table": "adverse_event",
        "row_id": created.json()["id"],
        "field": "grade",
        "question": "Grade as in the source?",
    }
    assert clients["data_manager"].post("/api/v1/queries", json=query).status_code == 201
    after = monitoring.read_study_state(study)
    assert after.revision > before.revision
    assert after.frames is before.frames and after.overview is before.overview


def test_a_subject_figure_is_drawn_again_only_when_its_own_data_change(app, clients, one_minute):
    study, client = app.state.study, clients["coordinator"]
    first = client.get("/subjects/S001/profile.png")
    assert first.status_code == 200 and first.headers["content-type"] == "image/png"
    _, digest, png = monitoring._figures[(study.url, "S001")]
    client.post("/api/v1/subjects/S002/adverse-events", json=event("Cache sneeze"))
    assert client.get("/subjects/S001/profile.png").content == first.content
    assert monitoring._figures[(study.url, "S001")][2] is png  # kept, not drawn again
    client.post("/api/v1/subjects/S001/adverse-events", json=event("Cache fever"))
    client.get("/subjects/S001/profile.png")
    assert monitoring._figures[(study.url, "S001")][1] != digest


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/infusions/2147483648",
        "/api/v1/adverse-events/99999999999999999999",
        "/api/v1/queries/-2147483649",
        "/api/v1/audit/infusion/2147483648",
        "/infusions/2147483648/edit",
        "/queries/new?table=infusion&row_id=2147483648",
    ],
)
def test_a_record_number_no_record_can_have_is_not_found(clients, path):
    response = clients["coordinator"].get(path)
    assert response.status_code == 404, response.text


def test_a_figure_fingerprint_ignores_column_types_other_subjects_gave():
    own = pd.DataFrame({"grade": [2, 3], "expected": [True, False], "term": ["Rash", "Fever"]})
    widened = own.astype({"grade": "float64", "expected": "object"})
    assert monitoring._digest(own, 28) == monitoring._digest(widened, 28)
    assert monitoring._digest(own.iloc[:0], 28) == monitoring._digest(widened.iloc[:0], 28)
    changed = own.assign(grade=[2, 4])
    assert monitoring._digest(own, 28) != monitoring._digest(changed, 28)
    assert monitoring._digest(own, 28) != monitoring._digest(own, 14)
