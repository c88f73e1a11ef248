"""Two writers on one SQLite study: the second waits for the first instead of failing, and a
writer that waits too long ends with a message and stores nothing."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from celltrial.errors import StudyError
from celltrial.store import database
from celltrial.store.database import open_engine, study_session, upgrade_database
from celltrial.store.models import Study, Subject
from tests.store.backends import ALL_POSTGRESQL

T0 = datetime(2020, 2, 10, 2, 0, tzinfo=UTC)


@pytest.fixture
def study_db(tmp_path):
    path = tmp_path / "study.db"
    engine = open_engine(f"sqlite:///{path}")
    upgrade_database(engine)
    with study_session(engine, user="setup") as session:
        session.add(
            Study(id="S", title="t", protocol_yaml="", protocol_sha256="0" * 64, created_at=T0)
        )
    engine.dispose()
    return path


def hold_write_lock(path, seconds: float, started: threading.Event) -> None:
    """Another program writing: it holds the database's write lock for ``seconds``."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("BEGIN IMMEDIATE")
    started.set()
    time.sleep(seconds)
    connection.execute("ROLLBACK")
    connection.close()


def subject_count(engine) -> int:
    with engine.connect() as connection:
        return connection.scalar(sa.select(sa.func.count()).select_from(Subject))


def test_a_writer_waits_for_another(study_db):
    started = threading.Event()
    other = threading.Thread(target=hold_write_lock, args=(study_db, 1.5, started))
    other.start()
    started.wait()
    engine = open_engine(f"sqlite:///{study_db}")
    t0 = time.monotonic()
    with study_session(engine, user="alice") as session:
        session.add(Subject(study_id="S", code="S001"))
    waited = time.monotonic() - t0
    other.join()
    assert subject_count(engine) == 1 and waited >= 1.0
    engine.dispose()


def test_a_writer_that_waits_too_long_says_so(study_db, monkeypatch):
    monkeypatch.setattr(database, "SQLITE_BUSY_SECONDS", 1)
    started = threading.Event()
    other = threading.Thread(target=hold_write_lock, args=(study_db, 3, started))
    other.start()
    started.wait()
    engine = open_engine(f"sqlite:///{study_db}")
    with (
        pytest.raises(StudyError, match=r"stayed busy .* nothing was stored"),
        study_session(engine, user="alice") as session,
    ):
        session.add(Subject(study_id="S", code="S001"))
    other.join()
    assert subject_count(engine) == 0
    engine.dispose()


@pytest.mark.skipif(ALL_POSTGRESQL, reason="the study's database is a PostgreSQL one in this run")
def test_a_command_that_waits_says_so(tmp_path):
    """`celltrial import` while another program writes: it says it waits, then imports."""
    from typer.testing import CliRunner

    from celltrial.cli import app
    from celltrial.store.write_wait import notify_write_waits

    runner = CliRunner()
    study = tmp_path / "study"
    assert runner.invoke(app, ["init", str(study)]).exit_code == 0
    labs = tmp_path / "labs.csv"
    labs.write_text(
        "subject_id,time,test,value,unit\nS001,2020-02-10 08:00,CRP,12,mg/L\n", encoding="utf-8"
    )
    started = threading.Event()
    other = threading.Thread(
        target=hold_write_lock, args=(study / database.DATABASE_FILE, 1.5, started)
    )
    other.start()
    started.wait()
    try:
        result = runner.invoke(
            app, ["import", str(study), str(labs), "--register-subjects", "--cohort", "x"]
        )
    finally:
        other.join()
        notify_write_waits(None)  # the CLI's notice, not for the tests after this one
    assert result.exit_code == 0, result.output
    assert "waiting for the study database: another import or the web app is writing" in (
        result.output
    )
    engine = open_engine(f"sqlite:///{study / database.DATABASE_FILE}")
    assert subject_count(engine) == 1
    engine.dispose()


def test_a_write_that_does_not_wait_says_nothing(study_db):
    from celltrial.store.write_wait import notify_write_waits

    said: list[str] = []
    notify_write_waits(said.append)
    try:
        engine = open_engine(f"sqlite:///{study_db}")
        with study_session(engine, user="alice") as session:
            session.add(Subject(study_id="S", code="S001"))
        engine.dispose()
    finally:
        notify_write_waits(None)
    assert said == []
