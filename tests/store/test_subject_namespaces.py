"""Migration 0010: subjects become unique per (study, cohort, code), on a database that holds
subjects, results and foreign keys to them (SQLite rebuilds the table; PostgreSQL swaps the
constraint); downgrading puts the old key back."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command

from celltrial.store.database import _alembic_config, open_engine, schema_revision
from tests.store.backends import BACKENDS, fresh_database


def _seed(connection: sa.Connection) -> None:
    connection.execute(
        sa.text(
            "INSERT INTO study (id, title, protocol_yaml, protocol_sha256, created_at) "
            "VALUES ('T', 't', '', '', '2020-01-01 00:00:00')"
        )
    )
    for number, (code, cohort) in enumerate([("S001", None), ("1", "a"), ("2", "a")], start=101):
        connection.execute(
            sa.text(
                "INSERT INTO subject (id, study_id, code, cohort, version) "
                "VALUES (:id, 'T', :code, :cohort, 1)"
            ),
            {"id": number, "code": code, "cohort": cohort},
        )
    connection.execute(
        sa.text(
            "INSERT INTO observation (subject_id, time, test, value, qualifier, version) "
            "VALUES (102, '2020-02-01 08:00:00', 'CRP', 5, '', 1)"
        )
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_migration_keeps_every_row_and_lets_cohorts_share_codes(backend, tmp_path):
    with fresh_database(backend, tmp_path) as url:
        engine = open_engine(url)
        try:
            config = _alembic_config(engine)
            command.upgrade(config, "0009")
            with engine.begin() as connection:
                _seed(connection)
            command.upgrade(config, "0010")
            assert schema_revision(engine) == "0010"
            with engine.begin() as connection:
                codes = connection.execute(
                    sa.text("SELECT code, cohort FROM subject ORDER BY id")
                ).all()
                assert [tuple(r) for r in codes] == [("S001", None), ("1", "a"), ("2", "a")]
                assert connection.scalar(sa.text("SELECT subject_id FROM observation")) == 102
                connection.execute(
                    sa.text(
                        "INSERT INTO subject (study_id, code, cohort, version) "
                        "VALUES ('T', '1', 'b', 1)"
                    )
                )
            with pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:
                connection.execute(
                    sa.text("INSERT INTO subject (study_id, code, version) VALUES ('T', 'S001', 1)")
                )
            with engine.begin() as connection:  # the study's foreign keys are still enforced
                if engine.dialect.name == "sqlite":
                    assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
                    assert connection.exec_driver_sql("PRAGMA foreign_key_check").all() == []
            with pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:
                connection.execute(
                    sa.text(
                        "INSERT INTO observation (subject_id, time, test, qualifier, version) "
                        "VALUES (99, '2020-02-01 08:00:00', 'CRP', '', 1)"
                    )
                )
            with engine.begin() as connection:
                connection.execute(sa.text("DELETE FROM subject WHERE cohort = 'b'"))
            command.downgrade(config, "0009")
            with pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:
                connection.execute(
                    sa.text(
                        "INSERT INTO subject (study_id, code, cohort, version) "
                        "VALUES ('T', '1', 'c', 1)"
                    )
                )
        finally:
            engine.dispose()
