"""A web write that cannot get the SQLite study's write lock (an import holds it) waits; when the
wait runs out it answers 503 "study busy" with Retry-After and the form as entered — never a 500,
never a lost entry — and the same entry submitted again is stored."""

from __future__ import annotations

import sqlite3
import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from celltrial.store import database
from celltrial.store.models import AdverseEvent, Observation
from tests.store.backends import BACKENDS, fresh_database
from tests.web.conftest import NOW, build_study, client_for


def _event_form(client) -> dict[str, str]:
    return {
        "csrf_token": client.csrf,
        "term": "Headache during import",
        "onset_at": (NOW - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"),
        "grade": "1",
        "relatedness": "unlikely related",
        "outcome": "recovered",
    }


def _events(study) -> int:
    with study.engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(AdverseEvent))


def test_a_write_during_a_long_lock_gets_503_with_the_form_kept_then_is_stored(
    tmp_path, monkeypatch
):
    from celltrial.web import create_app

    monkeypatch.setattr(database, "SQLITE_BUSY_SECONDS", 0.3)
    study = build_study(tmp_path / "study", subjects=("S001",))
    app = create_app(tmp_path / "study")
    try:
        client = client_for(app, "investigator")
        holder = sqlite3.connect(tmp_path / "study" / "celltrial.db", timeout=5)
        holder.execute("BEGIN IMMEDIATE")  # what a large import holds while it writes
        try:
            busy = client.post(
                "/subjects/S001/adverse-events", data=_event_form(client), follow_redirects=False
            )
        finally:
            holder.rollback()
            holder.close()
        assert busy.status_code == 503
        assert busy.headers["Retry-After"].isdigit()
        assert "Your entry is kept below" in busy.text
        assert 'value="Headache during import"' in busy.text  # the form as entered
        assert _events(study) == 0
        again = client.post(
            "/subjects/S001/adverse-events", data=_event_form(client), follow_redirects=False
        )
        assert again.status_code == 303
        assert _events(study) == 1
    finally:
        app.state.study.engine.dispose()
        study.engine.dispose()


def test_the_api_answers_503_with_retry_after(tmp_path, monkeypatch):
    from celltrial.web import create_app

    monkeypatch.setattr(database, "SQLITE_BUSY_SECONDS", 0.3)
    study = build_study(tmp_path / "study", subjects=("S001",))
    app = create_app(tmp_path / "study")
    try:
        client = client_for(app, "investigator")
        body = {
            "term": "Nausea",
            "onset_at": (NOW - timedelta(days=1)).isoformat(),
            "grade": 1,
            "outcome": "recovered",
        }
        holder = sqlite3.connect(tmp_path / "study" / "celltrial.db", timeout=5)
        holder.execute("BEGIN IMMEDIATE")
        try:
            busy = client.post("/api/v1/subjects/S001/adverse-events", json=body)
        finally:
            holder.rollback()
            holder.close()
        assert busy.status_code == 503, busy.text
        assert busy.headers["Retry-After"].isdigit()
        assert "busy" in busy.json()["detail"]
        assert client.post("/api/v1/subjects/S001/adverse-events", json=body).status_code == 201
    finally:
        app.state.study.engine.dispose()
        study.engine.dispose()


def test_writes_that_wait_for_an_import_are_all_stored(tmp_path):
    """Within the wait (the default 60 s), web writes queue behind an import holding the lock
    and none is lost."""
    from celltrial.web import create_app

    study = build_study(tmp_path / "study", subjects=("S001",))
    app = create_app(tmp_path / "study")
    try:
        client = client_for(app, "investigator")
        holder = sqlite3.connect(
            tmp_path / "study" / "celltrial.db", timeout=5, check_same_thread=False
        )
        holder.execute("BEGIN IMMEDIATE")
        release = threading.Timer(1.0, lambda: (holder.rollback(), holder.close()))
        release.start()
        answers = [
            client.post(
                "/subjects/S001/adverse-events",
                data=_event_form(client) | {"term": f"Event {n}"},
                follow_redirects=False,
            ).status_code
            for n in range(3)
        ]
        release.join()
        assert answers == [303, 303, 303]
        assert _events(study) == 3
    finally:
        app.state.study.engine.dispose()
        study.engine.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_large_import_and_web_writes_together_lose_nothing(backend, tmp_path):
    """An import of 40,000 results runs while the web app records adverse events: every event
    and every result is stored (a write answered 503 is sent again, as the page asks)."""
    from celltrial.ingest import import_file
    from celltrial.web import create_app

    with fresh_database(backend, tmp_path, migrated=True) as url:
        study = build_study(tmp_path / "study", subjects=("S001", "S002"), db_url=url)
        app = create_app(tmp_path / "study", db_url=url)
        labs = tmp_path / "labs.csv"
        start = NOW - timedelta(days=11)
        rows = [
            f"S00{1 + n % 2},{start + timedelta(seconds=15 * n):%Y-%m-%d %H:%M:%S},CRP,"
            f"{n % 97 + 1},mg/L"
            for n in range(40_000)
        ]
        labs.write_text("subject_id,time,test,value,unit\n" + "\n".join(rows) + "\n")
        done: dict[str, object] = {}

        def run_import() -> None:
            try:
                done["result"] = import_file(study, labs, user="importer")
            except BaseException as exc:  # re-raised below, on the test's thread
                done["error"] = exc

        try:
            client = client_for(app, "investigator")
            worker = threading.Thread(target=run_import)
            worker.start()
            answers = []
            n, overlapped = 0, False
            while worker.is_alive() or n < 5:
                form = _event_form(client) | {"term": f"Event {n}"}
                answer = client.post("/subjects/S001/adverse-events", data=form)
                while answer.status_code == 503:  # study busy: the user sends it again
                    answer = client.post("/subjects/S001/adverse-events", data=form)
                answers.append(answer.status_code)
                overlapped = overlapped or worker.is_alive()
                n += 1
            worker.join()
            assert overlapped  # at least one event was recorded while the import ran
            error = done.get("error")
            assert error is None, getattr(error, "report", error) and error.report.errors

            assert set(answers) == {200} and _events(study) == n  # redirected to the subject
            with study.engine.connect() as connection:
                stored = connection.scalar(select(func.count()).select_from(Observation))
            assert stored == 40_000 == done["result"].counts["inserted"]
        finally:
            app.state.study.engine.dispose()
            study.engine.dispose()
