"""A study team's first days through the command line, on generated data: every README command on
an empty study, on a study holding only an external cohort, on treated subjects with a cohort, with
a product lot that has no QC results yet, a subject who died and a subject without labs, and the
mistakes people make. Each command ends with status 0, or with status 1 and one message; never a
traceback. (``test_journey_real.py`` walks the same path on the real files of ``../shared/data``.)
"""

from __future__ import annotations

import json
import sqlite3
import traceback
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from alembic import command
from typer.testing import CliRunner

from celltrial.cli import app
from celltrial.services.casebook import NewLot, NewSubject, enrol_subject, record_lot
from celltrial.store.database import _alembic_config, schema_revision
from celltrial.study import open_study
from tests.store.backends import ALL_POSTGRESQL

runner = CliRunner()


def run(*args: object, expect: str = "any") -> str:
    """Run one command as a user would; fail on a traceback, another exit status, or an exit 1
    without a message. ``expect``: ok (status 0), error (status 1) or any."""
    result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "100"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        trace = "".join(traceback.format_exception(result.exception))
        pytest.fail(f"`celltrial {' '.join(map(str, args))}` raised:\n{trace}")
    output = result.output
    assert result.exit_code in (0, 1), (args, result.exit_code, output)
    assert "Traceback" not in output
    if result.exit_code == 1:
        assert output.strip().startswith("error:") or "error:" in output, (args, output)
    if expect == "ok":
        assert result.exit_code == 0, (args, output)
    elif expect == "error":
        assert result.exit_code == 1, (args, output)
    return output


def read_commands(study: Path, out: Path, *, cohort: str | None = None) -> dict[str, str]:
    """Every command that reads a study, in each output format; {name: output}."""
    outputs = {}
    for name in ("status", "safety", "efficacy"):
        outputs[name] = run(name, study)
        for fmt in ("csv", "json"):
            text = run(name, study, "--format", fmt)
            if fmt == "json" and not text.startswith("error:"):
                json.loads(text)  # a document a program can read
    outputs["external"] = run("external", study, *(["--cohort", cohort] if cohort else []))
    outputs["report"] = run("report", study, "--out", out / "report")
    outputs["export"] = run("export", study, "--out", out / "export")
    if cohort:
        outputs["export-cohort"] = run("export", study, "--out", out / "ext", "--cohort", cohort)
    outputs["audit"] = run("audit", "verify", study, expect="ok")
    assert "audit trail intact" in outputs["audit"]
    return outputs


