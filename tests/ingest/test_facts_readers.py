"""Subject facts from wide files, long files and FHIR bundles (issue 22): sex, age or birth
date, height, weight, admission, discharge, death. A value that cannot be read or is
implausible is a warning naming its row and column (left empty), never silently dropped; a
death without a readable date is an error."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select

from celltrial.ingest import ImportRefused, import_file
from celltrial.ingest.fhir import read_fhir
from celltrial.ingest.long import read_long, read_long_chunks
from celltrial.ingest.mapping import Mapping
from celltrial.ingest.report import ValidationReport
from celltrial.ingest.wide import read_wide
from celltrial.store.models import Subject
from tests.ingest.conftest import LABS

ZONE = "Asia/Shanghai"
WIDE_HEADER = (
    "PATIENT_ID,RE_DATE,gender,age,birth_date,height,weight,Admission time,Discharge time,"
    "outcome,CRP"
)


def wide(tmp_path: Path, *lines: str, name: str = "wide.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join([WIDE_HEADER, *lines]) + "\n", encoding="utf-8")
    return path


def read(path: Path, mapping: Mapping | None = None):
    report = ValidationReport(file=str(path))
    raw, info = read_wide(path, mapping or Mapping(), report, zone=ZONE)
    return raw, info.set_index("subject"), report.messages


def messages_of(messages: pd.DataFrame, kind: str) -> pd.DataFrame:
    return messages[messages["kind"] == kind]


# --- wide files --------------------------------------------------------------------------------


def test_wide_facts_are_read_and_converted(tmp_path):
    path = wide(
        tmp_path,
        "A,2020-02-10 08:00,F,61,,162,58.5,2020-02-01 09:00,2020-03-01 10:00,0,12",
        "B,2020-02-10 08:00,male,,1960-05-10,175,80,2020-02-01 09:00,2020-03-01 10:00,0,12",
        "C,2020-02-12 08:00,女,,1960-05-10,,,,,0,12",
    )
    _raw, info, messages = read(path)
    assert info.loc["A", ["sex", "age", "height_cm", "weight_kg"]].tolist() == ["F", 61, 162, 58.5]
    assert info.loc["B", "sex"] == "M" and info.loc["B", "age"] == 59  # at admission
    assert info.loc["C", "sex"] == "F" and info.loc["C", "age"] == 59  # at its first result
    assert math.isnan(info.loc["C", "height_cm"])
    assert info.loc["A", "admitted"] == pd.Timestamp("2020-02-01 01:00", tz="UTC")
    assert messages_of(messages, "bad_subject_fact").empty


def test_unreadable_and_implausible_facts_are_warnings_by_row_and_column(tmp_path):
    path = wide(
        tmp_path,
        "A,2020-02-10 08:00,X,sixty,,500,70,2020-02-01,2020-03-01,0,12",
        "B,2020-02-10 08:00,M,61,,170,0.01,2020-02-01,2020-03-01,0,12",
        "C,2020-02-10 08:00,F,-3,31/02/1960,170,70,2020-02-01,2020-03-01,0,12",
    )
    _raw, info, messages = read(path)
    bad = messages_of(messages, "bad_subject_fact")
    assert set(bad["severity"]) == {"warning"}
    found = set(zip(bad["row"], bad["column"], bad["value"], strict=True))
    assert found == {
        (2, "gender", "X"),
        (2, "age", "sixty"),
        (2, "height", "500"),
        (3, "weight", "0.01"),
        (4, "age", "-3"),
        (4, "birth_date", "31/02/1960"),
    }
    assert info.loc["A", "sex"] is None and math.isnan(info.loc["A", "age"])
    assert math.isnan(info.loc["A", "height_cm"]) and info.loc["A", "weight_kg"] == 70
    assert math.isnan(info.loc["B", "weight_kg"]) and math.isnan(info.loc["C", "age"])


def test_a_fact_repeated_on_every_row_is_named_once(tmp_path):
    path = wide(
        tmp_path,
        "A,2020-02-10 08:00,X,61,,,,2020-02-01,2020-03-01,0,12",
        "A,2020-02-11 08:00,X,61,,,,2020-02-01,2020-03-01,0,9",
    )
    _raw, _info, messages = read(path)
    assert messages_of(messages, "bad_subject_fact")["row"].tolist() == [2]


def test_sex_codes_1_2_are_assumed_with_a_warning_unless_mapped(tmp_path):
    path = wide(
        tmp_path,
        "A,2020-02-10 08:00,1,61,,,,2020-02-01,2020-03-01,0,12",
        "B,2020-02-10 08:00,2,61,,,,2020-02-01,2020-03-01,0,12",
    )
    _raw, info, messages = read(path)
    assert info["sex"].tolist() == ["M", "F"]
    assumed = messages_of(messages, "assumption")
    assert (assumed["value"] == "codes 1/2").sum() == 1
    _raw, info, messages = read(path, Mapping(sex_codes={"1": "F", "2": "M"}))
    assert info["sex"].tolist() == ["F", "M"]
    assert not (messages_of(messages, "assumption")["value"] == "codes 1/2").any()


def test_subject_rows_that_disagree_are_a_warning_naming_them(tmp_path):
    path = wide(
        tmp_path,
        "A,2020-02-10 08:00,F,61,,160,70,2020-02-01,2020-03-01,0,12",
        "A,2020-02-11 08:00,F,61,,160,72,2020-02-01,2020-03-01,0,9",
    )
    _raw, info, messages = read(path)
    assert info.loc["A", "weight_kg"] == 70  # the first
    differ = messages_of(messages, "subject_inconsistent")
    assert differ[["row", "column", "value"]].values.tolist() == [[3, "weight", "72"]]
    assert "'70' (row 2)" in differ["expected"].iloc[0]


def test_outcome_died_gives_the_death_at_discharge(tmp_path):
    path = wide(tmp_path, "A,2020-02-10 08:00,F,61,,,,2020-02-01,2020-03-01 10:00,1,12")
    _raw, info, _messages = read(path)
    assert info.loc["A", "died"] == pd.Timestamp("2020-03-01 02:00", tz="UTC")
    assert pd.isna(info.loc["A", "discharged"])


def test_death_without_a_date_is_an_error_by_row(study, tmp_path):
    path = wide(tmp_path, "A,2020-02-10 08:00,F,61,,,,2020-02-01,,1,12")
    with pytest.raises(ImportRefused) as refused:
        import_file(study, path, register=True, cohort="w")
    errors = refused.value.report.errors
    assert errors[["kind", "row", "column"]].values.tolist() == [["bad_time", 2, "Discharge time"]]
    assert "says died" in errors["expected"].iloc[0]


def test_an_invalid_death_date_is_an_error_by_row(study, tmp_path):
    path = tmp_path / "died.csv"
    path.write_text(
        "PATIENT_ID,RE_DATE,Admission time,died,CRP\n"
        "A,2020-02-10 08:00,2020-02-01,2020-02-31,12\n"
        "B,2020-02-10 08:00,2020-02-01,2020-02-20,12\n",
        encoding="utf-8",
    )
    with pytest.raises(ImportRefused) as refused:
        import_file(study, path, register=True, cohort="w")
    errors = refused.value.report.errors
    assert errors[["kind", "row", "column", "value"]].values.tolist() == [
        ["bad_time", 2, "died", "2020-02-31"]
    ]


def test_wide_facts_are_stored_end_to_end(study, tmp_path):
    path = wide(
        tmp_path,
        "A,2020-02-10 08:00,1,,1960-05-10,,,2020-02-01 09:00,2020-03-01,0,12",
        "B,2020-02-10 08:00,2,sixty,,,,2020-02-01 09:00,2020-03-01,0,12",
    )
    result = import_file(study, path, register=True, cohort="w")
    assert result.report.ok and result.counts["subjects"] == 2
    with study.engine.connect() as connection:
        rows = connection.execute(
            select(Subject.code, Subject.sex, Subject.age).where(Subject.cohort == "w")
        ).all()
    assert sorted(rows) == [("A", "M", 59.0), ("B", "F", None)]


# --- long files --------------------------------------------------------------------------------

LONG_HEADER = "subject_id,time,test,value,unit,sex,age,date_of_birth,weight,admission_time"


def long_file(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "long.csv"
    path.write_text("\n".join([LONG_HEADER, *lines]) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("chunk_rows", [1, 2, 1000])
def test_long_facts_one_row_per_subject_first_value_given(tmp_path, chunk_rows):
    path = long_file(
        tmp_path,
        "A,2020-02-10 08:00,CRP,12,mg/L,,,,,2020-02-01 09:00",
        "A,2020-02-11 08:00,CRP,9,mg/L,F,61,,70,2020-02-01 09:00",
        "B,2020-02-10 08:00,CRP,12,mg/L,M,,1960-05-10,,",
        "A,2020-02-12 08:00,CRP,8,mg/L,M,61,,70,2020-02-01 09:00",
    )
    report = ValidationReport(file=str(path))
    chunks, info = read_long(path, Mapping(), report, zone=ZONE, chunk_rows=chunk_rows)
    assert sum(len(c) for c in chunks) == 4
    info = info.set_index("subject")
    assert list(info.index) == ["A", "B"]
    assert info.loc["A", ["sex", "age", "weight_kg"]].tolist() == ["F", 61, 70]
    assert info.loc["A", "source_row"] == 2
    assert info.loc["B", "age"] == 59  # at its first result (no admission)
    differ = messages_of(report.messages, "subject_inconsistent")
    assert differ[["row", "column", "value"]].values.tolist() == [[5, "sex", "M"]]


def test_long_facts_from_a_workbook_and_a_mapping(tmp_path):
    from openpyxl import Workbook

    book = Workbook()
    book.active.append(["ID", "When", "Analyte", "Result", "Unit", "Geschlecht", "Gewicht"])
    book.active.append(["007", "2020-02-10 08:00", "CRP", 12, "mg/L", "w", 700])
    book.active.append(["007", "2020-02-11 08:00", "CRP", 9, "mg/L", "w", 64])
    path = tmp_path / "long.xlsx"
    book.save(path)
    mapping = Mapping(
        layout="long",
        columns={
            "subject": "ID",
            "time": "When",
            "test": "Analyte",
            "value": "Result",
            "unit": "Unit",
            "sex": "Geschlecht",
            "weight": "Gewicht",
        },
        sex_codes={"w": "F", "m": "M"},
    )
    report = ValidationReport(file=str(path))
    chunks, info = read_long(path, mapping, report, zone=ZONE)
    assert len(next(chunks)) == 2
    assert info[["subject", "sex", "weight_kg"]].values.tolist() == [["007", "F", 64.0]]
    bad = messages_of(report.messages, "bad_subject_fact")
    assert bad[["row", "column", "value"]].values.tolist() == [[2, "Gewicht", "700"]]


def test_long_file_without_fact_columns_reads_as_before(tmp_path):
    path = tmp_path / "plain.csv"
    path.write_text("subject_id,time,test,value,unit\nA,2020-02-10,CRP,1,mg/L\n", encoding="utf-8")
    report = ValidationReport(file=str(path))
    chunks, info = read_long(path, Mapping(), report, zone=ZONE)
    assert info.empty and len(next(chunks)) == 1
    assert len(next(read_long_chunks(path, Mapping()))) == 1


# --- FHIR --------------------------------------------------------------------------------------


def patient(**fields) -> dict:
    return {"resourceType": "Patient", "id": "p-1", "gender": "female"} | fields


def observation(code: str, when: str, value: float, unit: str, **extra) -> dict:
    return {
        "resourceType": "Observation",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": "Patient/p-1"},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": unit, "code": unit},
    } | extra


def encounter(kind: str, start: str, end: str, ident: str = "e-1") -> dict:
    return {
        "resourceType": "Encounter",
        "id": ident,
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": kind},
        "subject": {"reference": "Patient/p-1"},
        "period": {"start": start, "end": end},
    }


def read_bundle(tmp_path: Path, *resources: dict):
    path = tmp_path / "bundle.json"
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in resources],
    }
    path.write_text(json.dumps(bundle), encoding="utf-8")
    report = ValidationReport(file=str(path))
    raw, info = read_fhir(path, Mapping(), report, zone="UTC")
    return raw, info.set_index("subject"), report.messages


def test_fhir_facts_at_the_hospital_admission(tmp_path):
    raw, info, messages = read_bundle(
        tmp_path,
        patient(birthDate="1960-05-10"),
        encounter("AMB", "2019-01-01T10:00:00Z", "2019-01-01T11:00:00Z", "e-0"),
        encounter("IMP", "2020-02-01T10:00:00Z", "2020-02-20T10:00:00Z"),
        observation("29463-7", "2020-01-15T08:00:00Z", 150, "[lb_av]"),
        observation("29463-7", "2020-02-05T08:00:00Z", 70, "kg"),
        observation("29463-7", "2019-01-01T08:00:00Z", 90, "kg"),
        observation("8302-2", "2020-02-03T08:00:00Z", 1.7, "m"),
        observation("1988-5", "2020-02-02T08:00:00Z", 25, "mg/L"),
    )
    facts = info.loc["p-1"]
    assert facts["sex"] == "F" and facts["age"] == 59  # at admission 2020-02-01
    assert facts["weight_kg"] == pytest.approx(150 * 0.45359237)  # last at or before admission
    assert facts["height_cm"] == pytest.approx(170.0)  # none before: the first after
    assert facts["admitted"] == pd.Timestamp("2020-02-01 10:00", tz="UTC")
    assert facts["discharged"] == pd.Timestamp("2020-02-20 10:00", tz="UTC")
    assert raw["test"].tolist() == ["CRP"]  # body size is a fact, not a result
    assert messages.empty


def test_fhir_without_a_hospital_stay_counts_from_the_first_result(tmp_path):
    _raw, info, _messages = read_bundle(
        tmp_path,
        patient(birthDate="2015-10-20", gender="male"),
        encounter("AMB", "2015-10-20T10:00:00Z", "2015-10-20T11:00:00Z", "e-0"),
        observation("8302-2", "2020-03-07T08:00:00Z", 40, "[in_i]"),
        observation("1988-5", "2020-03-07T08:00:00Z", 25, "mg/L"),
    )
    facts = info.loc["p-1"]
    assert facts["age"] == 4 and facts["sex"] == "M"
    assert facts["height_cm"] == pytest.approx(101.6)
    assert pd.isna(facts["admitted"])


def test_fhir_facts_that_cannot_be_used_are_warnings(tmp_path):
    _raw, info, messages = read_bundle(
        tmp_path,
        patient(birthDate="1960", gender="other"),
        observation("29463-7", "2020-01-15T08:00:00Z", 7000, "kg"),
        observation("8302-2", "2020-01-15T08:00:00Z", 170, "mmHg"),
        observation("1988-5", "2020-02-02T08:00:00Z", 25, "mg/L"),
    )
    facts = info.loc["p-1"]
    assert facts[["sex", "age", "weight_kg", "height_cm"]].isna().all()
    bad = messages_of(messages, "bad_subject_fact")
    assert set(bad["column"]) == {
        "gender",
        "birthDate",
        "entry 2 (weight_kg)",
        "entry 3 (height_cm)",
    }
    assert set(bad["severity"]) == {"warning"}


@pytest.mark.skipif(
    not (LABS / "fhir-synthea").is_dir(), reason=f"real data set absent: {LABS / 'fhir-synthea'}"
)
def test_synthea_patient_facts(tmp_path):
    path = next((LABS / "fhir-synthea").glob("*.json"))
    report = ValidationReport(file=str(path))
    _raw, info = read_fhir(path, Mapping(), report, zone="UTC")
    facts = info.iloc[0]
    # born 2015-10-20, results on 2020-03-07 (ambulatory visits only: no admission)
    assert (facts["sex"], facts["age"], facts["weight_kg"]) == ("M", 4.0, 16.1)
    assert pd.isna(facts["admitted"]) and math.isnan(facts["height_cm"])
    assert report.messages.empty
