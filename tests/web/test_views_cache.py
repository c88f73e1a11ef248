"""The analyses behind the dashboard and subject pages are kept between requests: a write shows
at once, only what it changed is read again, a record number no record can have is not found."""

from __future__ import annotations

from dataclasses import fields
from datetime import timedelta

import pandas as pd
import pytest

from celltrial.overview import summarize_study
from celltrial.safety.analysis import analyse_safety, derive_safety_inputs
from celltrial.services import monitoring
from celltrial.services.casebook import NewSubject, enrol_subject
from celltrial.study import read_study_frames
from tests.web.conftest import NOW, RELEASED


def assert_analyses_as_made_afresh(study, state, what: str) -> None:
    """The web app's kept ``state`` (overview, safety inputs, every safety field) equals the
    analyses made afresh from the study's frames; ``what`` names the write in messages."""
    frames = read_study_frames(study)
    fresh = summarize_study(study.protocol, frames, today=state.overview.today)
    for part in ("summary", "infusions", "visits", "visit_assessments", "deviations"):
        got, expected = getattr(state.overview, part), getattr(fresh, part)
        pd.testing.assert_frame_equal(got, expected, obj=f"{part} after {what}")
    inputs = derive_safety_inputs(study.protocol, frames)
    for got, expected in zip(state.safety_inputs, inputs, strict=True):
        pd.testing.assert_frame_equal(got, expected, obj=f"safety inputs after {what}")
    safety = analyse_safety(study.protocol, frames, inputs=inputs)
    for part in fields(safety):
        got, expected = getattr(state.safety, part.name), getattr(safety, part.name)
        if isinstance(expected, pd.DataFrame):
            pd.testing.assert_frame_equal(got, expected, obj=f"{part.name} after {what}")
        else:
            assert got == expected, f"{part.name} after {what}"


def others_deviation_rows_kept(before, after, code: str) -> bool:
    """Whether every deviation row of ``before``'s overview but ``code``'s is in ``after``'s,
    the same object (kept, not derived again)."""

    def rows(state, *, but: str | None = None) -> set[int]:
        kept = state.overview.deviation_rows
        every = (*kept.infusion, *kept.visit, *kept.daily)
        return {id(row) for row in every if row["subject_id"] != but}

    others = rows(before, but=code)
    return bool(others) and others <= rows(after)


@pytest.fixture
def one_minute(monkeypatch):
    """The clock part of the data revision held still, so that only writes change it."""
    revision = monitoring.data_revision
    monkeypatch.setattr(monitoring, "data_revision", lambda study: (revision(study)[0], "fixed"))


def event(term: str, days: float = 1) -> dict:
    return {"term": term, "onset_at": (NOW - timedelta(days=days)).isoformat(), "grade": 2}


def grade_query(event_id: int) -> dict:
    """A data manager's query about the grade of adverse event ``event_id``."""
    return {
        "table": "adverse_event",
        "row_id": event_id,
        "field": "grade",
        "question": "Grade as in the source?",
    }


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
    # the schedule, the deviations and the lab grades do not use AEs: kept
    assert after.overview.visit_assessments is before.overview.visit_assessments
    assert after.overview.deviations.equals(before.overview.deviations)
    assert after.safety_inputs[0] is before.safety_inputs[0]
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


