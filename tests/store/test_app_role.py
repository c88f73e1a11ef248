"""A PostgreSQL deployment where celltrial's role owns no table: the study runs (enrolment,
imports, adverse events, the audit chain), and the role cannot rewrite or lift the audit log.

Needs ``$CELLTRIAL_TEST_POSTGRES_APP_ROLE`` ("user:password" of a login role that is not the
owner; .ci/run creates ``celltrial_app``)."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from celltrial.cli import app
from celltrial.ingest import import_file
from celltrial.services.casebook import NewSubject, enrol_subject
from celltrial.store.audit import check_audit_chain
from celltrial.study import init_study, open_study
from tests.store.backends import fresh_database

APP_ROLE_ENV = "CELLTRIAL_TEST_POSTGRES_APP_ROLE"


def _app_role() -> tuple[str, str]:
    value = os.environ.get(APP_ROLE_ENV, "")
    if ":" not in value:
        pytest.skip(f"${APP_ROLE_ENV} (user:password of a second PostgreSQL role) is not set")
    user, password = value.split(":", 1)
    return user, password


def test_the_app_role_runs_the_study_and_cannot_touch_the_audit_log(tmp_path):
    user, password = _app_role()
    with fresh_database("postgresql", tmp_path) as owner_url:
        directory = tmp_path / "study"
        init_study(directory, user="owner", db_url=owner_url).engine.dispose()
        granted = CliRunner().invoke(
            app, ["migrate", str(directory), "--db", owner_url, "--grant-to", user]
        )
        assert granted.exit_code == 0, granted.output
        assert f"granted {user} may read and write" in " ".join(granted.output.split())
        app_url = make_url(owner_url).set(username=user, password=password)
        app_url = app_url.render_as_string(hide_password=False)
        study = open_study(directory, db_url=app_url)
        try:
            enrol_subject(
                study,
                NewSubject(code="S001", enrolled_at=datetime(2020, 2, 1, tzinfo=UTC)),
                user="coordinator",
            )
            labs = tmp_path / "labs.csv"
            labs.write_text(
                "subject_id,time,test,value,unit\nS001,2020-02-02 08:00,CRP,12,mg/L\n",
                encoding="utf-8",
            )
            assert import_file(study, labs, user="data-manager").counts["inserted"] == 1
            assert check_audit_chain(study.engine).intact
            for statement in (
                "UPDATE audit_event SET reason = 'nothing happened'",
                "DELETE FROM audit_event",
                "TRUNCATE audit_event",
                "ALTER TABLE audit_event DISABLE TRIGGER USER",
                "DROP TRIGGER audit_event_append_only ON audit_event",
                "UPDATE alembic_version SET version_num = '0001'",
            ):
                with pytest.raises(sa.exc.ProgrammingError), study.engine.begin() as connection:
                    connection.exec_driver_sql(statement)
            assert check_audit_chain(study.engine).intact
        finally:
            study.engine.dispose()


def test_granting_to_the_owner_itself_is_refused(tmp_path):
    _app_role()
    with fresh_database("postgresql", tmp_path) as owner_url:
        directory = tmp_path / "study"
        init_study(directory, user="owner", db_url=owner_url).engine.dispose()
        owner = make_url(owner_url).username
        refused = CliRunner().invoke(
            app, ["migrate", str(directory), "--db", owner_url, "--grant-to", owner]
        )
        assert refused.exit_code == 1
        assert "owns the study's tables" in " ".join(refused.output.split())
