"""The one write path: inserts, updates and deletes are audited; the log is append-only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select

from celltrial.errors import DataError, StudyError
from celltrial.store.audit import add_batch_rows, begin_batch, finish_batch
from celltrial.store.database import (
    open_engine,
    schema_is_current,
    study_session,
    upgrade_database,
)
from celltrial.store.models import (
    AdverseEvent,
    AuditEvent,
    Base,
    ImportBatch,
    Observation,
    ProductLot,
    Study,
    Subject,
)

T0 = datetime(2020, 2, 10, 2, 0, tzinfo=UTC)


@pytest.fixture
def engine(database_url):
    engine = open_engine(database_url)
    upgrade_database(engine)
    with study_session(engine, user="setup") as session:
        session.add(
            Study(id="S", title="t", protocol_yaml="", protocol_sha256="0" * 64, created_at=T0)
        )
    yield engine
    engine.dispose()


def audit_rows(engine, table="subject"):
    with engine.connect() as connection:
        return connection.execute(
            select(AuditEvent).where(AuditEvent.table_name == table).order_by(AuditEvent.id)
        ).all()


def test_migrations_match_the_models(engine):
    assert schema_is_current(engine)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []


def test_insert_update_delete_are_audited(engine):
    with study_session(engine, user="alice", reason="enrolment") as session:
        session.add(Subject(study_id="S", code="S001", sex="F", age=61.0, weight_kg=60.0))
    with study_session(engine, user="bob", reason="weight corrected from source") as session:
        subject = session.scalar(select(Subject).where(Subject.code == "S001"))
        subject.weight_kg = 62.5
    with study_session(engine, user="carol", reason="withdrew consent, data removed") as session:
        session.delete(session.scalar(select(Subject).where(Subject.code == "S001")))

    inserted, updated, deleted = audit_rows(engine)
    assert (inserted.action, inserted.user, inserted.reason) == ("insert", "alice", "enrolment")
    assert inserted.before is None and inserted.after["weight_kg"] == 60.0
    assert inserted.after["code"] == "S001"
    assert updated.action == "update" and updated.user == "bob"
    assert updated.before == {"weight_kg": 60.0} and updated.after == {"weight_kg": 62.5}
    assert updated.reason == "weight corrected from source"
    assert deleted.action == "delete" and deleted.after is None
    assert deleted.before["weight_kg"] == 62.5
    assert inserted.row_id == updated.row_id == deleted.row_id
    assert inserted.time.tzinfo is not None


def test_no_op_update_writes_nothing(engine):
    with study_session(engine, user="alice") as session:
        session.add(Subject(study_id="S", code="S002", age=50.0))
    with study_session(engine, user="bob") as session:
        subject = session.scalar(select(Subject).where(Subject.code == "S002"))
        subject.age = 50.0
    assert [row.action for row in audit_rows(engine)] == ["insert"]


def test_failed_transaction_leaves_no_trace(engine):
    with pytest.raises(RuntimeError), study_session(engine, user="alice") as session:
        session.add(Subject(study_id="S", code="S003"))
        session.flush()
        raise RuntimeError("boom")
    with engine.connect() as connection:
        assert connection.scalar(select(sa.func.count()).select_from(Subject)) == 0
    assert audit_rows(engine) == []


def test_audit_log_is_append_only(engine):
    with study_session(engine, user="alice") as session:
        session.add(Subject(study_id="S", code="S004"))
    with engine.begin() as connection, pytest.raises(sa.exc.DatabaseError, match="append-only"):
        connection.execute(sa.update(AuditEvent).values(user="mallory"))
    with engine.begin() as connection, pytest.raises(sa.exc.DatabaseError, match="append-only"):
        connection.execute(sa.delete(AuditEvent))
    assert audit_rows(engine)[0].user == "alice"
    if engine.dialect.name == "postgresql":
        with (
            engine.begin() as connection,
            pytest.raises(sa.exc.DatabaseError, match="append-only"),
        ):
            connection.execute(sa.text("TRUNCATE audit_event CASCADE"))
        assert audit_rows(engine)[0].user == "alice"


def test_change_without_user_refused(engine):
    with pytest.raises(StudyError, match="needs a user"), study_session(engine, user="") as s:
        s.add(Subject(study_id="S", code="S005"))


def test_batch_is_audited_once_and_rows_keep_their_origin(engine):
    with study_session(engine, user="dm", reason="lab export") as session:
        session.add(Subject(study_id="S", code="S006"))
        session.flush()
        subject_id = session.scalar(select(Subject.id).where(Subject.code == "S006"))
        batch = begin_batch(session, kind="file", source="labs.csv", source_sha256="ab" * 32)
        rows = [
            {
                "subject_id": subject_id,
                "time": T0 + timedelta(hours=i),
                "test": "CRP",
                "value": float(i),
                "unit": "mg/L",
                "source_row": i + 2,
            }
            for i in range(3)
        ]
        add_batch_rows(session, batch, Observation, rows)
        finish_batch(session, batch)
    imports = audit_rows(engine, "observation")
    assert len(imports) == 1
    assert imports[0].action == "import" and imports[0].source_sha256 == "ab" * 32
    assert imports[0].after["counts"] == {"observation": 3}
    with engine.connect() as connection:
        stored = connection.execute(select(Observation).order_by(Observation.id)).all()
        batch_row = connection.execute(select(ImportBatch)).one()
    assert [o.source_row for o in stored] == [2, 3, 4]
    assert {o.import_batch_id for o in stored} == {batch_row.id}
    assert batch_row.counts == {"observation": 3} and batch_row.reason == "lab export"


def test_times_are_stored_in_utc_and_returned_aware(engine):
    shanghai = timezone(timedelta(hours=8))
    with study_session(engine, user="alice") as session:
        session.add(
            Subject(
                study_id="S", code="S007", enrolled_at=datetime(2020, 2, 10, 10, 0, tzinfo=shanghai)
            )
        )
    with study_session(engine, user="alice") as session:
        subject = session.scalar(select(Subject).where(Subject.code == "S007"))
        assert subject.enrolled_at == datetime(2020, 2, 10, 2, 0, tzinfo=UTC)
        assert subject.enrolled_at.tzinfo is not None


def test_naive_time_refused(engine):
    with pytest.raises(sa.exc.StatementError) as caught, study_session(engine, user="a") as s:
        s.add(Subject(study_id="S", code="S008", enrolled_at=datetime(2020, 2, 10, 10, 0)))
        s.flush()
    assert isinstance(caught.value.orig, DataError)
    assert "no time zone" in str(caught.value.orig)


def test_audit_events_are_numbered_in_the_order_their_changes_are_committed(engine):
    """Readers tell what changed since they last looked by the newest audit event id
    (``id > seen``): an event numbered before one already committed, but committed after it,
    would never be seen. So a change waits for the audited changes begun before it to end."""
    import threading

    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite runs one write transaction at a time: commit order is id order")
    first = study_session(engine, user="alice", reason="slow entry")
    session = first.__enter__()
    session.add(Subject(study_id="S", code="S010", sex="F", age=50.0, weight_kg=60.0))
    session.flush()  # its audit event is written (and numbered), not yet committed
    done = threading.Event()

    def second_change() -> None:
        with study_session(engine, user="bob", reason="quick entry") as other:
            other.add(Subject(study_id="S", code="S011", sex="M", age=40.0, weight_kg=70.0))
        done.set()

    writer = threading.Thread(target=second_change)
    writer.start()
    assert not done.wait(1.0), "the second change was committed while the first was open"
    first.__exit__(None, None, None)
    writer.join(10)
    assert done.is_set()
    rows = audit_rows(engine)
    assert [r.user for r in rows] == ["alice", "bob"]


def test_audit_events_name_the_subject_whose_data_they_change(engine):
    with study_session(engine, user="alice") as session:
        subject = Subject(study_id="S", code="S020", sex="F", age=50.0, weight_kg=60.0)
        session.add(subject)
        session.flush()
        event = AdverseEvent(subject_id=subject.id, term="Rash", onset_at=T0, grade=1)
        session.add(event)
        session.add(ProductLot(study_id="S", code="L-20", release_status="released"))
        subject_id = subject.id
    with study_session(engine, user="bob", reason="grade from source") as session:
        session.scalar(select(AdverseEvent).where(AdverseEvent.term == "Rash")).grade = 2
    with study_session(engine, user="carol", reason="entered twice") as session:
        session.delete(session.scalar(select(AdverseEvent).where(AdverseEvent.term == "Rash")))
    with engine.connect() as connection:
        events = connection.execute(
            select(AuditEvent.table_name, AuditEvent.action, AuditEvent.subject_id).order_by(
                AuditEvent.id
            )
        ).all()
    assert ("subject", "insert", subject_id) in events
    for action in ("insert", "update", "delete"):  # an update that leaves subject_id as it was
        assert ("adverse_event", action, subject_id) in events
    assert ("product_lot", "insert", None) in events  # not one subject's data
