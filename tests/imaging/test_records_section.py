"""`celltrial ct DIR SCAN...` into a study, audited; demo scans; the report's CT section."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from celltrial.imaging.command import app
from celltrial.imaging.demo import compute_lesion_factor, write_demo_scan
from celltrial.imaging.records import parse_scan_name, parse_scan_time
from celltrial.store.frames import read_ct_results
from celltrial.store.models import AuditEvent


def test_scan_names_and_times():
    assert parse_scan_name("S001_2020-02-06T0020.nii.gz") == ("S001", "2020-02-06T00:20")
    assert parse_scan_name("P-7_2021-01-02.nii") == ("P-7", "2021-01-02")
    assert parse_scan_name("scan.nii.gz") is None
    noon = parse_scan_time("2020-02-06", zone="Asia/Shanghai")
    assert noon.hour == 12 and noon.utcoffset().total_seconds() == 8 * 3600
    with pytest.raises(Exception, match="YYYY-MM-DD"):
        parse_scan_time("06/02/2020", zone="UTC")


def test_lesion_factor_follows_the_clinical_course():
    assert compute_lesion_factor(4) < compute_lesion_factor(6) < compute_lesion_factor(8)
    assert compute_lesion_factor(float("nan")) > 0


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    from celltrial.cohort import simulate
    from celltrial.store.database import study_session
    from celltrial.store.loading import load_simulated_cohort
    from celltrial.study import init_study

    folder = tmp_path_factory.mktemp("ctstudy") / "study"
    handle = init_study(folder, user="tester")
    cohort = simulate(handle.protocol, 1, seed=3)
    with study_session(handle.engine, user="tester", reason="test cohort") as session:
        load_simulated_cohort(session, handle.study_id, cohort)
    return handle, cohort


def test_ct_command_stores_scans_audited_and_section_shows_them(study, tmp_path, monkeypatch):
    handle, cohort = study
    monkeypatch.setenv("CELLTRIAL_USER", "radiologist")
    first = cohort.imaging.iloc[0]
    last = cohort.imaging.iloc[-1]
    base = write_demo_scan(tmp_path / f"S001_{first['time']:%Y-%m-%dT%H%M}.nii.gz", 1.4, seed=1)
    follow = write_demo_scan(tmp_path / "follow.nii.gz", 0.6, seed=2)
    runner = CliRunner()
    result = runner.invoke(app, [str(handle.directory), str(base), "--workers", "1"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app,
        [
            str(handle.directory),
            str(follow),
            "--subject",
            "S001",
            "--date",
            f"{last['time']:%Y-%m-%d}",
            "--workers",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    stored = read_ct_results(handle.engine, handle.study_id)
    assert len(stored) == 2
    assert stored["checksum"].notna().all()
    assert stored["lesion_ml"].iloc[0] > stored["lesion_ml"].iloc[1]
    assert read_ct_results(handle.engine, handle.study_id, subject="S001").equals(stored)
    assert read_ct_results(handle.engine, handle.study_id, subject="S002").empty
    with handle.engine.connect() as connection:
        audited = connection.scalar(
            select(func.count()).where(
                AuditEvent.table_name == "ct_result", AuditEvent.user == "radiologist"
            )
        )
    assert audited == 2
    # planned CT visits are completed, not duplicated
    from celltrial.study import read_study_frames

    frames = read_study_frames(handle)
    assert len(frames.imaging) == len(cohort.imaging)
    # errors: unknown subject, nothing stored
    bad = runner.invoke(
        app, [str(handle.directory), str(follow), "--subject", "NOPE", "--date", "2020-01-01"]
    )
    assert bad.exit_code == 1 and "NOPE" in bad.output
    assert len(read_ct_results(handle.engine, handle.study_id)) == 2

    from celltrial.imaging.section import build_ct_section
    from celltrial.overview import summarize_study
    from celltrial.report.sections import ReportContext

    context = ReportContext(
        study=handle, frames=frames, overview=summarize_study(handle.protocol, frames)
    )
    # the overlays come from the views kept at quantification: no scan is segmented again
    from celltrial.imaging.records import study_views_dir, views_path

    for checksum in stored["checksum"]:
        assert views_path(study_views_dir(handle.directory), checksum).exists()

    def no_measuring(*_args, **_kwargs):
        raise AssertionError("the report segmented a scan again")

    monkeypatch.setattr("celltrial.imaging.scan.measure_scan", no_measuring)
    section = build_ct_section(context)
    assert section is not None and section.id == "chest-ct"
    assert "improved" in section.html and "data:image/png;base64," in section.html
