"""A study whose database holds a time celltrial cannot read (year 0, written by an older
celltrial) still opens: every command that reads it succeeds, leaves that result out, and says
once which row to correct."""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from celltrial.cli import app
from celltrial.cohort import simulate
from celltrial.protocol import DEFAULT_PROTOCOL, load_builtin_protocol
from celltrial.store import unreadable_times
from celltrial.store.database import study_session
from celltrial.store.loading import load_simulated_cohort
from celltrial.study import init_study, read_study_frames
from tests.store.backends import BACKENDS, fresh_database

runner = CliRunner()
YEAR_0 = {"sqlite": "0000-12-31 16:00:00.000000", "postgresql": "0001-01-01 00:00:00+00 BC"}
SHOWN = {"sqlite": "0000-12-31 16:00:00", "postgresql": "0001-01-01 00:00:00+00 BC"}


@pytest.fixture(scope="module", params=BACKENDS)
def broken(request, tmp_path_factory):
    """A two-subject study whose observation 1 holds year 0, made once per backend (the tests
    only read it); (directory, url, expected warning, that observation's subject and test,
    observations before the edit)."""
    directory = tmp_path_factory.mktemp("unreadable") / "study"
    directory.mkdir()
    with fresh_database(request.param, directory, migrated=True) as url:
        yield _build(directory, url)


def _build(directory, database_url):
    study = init_study(directory, db_url=database_url, user="tester")
    protocol = load_builtin_protocol(DEFAULT_PROTOCOL)
    with study_session(study.engine, user="tester", reason="test") as session:
        load_simulated_cohort(session, study.study_id, simulate(protocol, 2, seed=5))
    before = read_study_frames(study).observations
    backend = study.engine.dialect.name
    with study.engine.begin() as connection:
        code, test = connection.execute(
            sa.text(
                "select s.code, o.test from observation o join subject s "
                "on s.id = o.subject_id where o.id = 1"
            )
        ).one()
        connection.execute(
            sa.text("update observation set time = :t where id = 1"), {"t": YEAR_0[backend]}
        )
    study.engine.dispose()
    warning = (
        "warning: the study database holds a time that cannot be read: observation row 1 "
        f'(subject {code}, {test}), time "{SHOWN[backend]}": left out until corrected'
    )
    return directory, database_url, warning, (code, test), before


@pytest.fixture(autouse=True)
def forget_after():
    """What the readers noted is this module's own: later tests start without it."""
    yield
    unreadable_times.forget_unreadable_times()


def run(*args: str):
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return result


@pytest.mark.parametrize("command", ["status", "safety", "efficacy"])
def test_reading_commands_succeed_and_name_the_row(broken, command):
    directory, url, warning, _, _ = broken
    result = run(command, str(directory), "--db", url)
    assert result.stderr.count(warning) == 1  # once per command
    assert "S001" in result.stdout and "S002" in result.stdout


def test_the_report_says_which_row_to_fix(broken, tmp_path):
    directory, url, warning, _, _ = broken
    if not url.startswith("sqlite"):  # ~12 s; it reads the frames the other commands read
        pytest.skip("the report is written on SQLite only; PostgreSQL reads are tested above")
    out = tmp_path / "report.html"
    result = run("report", str(directory), "--db", url, "--out", str(out))
    assert result.stderr.count(warning) == 1
    html = out.read_text(encoding="utf-8")
    sentence = warning.removeprefix("warning: the").replace('"', "&#34;")
    data_quality = html[html.index('<section id="data-quality">') :]
    assert f"<p>The{sentence}.</p>" in data_quality[: data_quality.index("</section>")]


def test_the_export_leaves_out_only_that_result(broken, tmp_path):
    directory, url, warning, (code, _), before = broken
    out = tmp_path / "export"
    result = run("export", str(directory), "--db", url, "--out", str(out))
    assert result.stderr.count(warning) == 1
    exported = pd.concat(
        [pd.read_csv(out / "lb.csv"), pd.read_csv(out / "vs.csv")], ignore_index=True
    )
    assert len(exported) == len(before) - 1
    # one row fewer for that subject, the other subject's rows all there
    per_subject = exported["USUBJID"].str.rsplit("-", n=1).str[-1].value_counts()
    expected = before["subject_id"].value_counts()
    expected[code] -= 1
    assert per_subject.to_dict() == expected.to_dict()


def test_a_readable_study_says_nothing(broken):
    directory, url, _, _, _ = broken
    engine = sa.create_engine(url)
    corrected = "2020-02-10 00:00:00.000000" if url.startswith("sqlite") else "2020-02-10Z"
    with engine.begin() as connection:
        stored = connection.scalar(
            sa.text("select cast(time as text) from observation where id = 1")
        )
        connection.execute(
            sa.text("update observation set time = :t where id = 1"), {"t": corrected}
        )
    try:
        result = run("status", str(directory), "--db", url)
    finally:  # the other tests read the study as it was
        with engine.begin() as connection:
            connection.execute(
                sa.text("update observation set time = :t where id = 1"),
                {"t": stored},
            )
        engine.dispose()
    assert "warning" not in result.stderr


def test_the_web_dashboard_says_which_row_to_fix(broken):
    from celltrial.services.accounts import add_user
    from celltrial.web import create_app
    from tests.web.conftest import PASSWORD, client_for

    directory, url, warning, (code, _), _ = broken
    app = create_app(directory, db_url=url)
    try:
        add_user(
            app.state.study.engine, username="monitor", role="monitor", password=PASSWORD, by="t"
        )
        client = client_for(app, "monitor")
        dashboard = client.get("/")
        subject = client.get(f"/subjects/{code}")
        trail = client.get("/audit")
    finally:
        app.state.study.engine.dispose()
    assert dashboard.status_code == 200
    sentence = warning.removeprefix("warning: the").replace('"', "&#34;")
    assert f"The{sentence}." in dashboard.text
    assert (subject.status_code, trail.status_code) == (200, 200)