def test_a_first_infusion_moves_day_0_so_every_study_day_is_derived_again(app, clients, one_minute):
    from dataclasses import fields

    from celltrial.overview import summarize_study
    from celltrial.safety.analysis import derive_safety_inputs

    study, client = app.state.study, clients["coordinator"]
    started = NOW - timedelta(days=3)
    # S004's data before its first infusion: days unknown until day 0 is
    assert client.post("/api/v1/subjects/S004/adverse-events", json=event("Day rash", 2)).is_success
    vitals = {"time": (started - timedelta(hours=2)).isoformat(), "temperature": 37.1}
    assert client.post("/api/v1/subjects/S004/vital-signs", json=vitals).is_success
    status = {"assessed_at": (NOW - timedelta(days=1)).isoformat(), "who_scale": 5}
    assert client.post("/api/v1/subjects/S004/clinical-status", json=status).is_success
    client.get("/api/v1/subjects/S004")
    before = monitoring.read_study_state(study)
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
    # every frame (study days, first infusion) as read afresh, and the analyses made from them
    frames = read_study_frames(study)
    for frame in fields(frames):
        pd.testing.assert_frame_equal(
            getattr(after.frames, frame.name), getattr(frames, frame.name), obj=frame.name
        )
    fresh = summarize_study(study.protocol, frames, today=after.overview.today)
    for part in ("summary", "infusions", "visits", "visit_assessments", "deviations"):
        pd.testing.assert_frame_equal(getattr(after.overview, part), getattr(fresh, part))
    full = analyse_safety(study.protocol, frames)
    for table in ("listing", "lab_toxicities", "signals"):
        pd.testing.assert_frame_equal(getattr(after.safety, table), getattr(full, table))
    # S004's vital sign before day 0 now has a study day: the lab grades are made again
    assert after.safety_inputs[0] is not before.safety_inputs[0]
    fresh_inputs = derive_safety_inputs(study.protocol, frames)
    for got, expected in zip(after.safety_inputs, fresh_inputs, strict=True):
        pd.testing.assert_frame_equal(got, expected)
    own = after.frames.adverse_events[after.frames.adverse_events["subject_id"] == "S004"]
    assert own["onset_day"].tolist() == [1]  # 2 days ago, day 0 three days ago
    subject = client.get("/api/v1/subjects/S004").json()
    assert subject["details"]["first_infusion"] is not None
    assert any(i["actual_day"] == 0 for i in subject["infusions"])


@pytest.fixture(params=["one minute", "a new minute at each read"])
def clock(request, monkeypatch):
    """The clock part of the data revision held still, or moving a minute (within the hour) at
    each look: a new minute derives again what uses the clock and keeps the lab grades, the
    signals and the lab tables of unchanged frames."""
    revision = monitoring.data_revision
    if request.param == "one minute":
        monkeypatch.setattr(
            monitoring, "data_revision", lambda study: (revision(study)[0], "fixed")
        )
        return request.param
    minutes = iter(range(60))
    monkeypatch.setattr(
        monitoring,
        "data_revision",
        lambda study: (revision(study)[0], f"2026-11-25T08:{next(minutes):02d}"),
    )
    return request.param


def test_analyses_updated_after_writes_of_each_kind_equal_those_made_afresh(app, clients, clock):

    study, client = app.state.study, clients["coordinator"]
    code = "S001"
    if clock != "one minute":  # a subject of its own (the app is the module's)
        code = "S011"
        entry = NewSubject(code=code, enrolled_at=NOW - timedelta(days=12), sex="M", age=50)
        enrol_subject(study, entry, user="setup")

    def infusion(days: float, number: int) -> dict:
        started = NOW - timedelta(days=days)
        return {
            "lot_code": RELEASED,
            "vial_id": f"V-{code}-{number}",
            "started_at": started.isoformat(),
            "ended_at": (started + timedelta(minutes=40)).isoformat(),
            "cells_given": 3.0e7,
            "volume_ml": 100,
            "label_subject_code": code,
        }

    def check(what: str) -> None:
        assert_analyses_as_made_afresh(study, monitoring.read_study_state(study), what)

    ids = []
    for number, days in ((1, 9), (2, 6), (3, 3)):
        created = client.post(f"/api/v1/subjects/{code}/infusions", json=infusion(days, number))
        assert created.status_code == 201, created.text
        ids.append(created.json())
        check(f"infusion {number}")
    second = ids[1]
    moved = {k: v for k, v in infusion(4, 2).items() if k != "label_subject_code"}
    edited = client.put(
        f"/api/v1/infusions/{second['id']}",
        json=moved | {"version": second["version"], "reason": "time from the chart"},
    )
    assert edited.status_code == 200, edited.text
    check("the second infusion moved a day later")
    third = ids[2]
    volume = {k: v for k, v in infusion(3, 3).items() if k != "label_subject_code"}
    edited = client.put(
        f"/api/v1/infusions/{third['id']}",
        json=volume | {"volume_ml": 120, "version": third["version"], "reason": "from the chart"},
    )
    assert edited.status_code == 200, edited.text
    check("the third infusion's volume edited")
    vitals = {"heart_rate": 90, "systolic_bp": 120, "spo2": 95}
    for hours, temperature in ((-2, 36.8), (1, 39.4)):  # before and after the second infusion
        when = (NOW - timedelta(days=4) + timedelta(hours=hours)).isoformat()
        body = {"time": when, "temperature": temperature} | vitals
        recorded = client.post(f"/api/v1/subjects/{code}/vital-signs", json=body)
        assert recorded.status_code == 201, recorded.text
        check(f"a temperature of {temperature}")
    status = {"assessed_at": (NOW - timedelta(days=2)).isoformat(), "who_scale": 4}
    assert client.post(f"/api/v1/subjects/{code}/clinical-status", json=status).status_code == 201
    check("a clinical status")
    assert client.post(f"/api/v1/subjects/{code}/adverse-events", json=event("Chills")).status_code
    check("an adverse event")
    state = monitoring.read_study_state(study)
    assert len(state.safety.signals), "the fever is a vital-sign signal"


