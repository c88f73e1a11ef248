"""The command line end to end: demo, status, init, protocols, and errors without tracebacks."""

from __future__ import annotations

import errno
import re

import pandas as pd
import pytest
from typer.testing import CliRunner

from celltrial.cli import app
from celltrial.protocol.loader import DEFAULT_PROTOCOL, builtin_protocol_text
from celltrial.study import open_study, read_study_frames
from tests.store.backends import ALL_POSTGRESQL

runner = CliRunner()


@pytest.fixture(scope="module")
def demo_dir(default_demo):
    return default_demo


def test_demo_builds_study_and_report(demo_dir):
    assert (demo_dir / "protocol.yaml").exists()
    if not ALL_POSTGRESQL:  # else the study's database is a PostgreSQL one
        assert (demo_dir / "celltrial.db").exists()
    html = (demo_dir / "report.html").read_text(encoding="utf-8")
    for heading in (
        "Study and protocol",
        "Participants",
        "Exposure: infusions against the plan",
        "Visits and assessments",
        "Protocol deviations",
        "Methods and provenance",
    ):
        assert heading in html
    study = open_study(demo_dir)
    frames = read_study_frames(study)
    assert len(frames.subjects) == 5
    assert len(frames.infusions) == 15
    # the report's numbers are the data's numbers
    assert "5 subjects enrolled and treated" in html
    assert "infusion 1: 5; infusion 2: 5; infusion 3: 5" in html
    assert "infusion late" in html and "infusion_late" not in html
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org", "")


def test_demo_is_reproducible(tmp_path, demo_dir):
    other = tmp_path / "again"
    assert runner.invoke(app, ["demo", "--out", str(other)]).exit_code == 0
    a = read_study_frames(open_study(demo_dir)).observations
    b = read_study_frames(open_study(other)).observations
    pd.testing.assert_frame_equal(a, b)


def test_demo_refuses_to_overwrite_without_force(demo_dir, tmp_path):
    result = runner.invoke(app, ["demo", "--out", str(demo_dir)])
    assert result.exit_code == 1
    assert "add --force" in result.output
    assert "Traceback" not in result.output
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    result = runner.invoke(app, ["demo", "--out", str(foreign), "--force"])
    assert result.exit_code == 1 and "not made by `celltrial demo`" in result.output
    assert (foreign / "notes.txt").exists()
    real = tmp_path / "real"
    assert runner.invoke(app, ["init", str(real)]).exit_code == 0
    result = runner.invoke(app, ["demo", "--out", str(real), "--force"])
    assert result.exit_code == 1 and open_study(real).study_id == "HUC-MSC-COVID19"
    replaced = runner.invoke(app, ["demo", "--out", str(demo_dir), "--force"])
    assert replaced.exit_code == 0, replaced.output


