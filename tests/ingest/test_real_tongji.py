"""The real Tongji LIS export (English and Chinese headers) imports, every result accounted for."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import func, select

from celltrial.ingest import import_file
from celltrial.store.models import Observation, Subject
from celltrial.study import init_study
from tests.ingest.conftest import LABS

TONGJI = LABS / "tongji"
FILES = ("time_series_375_prerpocess_en.xlsx", "time_series_375_prerpocess.xlsx")

pytestmark = [
    pytest.mark.skipif(
        not TONGJI.is_dir(), reason=f"real data set absent: {TONGJI} (see shared/data/README.md)"
    ),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]


def _non_empty_results(path) -> int:
    table = pd.read_excel(path)
    return int(table.iloc[:, 7:].notna().sum().sum())


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    pytest.importorskip("openpyxl", reason="reading XLSX needs openpyxl")
    study = init_study(tmp_path_factory.mktemp("tongji") / "study", user="tester")
    results = [
        import_file(study, TONGJI / name, register=True, cohort="tongji", user="tester")
        for name in FILES
    ]
    return study, results


def test_every_result_is_stored_flagged_or_reported(imported):
    _study, results = imported
    for name, result in zip(FILES, results, strict=True):
        counts = result.report.counts
        assert counts["results"] == _non_empty_results(TONGJI / name) == 55731
        assert counts["stored"] + counts["flagged"] + counts["reported"] == counts["results"]
        assert counts == {"results": 55731, "stored": 51123, "flagged": 1437, "reported": 3171}


def test_quirks_are_reported(imported):
    _study, results = imported
    for result in results:
        kinds = result.report.by_kind().set_index(["severity", "kind"])["count"]
        assert kinds[("warning", "other_specimen")] == 615  # urinalysis pH, WBC, RBC
        assert kinds[("warning", "sentinel")] == 4  # platelets -1
        assert kinds[("warning", "censored")] == 999  # D-dimer 21, LDH 1867, IL-6 1.5/5000…
        # 453 results on 48 draws (rows) after discharge: one message per row, on its time
        assert kinds[("warning", "after_discharge")] == 48
        assert kinds[("warning", "column_ignored")] == 6  # serology, nCoV PCR, eGFR
        assert result.report.errors.empty


def test_both_languages_give_the_same_rows_and_reimport_adds_nothing(imported):
    study, (english, chinese) = imported
    assert english.counts["subjects"] == 375 and english.counts["inserted"] == 52560
    assert chinese.counts == {
        "inserted": 0,
        "updated": 0,
        "unchanged": 52560,
        "subjects": 0,
        "subjects_updated": 0,
    }
    with study.engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(Subject)) == 375
        assert connection.scalar(select(func.count()).select_from(Observation)) == 52560
        ceiling = connection.scalar(
            select(func.count()).where(
                Observation.test == "DDIMER",
                Observation.value == 21.0,
                Observation.qualifier == ">=",
            )
        )
    assert ceiling == 172


def test_a_second_export_numbered_alike_is_a_second_cohort(imported):
    study, _ = imported
    second = import_file(
        study, TONGJI / FILES[0], register=True, cohort="tongji-2", dry_run=True, user="tester"
    )
    assert second.counts["subjects"] == 375
    assert second.counts["inserted"] == 52560
    assert second.counts["updated"] == second.counts["unchanged"] == 0
    kinds = second.report.messages["kind"]
    assert (kinds == "subject_in_other_cohort").sum() == 375


def test_an_outcome_changed_to_died_is_an_audited_update(imported, tmp_path):
    study, _ = imported
    table = pd.read_excel(TONGJI / FILES[0])
    patient = table["PATIENT_ID"].ffill()
    survivor = patient[table["outcome"].eq(0)].iloc[0]
    table.loc[patient == survivor, "outcome"] = 1
    table["PATIENT_ID"] = table["PATIENT_ID"].astype("Int64")  # as in the sheet: 1, not 1.0
    path = tmp_path / "tongji-corrected.csv"
    table.to_csv(path, index=False)
    result = import_file(study, path, cohort="tongji", dry_run=True, user="tester")
    assert result.counts["subjects_updated"] == 1
    assert result.counts["inserted"] == result.counts["updated"] == 0
    changes = result.report.messages
    changes = changes[changes["kind"] == "subject_fact_changed"]
    assert set(changes["column"]) == {"discharged", "died"}
    died = changes[changes["column"] == "died"]["value"].iloc[0]
    assert died.startswith(f"{int(survivor)}: empty → 2020-")