def test_a_new_minute_moves_today_a_new_day_derives_the_schedule_a_new_hour_reads_all(
    app, clients, monkeypatch
):
    study = app.state.study
    clock = ["2026-11-25T08:56"]
    revision = monitoring.data_revision
    monkeypatch.setattr(monitoring, "data_revision", lambda s: (revision(s)[0], clock[0]))
    # "today" of an overview made from scratch, 10:58 in the study's time zone (UTC+8)
    now = [pd.Timestamp("2026-11-25T02:58", tz="UTC")]
    monkeypatch.setattr(monitoring, "_now", lambda: now[0])
    clients["coordinator"].post("/api/v1/subjects/S003/adverse-events", json=event("Clock rash"))
    clock[0], now[0] = "2026-11-25T08:57", pd.Timestamp("2026-11-25T02:59", tz="UTC")
    before = monitoring.read_study_state(study)
    clock[0], now[0] = "2026-11-25T08:58", pd.Timestamp("2026-11-25T03:00", tz="UTC")
    minute = monitoring.read_study_state(study)
    assert minute.frames is before.frames  # nothing changed: nothing read again
    assert minute.overview.today > before.overview.today  # "today" moved
    # the same day: the schedule and the deviations (whole study days) kept, as the lab
    # grades, the signals and the lab tables (no clock in them)
    assert minute.overview.visit_assessments is before.overview.visit_assessments
    assert minute.safety_inputs[0] is before.safety_inputs[0]
    assert minute.safety_inputs[1] is before.safety_inputs[1]
    assert minute.safety is before.safety  # nothing it reads changed: kept as it was
    assert monitoring.summarize_dashboard(study).as_of == now[0].to_pydatetime()
    # a new day in the study's time zone (UTC+8; the revision's clock kept within its hour)
    clock[0], now[0] = "2026-11-25T08:59", pd.Timestamp("2026-11-25T16:01", tz="UTC")
    day = monitoring.read_study_state(study)
    assert day.frames is minute.frames
    assert day.overview.visit_assessments is not minute.overview.visit_assessments
    fresh = summarize_study(study.protocol, read_study_frames(study), today=now[0])
    for part in ("summary", "infusions", "visits", "visit_assessments", "deviations"):
        pd.testing.assert_frame_equal(getattr(day.overview, part), getattr(fresh, part))
    clients["coordinator"].post("/api/v1/subjects/S003/adverse-events", json=event("Clock cough"))
    clock[0] = "2026-11-25T09:00"
    hour = monitoring.read_study_state(study)
    assert hour.frames.observations is not day.frames.observations  # a new hour: all read
    assert "Clock cough" in set(hour.frames.adverse_events["term"])


def test_views_kept_do_not_keep_old_analyses_alive(app, clients, one_minute):
    import gc
    import weakref

    study, client = app.state.study, clients["coordinator"]
    for path in ("/api/v1/dashboard", "/api/v1/subjects/S001", "/subjects/S001/profile.png"):
        assert client.get(path).status_code == 200
    old = weakref.ref(monitoring.read_study_state(study))
    assert client.post("/api/v1/subjects/S002/adverse-events", json=event("Old cough")).is_success
    assert old() is not monitoring.read_study_state(study)
    gc.collect()
    assert old() is None  # S001's view and figure, not looked at since, do not hold it
    assert client.get("/subjects/S001/profile.png").status_code == 200


