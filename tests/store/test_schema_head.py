"""Read-only commands check a database's schema revision without Alembic (issue 26): the revision
they expect is Alembic's head, and the revision they read is the one Alembic reads."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from celltrial.errors import StudyError
from celltrial.store import database
from celltrial.store.database import (
    SCHEMA_HEAD,
    _alembic_config,
    check_schema_current,
    open_engine,
    schema_is_current,
    schema_revision,
    upgrade_database,
)


def test_the_schema_head_is_alembics_head():
    engine = open_engine("sqlite://")
    assert ScriptDirectory.from_config(_alembic_config(engine)).get_current_head() == SCHEMA_HEAD
    assert database._schema_head_is_newest()


def alembic_revision(engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def test_the_revision_read_is_the_one_alembic_reads(database_url, tmp_path):
    engine = open_engine(database_url)
    try:
        assert schema_revision(engine) is None is alembic_revision(engine)
        assert not schema_is_current(engine)
        with pytest.raises(StudyError, match="holds no celltrial study"):
            check_schema_current(engine, directory=tmp_path)
        upgrade_database(engine)
        assert schema_revision(engine) == SCHEMA_HEAD == alembic_revision(engine)
        assert schema_is_current(engine)
        check_schema_current(engine, directory=tmp_path)
        command.downgrade(_alembic_config(engine), "-1")
        older = alembic_revision(engine)
        assert schema_revision(engine) == older != SCHEMA_HEAD
        assert not schema_is_current(engine)
        with pytest.raises(StudyError, match=f"older celltrial .*revision {older}"):
            check_schema_current(engine, directory=tmp_path)
    finally:
        engine.dispose()


def test_a_stale_head_constant_leaves_the_decision_to_alembic(monkeypatch, tmp_path):
    """A migration added without updating SCHEMA_HEAD: the fast path is not taken."""
    engine = open_engine(f"sqlite:///{tmp_path / 'study.db'}")
    try:
        upgrade_database(engine)
        command.downgrade(_alembic_config(engine), "-1")
        older = schema_revision(engine)
        monkeypatch.setattr(database, "SCHEMA_HEAD", older)
        assert not database._schema_head_is_newest()
        assert not schema_is_current(engine)
        with pytest.raises(StudyError, match="older celltrial"):
            check_schema_current(engine, directory=tmp_path)
    finally:
        engine.dispose()
