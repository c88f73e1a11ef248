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
    assert "nothing was stored" in result.output
    assert "row 2, column subject_id: 'S404' — subject not in the study" in result.output


def test_dry_run_prints_the_counts_the_import_then_reports(study, write):
    path = write(
        "labs.csv",
        HEADER + "S001,2020-02-10 08:00,CRP,12,mg/L\nP01,2020-02-10 08:00,CRP,30,mg/L\n",
    )
    command = ["import", str(study.directory), str(path), "--db", study.url]
    command += ["--register-subjects", "--cohort", ""]
    dry = runner.invoke(app, [*command, "--dry-run"])
    real = runner.invoke(app, command)
    assert dry.exit_code == 0 and real.exit_code == 0, dry.output + real.output
    counts = "2 new, 0 updated (audited), 0 unchanged results; 1 new subject"
    dry_text, real_text = (" ".join(r.output.split()) for r in (dry, real))
    # (the file's path may be wrapped over lines: looked for apart)
    assert dry_text.count("would import") == 1 and "nothing was stored (dry run)" in dry_text
    assert f"(long) into the study's own subjects: {counts} to register;" in dry_text
    assert real_text.count("imported") == 1
    assert f"(long) into the study's own subjects: {counts} registered;" in real_text