def test_a_query_leaves_the_analyses_as_they_were(app, clients, one_minute):
    study = app.state.study
    created = clients["coordinator"].post(
        "/api/v1/subjects/S002/adverse-events", json=event("Cache cough")
    )
    before = monitoring.read_study_state(study)
    query = grade_query(created.json()["id"])
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


def test_a_figure_drawn_once_is_shared_through_the_study_folder(
    app, clients, one_minute, monkeypatch
):
    """Another worker process (here: an empty in-memory cache) reads the figure file instead
    of drawing it; new data for the subject draw a new file and remove the old one."""
    from celltrial.report import profiles

    study, client = app.state.study, clients["coordinator"]
    drawn = client.get("/subjects/S003/profile.png").content
    folder = study.directory / monitoring.FIGURE_CACHE
    [kept] = [p for p in folder.glob("*.png") if p.read_bytes() == drawn]

    def no_drawing(*args, **kwargs):
        raise AssertionError("the figure was drawn again")

    monkeypatch.setattr(profiles, "render_subject_profile", no_drawing)
    monitoring._figures.clear()
    assert client.get("/subjects/S003/profile.png").content == drawn
    monkeypatch.undo()

    client.post("/api/v1/subjects/S003/adverse-events", json=event("Cache rash"))
    assert client.get("/subjects/S003/profile.png").status_code == 200
    prefix = kept.name.split("-")[0]
    [newer] = list(folder.glob(f"{prefix}-*.png"))
    assert newer != kept and not kept.exists()


def test_readers_do_not_wait_for_the_analyses_of_a_write_not_yet_acknowledged(app, one_minute):
    import threading

    from celltrial.services import adverse_events
    from celltrial.web.schemas import AdverseEventCreate

    study = app.state.study
    before = monitoring.read_study_state(study)
    # a write saved, its analyses not yet made (the service, not the app, so no refresh)
    entry = AdverseEventCreate(**event("Unacknowledged cough")).entry()
    adverse_events.record_event(study, "S004", entry, user="investigator")
    with monitoring._lock:  # another request is bringing the analyses up to date

        def read(into: list) -> None:
            into.append(monitoring.read_study_state(study))

        waited: list = []
        reader = threading.Thread(target=read, args=(waited,), daemon=True)
        reader.start()
        reader.join(0.5)
        assert reader.is_alive()  # new data, no write in flight: the reader waits
        with monitoring.write_in_flight():
            served: list = []
            read(served)
    reader.join(10)
    assert served[0] is before  # the previous analyses, at once
    assert waited[0].revision[0] > before.revision[0]  # the new ones, once the lock was free


def test_a_reader_leaves_the_analyses_of_a_write_in_flight_to_that_write(app, one_minute):
    import threading

    from celltrial.services import adverse_events
    from celltrial.web.schemas import AdverseEventCreate

    study = app.state.study
    before = monitoring.read_study_state(study)
    entry = AdverseEventCreate(**event("In-flight cough")).entry()
    with monitoring.write_in_flight():
        adverse_events.record_event(study, "S004", entry, user="investigator")
        # nobody is computing: a reader still does not, it is served the previous analyses
        assert monitoring.read_study_state(study) is before
        # the write's own refresh waits for a request that holds the lock, then computes
        release = threading.Timer(0.3, monitoring._lock.release)
        monitoring._lock.acquire()
        release.start()
        monitoring.refresh_after_write(study)
        release.join()
    after = monitoring.read_study_state(study)
    assert after.revision[0] > before.revision[0]
    assert "In-flight cough" in set(after.frames.adverse_events["term"])
    assert monitoring.summarize_dashboard(study) is monitoring._dashboards[study.url][1]
    assert monitoring._dashboards[study.url][0]() is after  # the dashboard made by the refresh


