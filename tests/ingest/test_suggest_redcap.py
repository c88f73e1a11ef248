"""--suggest-mapping, REDCap (hand-made and the real demo project), XLSX long, CSV wide and
duplicates across chunks of a large file."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml
from sqlalchemy import select
from typer.testing import CliRunner

from celltrial.cli import app
from celltrial.ingest import import_file
from celltrial.ingest.mapping import read_mapping
from celltrial.ingest.redcap import cast_records, parse_choices, read_redcap_project
from celltrial.store.models import Observation, Subject
from celltrial.study import init_study
from tests.ingest.conftest import LABS

REDCAP = LABS / "redcap-longitudinal"
DICTIONARY = (
    "Variable / Field Name,Form Name,Field Type,Field Label,"
    '"Choices, Calculations, OR Slider Labels",Text Validation Type OR Show Slider Number,'
    "Identifier?\n"
    "record_id,demo,text,Record ID,,,\n"
    "name,demo,text,Name,,,y\n"
    'sex,demo,radio,Sex,"0, Female | 1, Male",,\n'
    'symptoms,demo,checkbox,Symptoms,"1, Fever | 2, Cough",,\n'
    "bmi,demo,calc,BMI,round([w]/[h]^2),,\n"
    "draw_date,labs,text,Date of blood draw,,datetime_ymd,\n"
    "crp,labs,text,C-reactive protein (mg/dL),,number,\n"
    "kt_v,labs,text,Kt/V,,number,\n"
)
RECORDS = (
    "record_id,redcap_event_name,redcap_repeat_instrument,redcap_repeat_instance,name,sex,"
    "symptoms___1,symptoms___2,bmi,draw_date,crp,kt_v\n"
    "R001,baseline_arm_1,,,Alice,0,1,0,22.5,,,\n"
    "R001,baseline_arm_1,labs,1,,,,,,2020-02-10 08:00,1.5,1.2\n"
    "R001,baseline_arm_1,labs,2,,,,,,2020-02-11 08:00,<0.5,\n"
    "R001,baseline_arm_1,labs,3,,,,,,,2.0,\n"
    "R002,baseline_arm_1,,,Bob,7,0,1,,,,\n"
)


@pytest.fixture
def redcap_dir(tmp_path):
    folder = tmp_path / "rc"
    folder.mkdir()
    (folder / "dictionary.csv").write_text(DICTIONARY, encoding="utf-8")
    (folder / "data.csv").write_text(RECORDS, encoding="utf-8")
    return folder


def test_choices_are_parsed():
    assert parse_choices("0, Female | 1, Male") == {"0": "Female", "1": "Male"}
    assert parse_choices(None) == {}


def test_redcap_types_are_cast_from_the_dictionary(redcap_dir):
    project = read_redcap_project(redcap_dir)
    cast = cast_records(project, zone="UTC")
    assert "name" not in cast.columns  # identifier never read
    assert cast.loc[0, "sex"] == "Female" and pd.isna(cast.loc[4, "sex"])  # 7 is no choice
    assert cast.loc[0, "symptoms___1"] is True and cast.loc[4, "symptoms___2"] is True
    assert cast.loc[0, "bmi"] == 22.5
    assert cast.loc[1, "draw_date"] == pd.Timestamp("2020-02-10 08:00", tz="UTC")


def test_redcap_repeating_instrument_imports(study, redcap_dir):
    result = import_file(study, redcap_dir, register=True, cohort="rc")
    kinds = result.report.by_kind().set_index("kind")["count"]
    assert kinds["bad_choice"] == 1  # sex 7
    assert kinds["column_ignored"] == 2  # BMI (calc) and Kt/V: numbers, not catalogue tests
    assert kinds["no_time"] == 1  # instance 3 has no draw date: reported, never guessed
    assert result.report.counts == {"results": 5, "stored": 2, "flagged": 0, "reported": 3}
    with study.engine.connect() as connection:
        rows = connection.execute(
            select(Observation.value, Observation.qualifier).order_by(Observation.time)
        ).all()
        sexes = dict(connection.execute(select(Subject.code, Subject.sex)).all())
    assert rows == [(15.0, ""), (5.0, "<")]  # mg/dL × 10
    assert sexes["R001"] == "F"


@pytest.mark.skipif(not REDCAP.is_dir(), reason=f"real data set absent: {REDCAP}")
def test_real_redcap_demo_project_imports_with_every_value_accounted_for(tmp_path):
    study = init_study(tmp_path / "study", user="tester")
    result = import_file(study, REDCAP, register=True, cohort="redcap", user="tester")
    assert result.counts["subjects"] == 3
    # creat_4 is typed as a date in the dictionary: a date field, never a result; height and
    # weight are subject facts
    assert result.report.counts == {"results": 85, "stored": 7, "flagged": 3, "reported": 75}
    kinds = result.report.by_kind().set_index("kind")["count"]
    assert kinds["no_time"] == 16  # visit events carry no date in this project
    assert "text_result" not in kinds
    assert kinds["implausible"] == 3
    again = import_file(study, REDCAP / "data.csv", register=True, cohort="redcap")
    assert again.counts["inserted"] == 0 and again.counts["unchanged"] == 10


def test_suggest_mapping_writes_a_valid_mapping(study, write, tmp_path):
    path = write(
        "odd.csv",
        "subject_id,time,Hs-CRP,Lymphocyte count,Mystery score\nS001,2020-02-10 08:00,12,0.8,3\n",
    )
    out = tmp_path / "proposal.yaml"
    run = CliRunner().invoke(
        app, ["import", str(study.directory), str(path), "--suggest-mapping", "--mapping", str(out)]
    )
    assert run.exit_code == 0, run.output
    assert "Mystery score" in run.output
    text = out.read_text(encoding="utf-8")
    assert "confidence" in text and "NOT RECOGNISED" in text
    mapping = read_mapping(out)
    assert mapping.test_for("Hs-CRP").test == "HSCRP"
    assert mapping.test_for("Mystery score") is None
    assert yaml.safe_load(text)["layout"] == "wide"


def test_long_xlsx_and_wide_csv_import(study, tmp_path):
    pytest.importorskip("openpyxl")
    long = pd.DataFrame(
        {
            "subject_id": ["S001", "S001"],
            "time": [pd.Timestamp("2020-02-10 08:00"), pd.Timestamp("2020-02-10 08:00")],
            "test": ["CRP", "IL-6"],
            "value": [1.5, "<1.5"],
            "unit": ["mg/dL", "pg/mL"],
        }
    )
    long.to_excel(tmp_path / "long.xlsx", index=False)
    result = import_file(study, tmp_path / "long.xlsx")
    assert result.layout == "long" and result.counts["inserted"] == 2
    (tmp_path / "wide.csv").write_text(
        "PATIENT_ID,RE_DATE,hs-CRP (mg/L),Interleukin 6\n"
        "S002,2020-02-12 09:00,12,\n,2020-02-13 09:00,8,30\n",
        encoding="utf-8",
    )
    result = import_file(study, tmp_path / "wide.csv")
    assert result.layout == "wide"
    assert result.report.counts["results"] == 3, result.report.messages
    assert result.counts["inserted"] == 3, result.report.messages.to_string()
    with study.engine.connect() as connection:
        values = connection.execute(
            select(Observation.test, Observation.value, Observation.qualifier).order_by(
                Observation.id
            )
        ).all()
    assert ("CRP", 15.0, "") in values and ("IL6", 1.5, "<") in values


def test_duplicates_across_chunks_are_caught(study, write, monkeypatch):
    from celltrial.ingest import long

    monkeypatch.setattr(long, "CHUNK_ROWS", 2)
    original = long.read_long_chunks
    monkeypatch.setattr(
        "celltrial.ingest.long.read_long_chunks",
        lambda path, mapping, chunk_rows=None, subjects=None: original(
            path, mapping, chunk_rows=2, subjects=subjects
        ),
    )
    path = write(
        "dups.csv",
        "subject_id,time,test,value,unit\n"
        "S001,2020-02-10 08:00,CRP,12,mg/L\n"
        "S001,2020-02-10 09:00,CRP,13,mg/L\n"
        "S001,2020-02-10 08:00,CRP,12,mg/L\n"  # same as row 2: stored once
        "S001,2020-02-10 09:00,CRP,14,mg/L\n",  # conflicts with row 3: neither kept
    )
    result = import_file(study, path)
    assert result.report.counts == {"results": 4, "stored": 1, "flagged": 0, "reported": 3}
    assert result.report.balanced()
    with study.engine.connect() as connection:
        rows = connection.execute(select(Observation.value, Observation.source_row)).all()
    assert rows == [(12.0, 2)]
