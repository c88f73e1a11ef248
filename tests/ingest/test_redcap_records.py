"""REDCap recognised from its records file (longitudinal or classic, the dictionary beside it found
by its header), date fields never read as results, and subject facts from the dictionary's fields
(sex through the choices, age or birth date, height, weight, admission…), on hand-made projects
and on the shared real project."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import select

from celltrial.errors import DataError
from celltrial.ingest import ImportRefused, import_file
from celltrial.ingest.frame import SUBJECT_FIELDS
from celltrial.ingest.layouts import detect_layout
from celltrial.ingest.mapping import Mapping
from celltrial.ingest.redcap import read_redcap
from celltrial.ingest.report import ValidationReport
from celltrial.store.models import Observation, Subject
from celltrial.study import init_study
from tests.ingest.conftest import LABS

REDCAP = LABS / "redcap-longitudinal"
HEADER = (
    '"Variable / Field Name","Form Name","Section Header","Field Type","Field Label",'
    '"Choices, Calculations, OR Slider Labels","Field Note",'
    '"Text Validation Type OR Show Slider Number",Identifier?\n'
)
DICTIONARY = HEADER + (
    "record_id,demo,,text,Record ID,,,,\n"
    "patient_name,demo,,text,Patient name,,,,\n"
    'gender,demo,,radio,Gender,"1, Male | 2, Female | 9, Not known",,,\n'
    "dob,demo,,text,Date of birth,,,date_ymd,y\n"
    "adm_date,demo,,text,Admission,,,date_ymd,\n"
    "ht,demo,,text,Height (in),,,number,\n"
    "wt,demo,,text,Weight (kg),,,number,\n"
    "draw_date,labs,,text,Date of blood draw,,,datetime_ymd,\n"
    "crp,labs,,text,CRP (mg/L),,,number,\n"
    "crp_date,labs,,text,Date of CRP,,,date_ymd,\n"
    "hb_when,labs,,text,Hemoglobin (g/L),,,date_ymd,\n"
    'hb_site,labs,,radio,Hemoglobin (g/L),"1, Lab | 2, Bedside",,,\n'
)
RECORDS = (
    "record_id,patient_name,gender,dob,adm_date,ht,wt,draw_date,crp,crp_date,hb_when,hb_site\n"
    "R1,Alice,2,1960-05-20,2020-02-10,65,70,2020-02-11 08:00,12,2020-02-11,2020-02-11,1\n"
    "R2,Bob,1,1950-01-01,,70,900,2020-02-12 08:00,30,,,\n"
)


def classic(tmp_path, dictionary=DICTIONARY, records=RECORDS, name="DemoProject_Dict.csv"):
    folder = tmp_path / "export"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(dictionary, encoding="utf-8")
    (folder / "DemoProject_DATA_2020-03-01.csv").write_text(records, encoding="utf-8")
    return folder / "DemoProject_DATA_2020-03-01.csv"


def read(path, mapping=None):
    report = ValidationReport(file=str(path))
    raw, subjects = read_redcap(path, mapping or Mapping(), report, zone="UTC")
    return raw, subjects, report


def test_a_classic_records_file_with_its_dictionary_beside_it_is_redcap(tmp_path):
    records = classic(tmp_path)
    assert detect_layout(records, Mapping()) == "redcap"


def test_a_table_beside_a_dictionary_of_another_project_stays_a_lab_file(tmp_path):
    records = classic(tmp_path, records="PATIENT_ID,RE_DATE,CRP\nS1,2020-02-10,5\n")
    assert detect_layout(records, Mapping()) == "wide"


def test_longitudinal_records_without_a_dictionary_are_refused_with_what_to_do(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("record_id,redcap_event_name,crp\nR1,baseline_arm_1,5\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"put the dictionary CSV .* beside the records file, pass"):
        detect_layout(path, Mapping())


def test_the_dictionary_is_found_by_its_header_not_its_name(study, tmp_path):
    records = classic(tmp_path, name="whatever.csv")
    result = import_file(study, records, register=True, cohort="rc")
    assert result.layout == "redcap"
    assert result.counts["inserted"] == 2  # CRP of R1 and R2


def test_date_and_choice_fields_named_like_labs_are_never_results(tmp_path):
    raw, _subjects, _report = read(classic(tmp_path))
    assert set(raw["column"].str.split(" ").str[0]) == {"crp"}
    assert not raw["column"].str.startswith(("hb_", "crp_date")).any()


def test_a_mapping_naming_a_date_field_as_a_test_is_an_error(tmp_path):
    mapping = Mapping(tests={"hb_when": "HGB"})
    with pytest.raises(DataError, match=r"'hb_when' is a text \(date_ymd\) field .* not a result"):
        read(classic(tmp_path), mapping)


def test_identifying_fields_are_never_read(tmp_path):
    raw, _subjects, report = read(classic(tmp_path))
    messages = report.messages
    assert "Alice" not in messages.to_string() and "Alice" not in raw.to_string()
    skipped = messages[messages["value"].astype(str).str.contains("identifying")]
    assert "patient_name" in skipped["column"].iloc[0] and "dob" in skipped["column"].iloc[0]


def test_subject_facts_from_the_dictionary_fields(tmp_path):
    _raw, subjects, report = read(classic(tmp_path))
    assert list(subjects.columns) == [*SUBJECT_FIELDS, "source_row"]
    facts = subjects.set_index("subject")
    assert facts.loc["R1", "sex"] == "F" and facts.loc["R2", "sex"] == "M"  # 1, Male | 2, Female
    assert facts.loc["R1", "height_cm"] == pytest.approx(65 * 2.54)  # "Height (in)"
    assert facts.loc["R1", "weight_kg"] == 70.0
    # R1: birth date → age at admission; R2: no admission → age at the first result
    assert facts.loc["R1", "age"] == 59 and facts.loc["R2", "age"] == 70
    assert facts.loc["R1", "admitted"] == pd.Timestamp("2020-02-10", tz="UTC")
    assert pd.isna(facts.loc["R2", "weight_kg"])  # 900 kg: implausible, reported, left empty
    bad = report.messages[report.messages["kind"] == "bad_subject_fact"]
    assert bad[["row", "column", "value"]].values.tolist() == [[3, "wt", "900"]]


def test_a_sex_choice_that_says_neither_is_reported_not_guessed(tmp_path):
    records = RECORDS.replace("R2,Bob,1,", "R2,Bob,9,").replace("R1,Alice,2,", "R1,Alice,7,")
    _raw, subjects, report = read(classic(tmp_path, records=records))
    assert subjects["sex"].isna().all()
    messages = report.messages[report.messages["column"] == "gender"]
    assert messages[["kind", "row", "value"]].values.tolist() == [
        ["bad_choice", 2, "7"],  # not a code of the dictionary
        ["bad_subject_fact", 3, "9"],  # "Not known": neither M nor F
    ]


def test_a_fact_that_differs_between_events_keeps_the_first_and_says_so(tmp_path):
    dictionary = HEADER + (
        "record_id,demo,,text,Record ID,,,,\n"
        "weight,demo,,text,Weight (kg),,,number,\n"
        "visit_date,labs,,text,Visit date,,,date_ymd,\n"
        "crp,labs,,text,CRP (mg/L),,,number,\n"
    )
    records = (
        "record_id,redcap_event_name,weight,visit_date,crp\n"
        "R1,baseline_arm_1,70,2020-02-10,5\n"
        "R1,day_3_arm_1,,2020-02-13,6\n"
        "R1,day_7_arm_1,72,2020-02-17,7\n"
    )
    _raw, subjects, report = read(classic(tmp_path, dictionary, records))
    assert subjects.set_index("subject").loc["R1", "weight_kg"] == 70.0
    message = report.messages[report.messages["kind"] == "subject_inconsistent"].iloc[0]
    assert (message["row"], message["column"], message["value"]) == (4, "weight", "72.0")
    assert "row 2" in message["expected"]


def test_a_height_in_an_unknown_unit_is_an_error_naming_the_field(tmp_path):
    dictionary = DICTIONARY.replace("Height (in)", "Height (hands)")
    with pytest.raises(DataError, match=r"field 'ht' \(Height \(hands\)\) gives the unit 'hands'"):
        read(classic(tmp_path, dictionary))


def test_facts_can_be_named_in_a_mapping(tmp_path):
    dictionary = DICTIONARY.replace("Admission,", "Day one,").replace("adm_date", "d1")
    records = RECORDS.replace("adm_date", "d1")
    _raw, subjects, _report = read(classic(tmp_path, dictionary, records))
    assert subjects["admitted"].isna().all()
    mapping = Mapping(columns={"admitted": "d1"})
    _raw, subjects, _report = read(classic(tmp_path, dictionary, records), mapping)
    assert subjects.set_index("subject").loc["R1", "admitted"] == pd.Timestamp(
        "2020-02-10", tz="UTC"
    )
    with pytest.raises(DataError, match="'nope' is not a field of the records"):
        read(classic(tmp_path, dictionary, records), Mapping(columns={"height": "nope"}))


def test_facts_are_stored_with_the_subjects(study, tmp_path):
    import_file(study, classic(tmp_path), register=True, cohort="rc")
    with study.engine.connect() as connection:
        rows = dict(connection.execute(select(Subject.code, Subject.sex)).all())
        values = connection.execute(select(Observation.test, Observation.value)).all()
    assert rows["R1"] == "F" and rows["R2"] == "M"
    assert sorted(values) == [("CRP", 12.0), ("CRP", 30.0)]


needs_real = pytest.mark.skipif(
    not REDCAP.is_dir(), reason=f"shared REDCap project absent: {REDCAP}"
)


@needs_real
@pytest.mark.parametrize("target", ["folder", "data.csv"])
def test_real_project_from_its_folder_or_its_records_file(tmp_path, target):
    path = REDCAP if target == "folder" else REDCAP / "data.csv"
    assert detect_layout(path, Mapping()) == "redcap"
    study = init_study(tmp_path / "study", user="tester")
    result = import_file(study, path, register=True, cohort="redcap", user="tester")
    assert result.layout == "redcap"
    assert result.counts["subjects"] == 3
    # 85 results: the number fields of the lab forms (creat_4 is a date field: not a result;
    # height and weight are subject facts); CREAT, CHOL and ALB are catalogue tests
    assert result.report.counts == {"results": 85, "stored": 7, "flagged": 3, "reported": 75}
    kinds = result.report.by_kind().set_index("kind")["count"]
    assert "text_result" not in kinds  # creat_4 (a date) is no longer read as a creatinine
    assert kinds["no_time"] == 16
    with study.engine.connect() as connection:
        subjects = {
            row.code: (row.sex, row.age)
            for row in connection.execute(select(Subject.code, Subject.sex, Subject.age))
        }
    assert subjects == {"100": ("M", 31.0), "220": ("F", 4.0), "304": ("F", 9.0)}


@needs_real
def test_real_project_subject_facts():
    _raw, subjects, report = read(REDCAP)
    facts = subjects.set_index("subject")
    assert facts["sex"].to_dict() == {"100": "M", "220": "F", "304": "F"}
    assert facts["age"].to_dict() == {"100": 31.0, "220": 4.0, "304": 9.0}
    assert facts["height_cm"].to_dict() == {"100": 160.0, "220": 156.0, "304": 199.0}
    assert facts["weight_kg"].to_dict() == {"100": 80.0, "220": 66.0, "304": 88.0}
    assert report.errors.empty


def test_unreadable_date_in_records_alone_is_refused_by_row(study, tmp_path):
    records = RECORDS.replace("2020-02-12 08:00", "31/02/2020")
    with pytest.raises(ImportRefused) as refused:
        import_file(study, classic(tmp_path, records=records), register=True)
    errors = refused.value.report.errors
    assert errors[["kind", "row", "column"]].values.tolist() == [["bad_time", 3, "draw_date"]]