def test_figures_drawn_in_a_process_of_their_own_while_the_app_runs(
    study_dir, db_url, app, monkeypatch
):
    from celltrial.report import profiles
    from celltrial.web import create_app
    from tests.web.conftest import client_for

    def not_here(*args, **kwargs):
        raise AssertionError("drawn in the web process")

    own = create_app(study_dir, db_url=db_url, figure_process=True)
    client = client_for(own, "monitor")
    with client:  # the app runs: its figure process with it
        assert monitoring._drawer is not None
        monitoring._figures.clear()
        for kept in (study_dir / monitoring.FIGURE_CACHE).glob("*.png"):
            kept.unlink()
        monkeypatch.setattr(profiles, "render_subject_profile", not_here)
        drawn = client.get("/subjects/S002/profile.png")
        monkeypatch.undo()
        assert drawn.status_code == 200 and drawn.content.startswith(b"\x89PNG")
    assert monitoring._drawer is None  # stopped with the app
    monitoring._figures.clear()
    for kept in (study_dir / monitoring.FIGURE_CACHE).glob("*.png"):
        kept.unlink()
    here = client_for(app, "monitor").get("/subjects/S002/profile.png")
    assert here.content == drawn.content  # the same picture as drawn in the web process
    own.state.study.engine.dispose()