def test_status_lists_schedule_and_deviations(demo_dir):
    result = runner.invoke(app, ["status", str(demo_dir)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for text in ("S001", "S005", "infusion 3", "Day 28", "Protocol deviations", "infusion late"):
        assert text in result.output
    one = runner.invoke(app, ["status", str(demo_dir), "--subject", "S002"], env={"COLUMNS": "200"})
    assert one.exit_code == 0 and "S001 —" not in one.output and "S002 —" in one.output
    bad = runner.invoke(app, ["status", str(demo_dir), "--subject", "S999"])
    assert bad.exit_code == 1 and "no subject 'S999'" in bad.output


def test_init_and_open(tmp_path):
    target = tmp_path / "new"
    result = runner.invoke(app, ["init", str(target)])
    assert result.exit_code == 0, result.output
    assert "created study HUC-MSC-COVID19" in result.output
    again = runner.invoke(app, ["init", str(target)])
    assert again.exit_code == 1 and "already holds a study" in again.output
    status = runner.invoke(app, ["status", str(target)])
    assert status.exit_code == 0 and "0 subjects" in status.output


def test_init_with_protocol_file_and_db_url(tmp_path):
    protocol = tmp_path / "two-day.yaml"
    protocol.write_text(
        builtin_protocol_text(DEFAULT_PROTOCOL).replace("interval_days: 3", "interval_days: 2")
    )
    db = tmp_path / "elsewhere.db"
    result = runner.invoke(
        app, ["init", str(tmp_path / "s"), "--protocol", str(protocol), "--db", f"sqlite:///{db}"]
    )
    assert result.exit_code == 0, result.output
    assert db.exists() and not (tmp_path / "s" / "celltrial.db").exists()
    study = open_study(tmp_path / "s", db_url=f"sqlite:///{db}")
    assert study.protocol.regimen.infusion_days == (0, 2, 4)


def test_bad_protocol_error_has_line_and_no_traceback(tmp_path):
    protocol = tmp_path / "bad.yaml"
    protocol.write_text(
        builtin_protocol_text(DEFAULT_PROTOCOL).replace("route: intravenous", "route: oral")
    )
    for args in (
        ["check-protocol", str(protocol)],
        ["init", str(tmp_path / "s"), "--protocol", str(protocol)],
    ):
        result = runner.invoke(app, args, env={"COLUMNS": "200"})
        assert result.exit_code == 1
        assert "regimen.route" in result.output and "line " in result.output
        assert "Traceback" not in result.output
    assert not (tmp_path / "s" / "protocol.yaml").exists()


def test_status_of_missing_study(tmp_path):
    result = runner.invoke(app, ["status", str(tmp_path / "nothing")])
    assert result.exit_code == 1 and "not a study directory" in result.output


def test_protocols_and_check(tmp_path):
    listed = runner.invoke(app, ["protocols"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0 and DEFAULT_PROTOCOL in listed.output
    good = tmp_path / "good.yaml"
    good.write_text(builtin_protocol_text(DEFAULT_PROTOCOL))
    checked = runner.invoke(app, ["check-protocol", str(good)], env={"COLUMNS": "200"})
    assert checked.exit_code == 0 and "valid" in checked.output
    assert "study days 0, 3, 6" in checked.output


def test_demo_with_more_subjects_and_seed(tmp_path):
    result = runner.invoke(
        app, ["demo", "--out", str(tmp_path / "d"), "--subjects", "7", "--seed", "3"]
    )
    assert result.exit_code == 0, result.output
    assert "7 subjects" in result.output
    bad = runner.invoke(app, ["demo", "--out", str(tmp_path / "e"), "--subjects", "0"])
    assert bad.exit_code == 1 and "at least 1" in bad.output


def test_analysis_commands_on_the_demo(demo_dir, tmp_path):
    safety = runner.invoke(app, ["safety", str(demo_dir)], env={"COLUMNS": "200"})
    assert safety.exit_code == 0, safety.output
    assert "Safety overview (N = 5)" in safety.output
    # vital-sign signals in words with their units, as the report shows them
    signal_rows = [line for line in safety.output.splitlines() if "systolic BP drop" in line]
    assert signal_rows and "mmHg" in signal_rows[0], safety.output
    assert "sysbp_drop" not in safety.output and "degC" not in safety.output
    efficacy = runner.invoke(
        app,
        ["efficacy", str(demo_dir), "--test", "CRP", "--figures", str(tmp_path / "fig")],
        env={"COLUMNS": "200"},
    )
    assert efficacy.exit_code == 0, efficacy.output
    assert "CRP" in efficacy.output
    # the caveats and the Holm family in words, as the report says them
    assert "column 'smallest possible p'" in efficacy.output
    for internal in ("min_p_value", "ci_level", "DDIMER", "CD1656"):
        assert internal not in efficacy.output, internal
    written = sorted(p.name for p in (tmp_path / "fig").iterdir())
    assert written == ["CRP.png", "CRP.svg", "overview.png", "overview.svg"]
    report = runner.invoke(app, ["report", str(demo_dir), "--out", str(tmp_path / "r.html")])
    assert report.exit_code == 0, report.output
    assert (tmp_path / "r.html").stat().st_size > 100_000
    # its stages, each with the time it took (no PDF stage for HTML)
    for stage in ("read study data", "analyse and draw", "write HTML"):
        assert re.search(rf"{stage}[^\n]*: \d+\.\d s", report.output), report.output
    assert "write PDF" not in report.output
    bad = runner.invoke(app, ["report", str(demo_dir), "--format", "docx"])
    assert bad.exit_code == 1 and "unknown report format 'docx'" in bad.output


def test_a_defect_is_one_message_and_a_file_of_details(demo_dir, tmp_path, monkeypatch):
    import tempfile

    import celltrial.overview
    from celltrial.cli_support import DEBUG_ENV, INTERNAL_ERROR_STATUS

    def broken(*args, **kwargs):
        raise RuntimeError("boom [/] in the overview")

    monkeypatch.setattr(celltrial.overview, "summarize_study", broken)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    result = runner.invoke(app, ["status", str(demo_dir)], env={"COLUMNS": "300"})
    assert result.exit_code == INTERNAL_ERROR_STATUS
    assert "Traceback" not in result.output
    assert "internal error: celltrial could not finish this command (RuntimeError: boom [/]" in (
        result.output
    )
    (saved,) = tmp_path.glob("celltrial-error-*.txt")
    assert str(saved) in result.output.replace("\n", "")
    details = saved.read_text(encoding="utf-8")
    assert "Traceback" in details and "boom [/] in the overview" in details


def test_a_real_process_prints_one_message_and_exits_1(tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "CELLTRIAL_DEBUG"}
    done = subprocess.run(
        [sys.executable, "-m", "celltrial.cli", "status", str(tmp_path / "nowhere")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stdout == "" and done.stderr.startswith("error:") and "not a study" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("code", "said"),
    [
        (errno.ENOSPC, "no space left on the disk writing"),
        (errno.EACCES, "permission denied writing"),
    ],
)
def test_a_full_disk_is_one_message_not_a_traceback(demo_dir, tmp_path, monkeypatch, code, said):
    import celltrial.overview

    def full(*args, **kwargs):
        raise OSError(code, "No space left on device", str(tmp_path / "out.html"))

    monkeypatch.setattr(celltrial.overview, "summarize_study", full)
    result = runner.invoke(app, ["status", str(demo_dir)], env={"COLUMNS": "300"})
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert f"error: {said} {tmp_path / 'out.html'}; the command stopped" in result.output