def write_external_cohort(path: Path, *, patients: int = 40, seed: int = 7) -> Path:
    """A hospital export shaped like the Tongji one: one row per patient and draw, admission and
    discharge times, outcome (1 = died), lymphocytes, neutrophils, hs-CRP and D-dimer."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(patients):
        admitted = pd.Timestamp("2020-01-20 08:00") + pd.Timedelta(hours=7 * i)
        died = bool(rng.random() < 0.3)
        stay = int(rng.integers(8, 20))
        for day in range(0, stay, 2):
            rows.append(
                {
                    "PATIENT_ID": i + 1 if day == 0 else None,  # the Tongji layout: ID once
                    "RE_DATE": (admitted + pd.Timedelta(days=day, hours=2)).strftime(
                        "%Y-%m-%d %H:%M"
                    ),
                    "age": int(rng.integers(30, 85)),
                    "gender": int(rng.integers(1, 3)),
                    "Admission time": admitted.strftime("%Y-%m-%d %H:%M"),
                    "Discharge time": (admitted + pd.Timedelta(days=stay)).strftime(
                        "%Y-%m-%d %H:%M"
                    ),
                    "outcome": int(died),
                    "Lymphocyte count": round(float(rng.lognormal(np.log(0.7), 0.4)), 2),
                    "neutrophils count": round(float(rng.lognormal(np.log(6), 0.4)), 2),
                    "hs-CRP": round(float(rng.lognormal(np.log(60), 0.8)), 1),
                    "D-D dimer": round(float(rng.lognormal(np.log(2), 0.8)), 2),
                }
            )
    table = pd.DataFrame(rows)
    table["PATIENT_ID"] = table["PATIENT_ID"].ffill().astype(int)
    table.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def empty_study(tmp_path_factory) -> Path:
    study = tmp_path_factory.mktemp("empty") / "study"
    run("init", study, expect="ok")
    return study


def test_every_command_on_an_empty_study(empty_study, tmp_path):
    outputs = read_commands(empty_study, tmp_path)
    assert "0 subjects" in outputs["status"]
    assert "No treated subjects yet" in outputs["efficacy"]
    assert "holds no external cohort yet" in outputs["external"]
    assert "nothing to export" in outputs["export"] and not (tmp_path / "export").exists()
    assert (tmp_path / "report" / "report.html").exists()


def test_read_commands_never_write(empty_study, tmp_path):
    if ALL_POSTGRESQL:
        pytest.skip("the study's database is a PostgreSQL one")
    database = empty_study / "celltrial.db"

    def content() -> list[str]:  # what the database holds (a WAL checkpoint moves, not writes)
        with closing(sqlite3.connect(database)) as connection:
            return list(connection.iterdump())

    before = content()
    read_commands(empty_study, tmp_path)
    assert content() == before
    nowhere = tmp_path / "typo.db"
    for name in ("status", "safety", "efficacy", "report", "export", "external"):
        extra = ["--out", tmp_path / "x"] if name in ("report", "export") else []
        output = run(name, empty_study, "--db", f"sqlite:///{nowhere}", *extra, expect="error")
        assert "no database at" in output
        assert not nowhere.exists()


def test_a_database_that_needs_migrating_names_the_command(tmp_path):
    study = tmp_path / "old"
    run("init", study, expect="ok")
    engine = open_study(study).engine
    head = schema_revision(engine)
    command.downgrade(_alembic_config(engine), "-1")
    older = schema_revision(engine)
    assert older != head
    for name in ("status", "safety", "efficacy", "report"):
        output = run(name, study, expect="error")
        assert f"celltrial migrate {study}" in output.replace("\n", "")
    assert schema_revision(engine) == older  # the read commands left it as it was
    assert "migrated" in run("migrate", study, expect="ok")
    assert schema_revision(engine) == head
    assert "up to date" in run("migrate", study, expect="ok")
    run("status", study, expect="ok")


def test_a_study_holding_only_an_external_cohort(empty_study, tmp_path):
    export = write_external_cohort(tmp_path / "hospital.csv")
    dry = run("import", empty_study, export, "--register-subjects", "--cohort", "ext", "--dry-run")
    real = run("import", empty_study, export, "--register-subjects", "--cohort", "ext", expect="ok")
    again = run("import", empty_study, export, "--register-subjects", "--cohort", "ext")
    assert "would import" in dry and "imported" in real and "0 new" in again
    outputs = read_commands(empty_study, tmp_path, cohort="ext")
    assert "0 subjects" in outputs["status"]  # the cohort never enters the study's tables
    assert "no treated subject yet" in outputs["external"]
    assert "wrote" in outputs["export-cohort"]


@pytest.fixture(scope="module")
def busy_study(tmp_path_factory) -> Path:
    """The demo (treated subjects, one who died), an external cohort, a product lot without QC
    results yet and an enrolled subject without any data."""
    folder = tmp_path_factory.mktemp("busy")
    study = folder / "study"
    run("demo", "--out", study, expect="ok")
    export = write_external_cohort(folder / "hospital.csv")
    run("import", study, export, "--register-subjects", "--cohort", "ext", expect="ok")
    handle = open_study(study)
    record_lot(handle, NewLot(code="LOT-PENDING", release_status="quarantine"), user="tester")
    enrol_subject(
        handle,
        NewSubject(code="S900", enrolled_at=datetime(2020, 2, 20, 8, tzinfo=UTC)),
        user="tester",
    )
    return study


def test_every_command_on_treated_subjects_with_a_cohort(busy_study, tmp_path):
    outputs = read_commands(busy_study, tmp_path, cohort="ext")
    assert "S900" in outputs["status"] and "died" in outputs["status"]
    assert "external comparison against cohort 'ext'" in outputs["external"]
    html = (tmp_path / "report" / "report.html").read_text(encoding="utf-8")
    assert "LOT-PENDING" in html and "not tested" in html
    run("report", busy_study, "--format", "pdf", "--out", tmp_path / "pdf", expect="ok")
    assert (tmp_path / "pdf" / "report.pdf").stat().st_size > 10_000
    assert "S900" in run("status", busy_study, "--subject", "S900", expect="ok")


def test_mistakes_people_make(busy_study, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    header_only = tmp_path / "header.csv"
    header_only.write_text("subject,term,onset,grade\n")
    fake = tmp_path / "fake.xlsx"
    fake.write_text("not a spreadsheet")
    assert "empty" in run("import", busy_study, empty, expect="error")
    assert "not an Excel workbook" in run("import", busy_study, fake, expect="error")
    run("import", busy_study, header_only, expect="error")
    assert "empty" in run("ae", "import", busy_study, empty, expect="error")
    run("ae", "import", busy_study, header_only, expect="error")
    onset = run(
        "ae", "add", busy_study, "--subject", "S001", "--term", "Fever", "--onset", "yesterday",
        expect="error",
    )  # fmt: skip
    assert "--onset" in onset and "yesterday" in onset
    unknown = run(
        "ae", "add", busy_study, "--subject", "NOPE", "--term", "Fever", "--onset",
        "2020-02-14 10:00", expect="error",
    )  # fmt: skip
    assert "NOPE" in unknown
    assert "no external cohort 'nosuch'" in run(
        "export", busy_study, "--out", tmp_path / "x", "--cohort", "nosuch", expect="error"
    )
    assert "unknown --format" in run("safety", busy_study, "--format", "xml", expect="error")
    assert "not a study directory" in run("status", tmp_path / "nothing", expect="error")


def test_data_text_is_never_markup(busy_study, tmp_path):
    # a term with brackets is printed as written, in listings and in error messages
    term = "Rash [grade 1/2] [/]"
    run(
        "ae", "add", busy_study, "--subject", "S002", "--term", term, "--onset",
        "2020-02-14 10:00", "--grade", "3", "--serious", "requires or prolongs hospitalisation",
        expect="ok",
    )  # fmt: skip
    assert term in run("safety", busy_study, "--format", "csv", expect="ok")
    bad = tmp_path / "units.csv"
    bad.write_text("subject_id,time,Foo [mmol/L]\nS001,2020-02-10 08:00,1\n")
    output = run("import", busy_study, bad)
    assert "[mmol/L]" in output


def test_terminal_tables_read_at_80_columns(busy_study):
    result = runner.invoke(app, ["safety", str(busy_study)], env={"COLUMNS": "80"})
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 80
    assert "…" not in result.output  # nothing cut off
    assert "subject_id" not in result.output and "onset_day" not in result.output