def test_the_figure_process_ends_when_the_web_process_is_killed(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    script = (
        "from celltrial.services import monitoring\n"
        "monitoring.start_figure_process()\n"
        "monitoring._drawer.submit(monitoring._warm_up).result()\n"
        "print(*monitoring._drawer._processes, flush=True)\n"
        "import time; time.sleep(60)\n"
    )
    web = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        [drawer] = [int(pid) for pid in web.stdout.readline().split()]
        os.kill(web.pid, signal.SIGKILL)  # no shutdown at all
        web.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:  # gone, or a zombie nobody reaps (no init process in some containers)
                stat = Path(f"/proc/{drawer}/stat").read_text()
                state = stat.rsplit(")", 1)[1].split()[0]
            except FileNotFoundError:
                return
            if state == "Z":
                return
            time.sleep(0.2)
        os.kill(drawer, signal.SIGKILL)
        raise AssertionError("the figure process outlived the web process")
    finally:
        web.kill()


def test_a_subject_view_is_kept_until_the_subjects_own_rows_change(app, clients, one_minute):
    study, client = app.state.study, clients["coordinator"]
    assert client.post("/api/v1/subjects/S002/adverse-events", json=event("Own rash")).is_success
    view = monitoring.summarize_subject(study, "S002")
    # S001's rows come before S002's in the frame: S002's rows move down, unchanged
    assert client.post("/api/v1/subjects/S001/adverse-events", json=event("Other rash")).is_success
    state = monitoring.read_study_state(study)
    assert monitoring.summarize_subject(study, "S002") is view
    assert monitoring._subject_views[(study.url, "S002")][0]() is state
    assert client.post("/api/v1/subjects/S002/adverse-events", json=event("Own cough")).is_success
    changed = monitoring.summarize_subject(study, "S002")
    assert changed is not view
    assert any("Own cough" in item["text"] for item in changed.timeline)
    # what is kept or made again is what a view made afresh from the whole state would be
    for code in ("S001", "S002"):
        fresh = monitoring._subject_view(
            monitoring._subject_rows_of(monitoring.read_study_state(study), code),
            code,
            zone=study.protocol.study.zone,
        )
        assert monitoring.summarize_subject(study, code) == fresh


def test_a_subjects_rows_are_those_a_comparison_of_every_code_finds():
    frame = pd.DataFrame(
        {
            "subject_id": pd.Series(["S2", "S1", "S2", "S3", "S1"], dtype="str"),
            "value": [1.0, 2.0, None, 4.0, 5.0],
        }
    )
    for code in ("S1", "S2", "S3", "S9"):
        expected = frame[frame["subject_id"] == code].reset_index(drop=True)
        pd.testing.assert_frame_equal(monitoring.rows_of_subject(frame, code), expected)
    assert monitoring.rows_of_subject(frame, "S1") is monitoring.rows_of_subject(frame, "S1")
    empty = frame.iloc[:0]
    assert monitoring.rows_of_subject(empty, "S1").empty


def test_a_subject_page_lists_what_each_listing_gives(app, clients):
    from celltrial.services import (
        adverse_events,
        clinical_status,
        infusions,
        queries,
        signatures,
        vital_signs,
    )
    from celltrial.services.errors import NotFound
    from celltrial.services.subject_records import read_subject_records

    study = app.state.study
    client = clients["coordinator"]
    created = client.post("/api/v1/subjects/S001/adverse-events", json=event("Listed rash"))
    query = grade_query(created.json()["id"])
    assert clients["data_manager"].post("/api/v1/queries", json=query).status_code == 201
    records = read_subject_records(study, "S001", with_review=True)
    assert records.infusions == infusions.list_infusions(study, "S001")
    assert records.adverse_events == adverse_events.list_events(study, "S001")
    assert records.vital_signs == vital_signs.list_vital_signs(study, "S001")
    assert records.clinical_status == clinical_status.list_clinical_status(study, "S001")
    assert records.queries == queries.list_queries(study, subject_code="S001")
    assert records.signatures == signatures.list_signatures(study, "S001")
    assert [e.term for e in records.adverse_events][-1:] == ["Listed rash"]
    assert len(records.queries) == 1
    assert read_subject_records(study, "S001").queries == []  # review only when asked for
    with pytest.raises(NotFound):
        read_subject_records(study, "S999")


def test_a_subjects_records_are_kept_until_its_own_data_change(app, clients):
    from celltrial.services import adverse_events
    from celltrial.services.subject_records import read_subject_records

    study, client = app.state.study, clients["coordinator"]
    first = read_subject_records(study, "S003", with_review=True)
    assert read_subject_records(study, "S003", with_review=True).infusions is first.infusions
    # another subject's change leaves them as they were
    assert client.post("/api/v1/subjects/S004/adverse-events", json=event("Not S003")).is_success
    kept = read_subject_records(study, "S003", with_review=True)
    assert kept.adverse_events is first.adverse_events
    # the subject's own change, a query about it and a lot (shown with each infusion): read again
    created = client.post("/api/v1/subjects/S003/adverse-events", json=event("S003 rash"))
    assert created.is_success
    changed = read_subject_records(study, "S003", with_review=True)
    assert changed.adverse_events is not first.adverse_events
    assert changed.adverse_events == adverse_events.list_events(study, "S003")
    assert "S003 rash" in [e.term for e in changed.adverse_events]
    query = grade_query(created.json()["id"])
    assert clients["data_manager"].post("/api/v1/queries", json=query).status_code == 201
    queried = read_subject_records(study, "S003", with_review=True)
    assert [q.question for q in queried.queries][-1:] == ["Grade as in the source?"]
    lot = {
        "code": "LOT-CACHE",
        "release_status": "quarantine",
        "viability_pct": 90.0,
    }
    assert clients["admin"].post("/api/v1/lots", json=lot).status_code == 201
    assert read_subject_records(study, "S003", with_review=True).queries is not queried.queries
    # the page and the API show the subject's records as they are now
    assert "S003 rash" in client.get("/subjects/S003").text
    terms = [e["term"] for e in client.get("/api/v1/subjects/S003").json()["adverse_events"]]
    assert "S003 rash" in terms


def test_api_answers_are_kept_while_the_views_they_show_are(app, clients, one_minute):
    from celltrial.web import api

    client, coordinator = clients["monitor"], clients["coordinator"]
    for code in ("S002", "S001"):  # (each subject's rows of the frames as they will stay)
        written = coordinator.post(f"/api/v1/subjects/{code}/adverse-events", json=event("Rash"))
        assert written.status_code == 201, written.text
    subject, dashboard = client.get("/api/v1/subjects/S002"), client.get("/api/v1/dashboard")
    kept = {key: answer for key, (_, answer) in api._answers.items()}
    # asked again with nothing changed: the same answers, not made again
    assert client.get("/api/v1/subjects/S002").content == subject.content
    assert client.get("/api/v1/dashboard").content == dashboard.content
    assert all(api._answers[key][1] is answer for key, answer in kept.items())
    # another subject's write: S002's answer is kept, the dashboard is made again and shows it
    written = coordinator.post(
        "/api/v1/subjects/S001/adverse-events", json=event("Kept answers rash")
    )
    assert written.status_code == 201, written.text
    assert client.get("/api/v1/subjects/S002").content == subject.content
    assert (
        api._answers[(app.state.study.url, "subject", "S002")][1]
        is kept[(app.state.study.url, "subject", "S002")]
    )

    def ae_counts(answer) -> dict[str, int]:
        return {r["subject_id"]: r["adverse_events"] for r in answer.json()["subjects"]}

    counts = ae_counts(client.get("/api/v1/dashboard"))
    assert counts["S001"] == ae_counts(dashboard)["S001"] + 1
    # S002's own write shows at once
    written = coordinator.post(
        "/api/v1/subjects/S002/adverse-events", json=event("Own kept answers rash")
    )
    assert written.status_code == 201, written.text
    terms = [e["term"] for e in client.get("/api/v1/subjects/S002").json()["adverse_events"]]
    assert "Own kept answers rash" in terms
    # every kept answer is what one made afresh would be
    now = {
        path: client.get(path).content for path in ("/api/v1/subjects/S002", "/api/v1/dashboard")
    }
    api._answers.clear()
    assert {path: client.get(path).content for path in now} == now


def test_a_first_infusion_of_a_subject_without_observations_keeps_the_lab_grades(
    app, clients, one_minute
):
    """Day 0 moves for a newly enrolled subject without observations alone: the lab grades are
    kept as they were, and every analysis (the lab tables, whose treated population grew,
    included) equals one made afresh. A subject with a vital sign before its first infusion, or
    one taken after, grades the labs again."""

    study, client = app.state.study, clients["coordinator"]
    started = NOW - timedelta(days=2)
    for code in ("S012", "S013", "S014"):
        entry = NewSubject(code=code, enrolled_at=NOW - timedelta(days=10), sex="F", age=61)
        enrol_subject(study, entry, user="setup")

    def infuse(code: str) -> dict:
        body = {
            "lot_code": RELEASED,
            "vial_id": f"V-{code}-1",
            "started_at": started.isoformat(),
            "ended_at": (started + timedelta(minutes=30)).isoformat(),
            "cells_given": 3.0e7,
            "label_subject_code": code,
        }
        created = client.post(f"/api/v1/subjects/{code}/infusions", json=body)
        assert created.status_code == 201, created.text
        return body | created.json()

    def vital_sign(code: str, hours: float, temperature: float) -> None:
        vitals = {
            "time": (started + timedelta(hours=hours)).isoformat(),
            "temperature": temperature,
        }
        assert client.post(f"/api/v1/subjects/{code}/vital-signs", json=vitals).is_success

    s012 = infuse("S012")  # (some subject treated: the lab grades have a day 0 to compare)
    assert_analyses_as_made_afresh(
        study, monitoring.read_study_state(study), "S012's first infusion"
    )
    vital_sign("S013", -3, 38.2)
    before = monitoring.read_study_state(study)
    infuse("S013")  # its vital sign before day 0 gets a study day: graded again
    after = monitoring.read_study_state(study)
    assert after.frames.subjects is not before.frames.subjects  # day 0 moved
    assert after.safety_inputs[0] is not before.safety_inputs[0]
    assert_analyses_as_made_afresh(study, after, "S013's first infusion after a vital sign")
    before = after
    infuse("S014")  # no observation: the lab grades are kept
    after = monitoring.read_study_state(study)
    assert after.frames.subjects is not before.frames.subjects
    assert after.safety_inputs[0] is before.safety_inputs[0]
    assert "S014" in before.safety.not_treated and "S014" not in after.safety.not_treated
    # the other subjects' schedule and deviations kept (S014's derived and put in place)
    assert others_deviation_rows_kept(before, after, "S014")
    assert_analyses_as_made_afresh(study, after, "S014's first infusion")
    # S012's first infusion a day earlier: day 0 of a treated subject moves
    body = {k: v for k, v in s012.items() if k in ("lot_code", "vial_id", "cells_given")}
    earlier = {
        "started_at": (started - timedelta(days=1)).isoformat(),
        "ended_at": (started - timedelta(days=1, minutes=-30)).isoformat(),
    }
    edit = body | earlier | {"version": s012["version"], "reason": "time from the chart"}
    edited = client.put(f"/api/v1/infusions/{s012['id']}", json=edit)
    assert edited.status_code == 200, edited.text
    moved = monitoring.read_study_state(study)
    assert moved.frames.subjects is not after.frames.subjects
    assert others_deviation_rows_kept(after, moved, "S012")
    assert_analyses_as_made_afresh(study, moved, "S012's first infusion a day earlier")
    after = moved
    vital_sign("S014", 1, 38.9)
    later = monitoring.read_study_state(study)
    assert later.safety_inputs[0] is not after.safety_inputs[0]
    assert_analyses_as_made_afresh(study, later, "S014's vital sign after it")
