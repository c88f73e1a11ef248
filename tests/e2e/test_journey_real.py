"""The first-day journey on the real files of ``../shared/data/labs`` (read in place): every real
export imported into a new study and into the demo, then every command that reads a study. Each
command ends with status 0, or with status 1 and one message; never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.test_journey import read_commands, run
from tests.ingest.conftest import LABS

pytestmark = [
    pytest.mark.skipif(
        not (LABS / "tongji").is_dir(),
        reason=f"real data sets absent: {LABS} (see shared/data/README.md)",
    ),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]
TONGJI = LABS / "tongji" / "time_series_375_prerpocess_en.xlsx"


def real_exports() -> list[tuple[Path, str]]:
    """(file or folder, cohort) of every real lab export present."""
    found = [(TONGJI, "tongji"), (LABS / "tongji" / "time_series_375_prerpocess.xlsx", "tongji")]
    if (LABS / "redcap-longitudinal").is_dir():
        found.append((LABS / "redcap-longitudinal", "redcap"))
    found += [(path, "fhir") for path in sorted((LABS / "fhir-synthea").glob("*.json"))]
    found += [(path, "olink") for path in sorted((LABS / "olink").glob("*.csv"))]
    return [(path, cohort) for path, cohort in found if path.exists()]


def test_a_new_study_with_the_real_tongji_export(tmp_path):
    study = tmp_path / "study"
    run("init", study, expect="ok")
    for _ in range(2):  # importing twice changes nothing the second time
        run("import", study, TONGJI, "--register-subjects", "--cohort", "tongji", expect="ok")
    outputs = read_commands(study, tmp_path, cohort="tongji")
    assert "no treated subject yet" in outputs["external"]


def test_the_demo_with_every_real_export(tmp_path):
    study = tmp_path / "demo"
    run("demo", "--out", study, expect="ok")
    for path, cohort in real_exports():
        run("import", study, path, "--register-subjects", "--cohort", cohort)
    outputs = read_commands(study, tmp_path, cohort="tongji")
    assert "external comparison against cohort 'tongji'" in outputs["external"]
    run("report", study, "--format", "both", "--out", tmp_path / "both", expect="ok")
    assert (tmp_path / "both" / "report.pdf").exists()
