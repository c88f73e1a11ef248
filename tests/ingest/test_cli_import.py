"""``celltrial import`` end to end: report table, exit codes, no traceback on refusal."""

from __future__ import annotations

from typer.testing import CliRunner

from celltrial.cli import app

runner = CliRunner()
HEADER = "subject_id,time,test,value,unit\n"


def test_import_prints_the_report_and_counts(study, write):
    path = write("labs.csv", HEADER + "S001,2020-02-10 08:00,CRP,12,mg/L\n")
    result = runner.invoke(app, ["import", str(study.directory), str(path), "--db", study.url])
    assert result.exit_code == 0, result.output
    assert "1 new" in result.output
    again = runner.invoke(app, ["import", str(study.directory), str(path), "--db", study.url])
    assert "0 new" in again.output and "1 unchanged" in again.output


def test_refused_import_exits_1_without_traceback(study, write):
    path = write("bad.csv", HEADER + "S404,2020-02-10 08:00,CRP,12,mg/L\n")
    result = runner.invoke(app, ["import", str(study.directory), str(path), "--db", study.url])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "unknown_subject" in result.output and "nothing was stored" in result.output
