"""The audit log is chained by hash: an entry changed, removed or inserted behind celltrial's back
is found, on SQLite and on PostgreSQL, and a database made before the chain gets one."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command

from celltrial.store.audit import (
    CHAINED_FIELDS,
    add_batch_rows,
    begin_batch,
    check_audit_chain,
    compute_chain_hash,
    finish_batch,
)
from celltrial.store.database import (
    _alembic_config,
    open_engine,
    schema_revision,
    study_session,
    upgrade_database,
)
from celltrial.store.models import AuditEvent, Observation, Study, Subject

T0 = datetime(2020, 2, 10, 2, 0, tzinfo=UTC)


@pytest.fixture
def engine(database_url):
    engine = open_engine(database_url)
    upgrade_database(engine)
    with study_session(engine, user="setup") as session:
        session.add(
            Study(id="S", title="t", protocol_yaml="", protocol_sha256="0" * 64, created_at=T0)
        )
    with study_session(engine, user="alice", reason="enrolment") as session:
        session.add_all([Subject(study_id="S", code=f"S00{i}") for i in range(1, 4)])
    with study_session(engine, user="bob", reason="import labs.csv") as session:
        subject = session.scalars(sa.select(Subject).where(Subject.code == "S001")).one()
        batch = begin_batch(session, kind="labs", source="labs.csv", source_sha256="ab" * 32)
        add_batch_rows(
            session,
            batch,
            Observation,
            [
                {"subject_id": subject.id, "time": T0, "test": "CRP", "value": 12.5,
                 "unit": "mg/L", "raw_value": "12.5", "source_row": 2},
            ],
        )  # fmt: skip
        finish_batch(session, batch)
    with study_session(engine, user="carol", reason="typo") as session:
        subject = session.scalars(sa.select(Subject).where(Subject.code == "S002")).one()
        subject.sex = "F"
    yield engine
    engine.dispose()


def event_ids(engine) -> list[int]:
    with engine.connect() as connection:
        return list(connection.scalars(sa.select(AuditEvent.id).order_by(AuditEvent.id)))


def forge(engine, statement: str, **params) -> None:
    """An edit made directly in the database, its append-only triggers lifted for the moment."""
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            connection.exec_driver_sql("DROP TRIGGER audit_event_no_update")
            connection.exec_driver_sql("DROP TRIGGER audit_event_no_delete")
        else:
            connection.exec_driver_sql("ALTER TABLE audit_event DISABLE TRIGGER USER")
        connection.execute(sa.text(statement), params)
        if engine.dialect.name == "sqlite":
            for what in ("UPDATE", "DELETE"):
                connection.exec_driver_sql(
                    f"CREATE TRIGGER audit_event_no_{what.lower()} BEFORE {what} ON audit_event "
                    "BEGIN SELECT RAISE(ABORT, 'audit_event is append-only'); END"
                )
        else:
            connection.exec_driver_sql("ALTER TABLE audit_event ENABLE TRIGGER USER")


def test_every_write_path_is_chained(engine):
    check = check_audit_chain(engine)
    assert check.intact and check.problem is None
    assert check.events == len(event_ids(engine)) >= 6  # inserts, the import, the update
    with engine.connect() as connection:
        newest = connection.scalars(
            sa.select(AuditEvent.chain_hash).order_by(AuditEvent.id.desc()).limit(1)
        ).one()
    assert check.head == newest and len(newest) == 64


def test_the_hash_is_sha256_over_the_previous_hash_and_canonical_content():
    event = {"time": datetime(2020, 2, 10, 2, 0, 0, 5, tzinfo=UTC), "user": "alice",
             "action": "update", "table_name": "subject", "row_id": "1",
             "before": {"sex": None}, "after": {"sex": "F", "weight": float("nan")}}  # fmt: skip
    content = {
        "action": "update",
        "after": {"sex": "F", "weight": None},
        "before": {"sex": None},
        "import_batch_id": None,
        "reason": None,
        "row_id": "1",
        "source_sha256": None,
        "subject_id": None,
        "table_name": "subject",
        "time": "2020-02-10T02:00:00.000005+00:00",
        "user": "alice",
    }
    text = json.dumps(content, sort_keys=True, separators=(",", ":"))
    assert (
        compute_chain_hash("f" * 64, event)
        == hashlib.sha256(("f" * 64 + "\n" + text).encode()).hexdigest()
    )
    assert compute_chain_hash(None, event) != compute_chain_hash("f" * 64, event)


def test_a_changed_entry_is_named(engine):
    target = event_ids(engine)[3]
    forge(engine, 'UPDATE audit_event SET "user" = :who WHERE id = :id', who="mallory", id=target)
    check = check_audit_chain(engine)
    assert check.broken_at == target and "by mallory" in check.problem
    assert check.head is None


def test_a_removed_entry_breaks_the_next_link(engine):
    ids = event_ids(engine)
    forge(engine, "DELETE FROM audit_event WHERE id = :id", id=ids[2])
    assert check_audit_chain(engine).broken_at == ids[3]


def test_an_entry_added_outside_celltrial_has_no_link(engine):
    with engine.begin() as connection:
        connection.execute(
            sa.insert(AuditEvent).values(
                time=T0, user="mallory", action="insert", table_name="subject", row_id="99"
            )
        )
    check = check_audit_chain(engine)
    assert check.broken_at == event_ids(engine)[-1] and "written outside celltrial" in check.problem


def test_a_rewritten_chain_is_found_from_the_recorded_head(engine):
    # recomputing every hash after a forged edit keeps the chain whole: what it cannot keep is
    # the newest link a reader wrote down before, which is why `audit verify` prints it
    recorded = check_audit_chain(engine).head
    ids = event_ids(engine)
    forge(engine, "UPDATE audit_event SET reason = 'edited' WHERE id = :id", id=ids[1])
    fields = [AuditEvent.id, *(getattr(AuditEvent, f) for f in CHAINED_FIELDS)]
    with engine.connect() as connection:
        rows = connection.execute(sa.select(*fields).order_by(AuditEvent.id)).all()
    previous = None
    for row in rows:
        previous = compute_chain_hash(previous, row._mapping)
        forge(
            engine, "UPDATE audit_event SET chain_hash = :h WHERE id = :id", h=previous, id=row.id
        )
    check = check_audit_chain(engine)
    assert check.intact and check.head != recorded


def test_a_database_made_before_the_chain_gets_one(engine):
    head = schema_revision(engine)
    command.downgrade(_alembic_config(engine), "0008")
    with engine.connect() as connection:
        columns = {c["name"] for c in sa.inspect(connection).get_columns("audit_event")}
    assert "chain_hash" not in columns
    upgrade_database(engine)
    assert schema_revision(engine) == head
    check = check_audit_chain(engine)
    assert check.intact and check.events == len(event_ids(engine))
    with study_session(engine, user="dave") as session:  # and the triggers are back
        session.add(Subject(study_id="S", code="S009"))
    with engine.begin() as connection, pytest.raises(sa.exc.DatabaseError, match="append-only"):
        connection.execute(sa.update(AuditEvent).values(user="mallory"))
    assert check_audit_chain(engine).intact
