"""--suggest-mapping never offers identifying or non-lab columns as tests: names, phones, e-mails,
addresses, record numbers (``identifying.yaml``) in any file; in a REDCap project (folder, records
file, ODM) only number fields, from the dictionary, with the subject facts as ``columns:``."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from celltrial.cli import app
from celltrial.ingest.mapping import read_mapping
from celltrial.ingest.suggest import looks_identifying, suggest_mapping, write_mapping_proposal
from tests.ingest.conftest import LABS
from tests.ingest.test_odm import write_odm
from tests.ingest.test_redcap_records import classic

REDCAP = LABS / "redcap-longitudinal"


@pytest.mark.parametrize(
    "name",
    ["Patient Name", "first_name", "LastName", "telephone_1", "ec_phone", "E-mail", "email",
     "Home address", "MRN", "zip_code", "next_of_kin_contact_name", "患者姓名", "联系电话"],
)  # fmt: skip
def test_identifying_names(name):
    assert looks_identifying(name)


@pytest.mark.parametrize(
    "name",
    ["CRP (mg/L)", "Hemoglobin", "hs-CRP", "Lymphocyte count", "D-dimer", "Phosphate",
     "Number of treatments missed", "淋巴细胞(#)", "Telomere length", "ALT"],
)  # fmt: skip
def test_lab_names_are_not_identifying(name):
    assert not looks_identifying(name)


def test_a_wide_file_never_proposes_identifying_columns(write, tmp_path):
    path = write(
        "labs.csv",
        "PATIENT_ID,Patient Name,Phone,E-mail,Home address,RE_DATE,CRP (mg/L),Mystery\n"
        "S1,Alice,555-1212,a@b.c,1 Main St,2020-02-10,5,3\n",
    )
    proposal, unrecognised = suggest_mapping(path)
    assert set(proposal["tests"]) == {"CRP (mg/L)", "Mystery"}
    assert unrecognised == ["Mystery"]
    assert proposal["not_proposed"] == ["Patient Name", "Phone", "E-mail", "Home address"]
    out = write_mapping_proposal(proposal, unrecognised, tmp_path / "proposal.yaml")
    text = out.read_text(encoding="utf-8")
    assert "# 4 not proposed (identifying, or not a lab value): Patient Name" in text
    assert read_mapping(out).test_for("Phone") is False  # not in the mapping at all


def test_redcap_records_file_is_proposed_from_its_dictionary(tmp_path):
    proposal, unrecognised = suggest_mapping(classic(tmp_path))
    assert proposal["layout"] == "redcap"
    assert proposal["tests"] == {
        "crp": {"test": "CRP", "confidence": 0.9, "how": "with unit", "unit": "mg/L"}
    }
    assert unrecognised == []
    assert proposal["columns"] == {
        "subject": "record_id",
        "sex": "gender",
        "birth_date": "dob",
        "height": "ht",
        "weight": "wt",
        "admitted": "adm_date",
    }
    # names, dates named like labs (Date of CRP, Hemoglobin (g/L) as a date), choices
    assert set(proposal["not_proposed"]) == {
        "patient_name", "draw_date", "crp_date", "hb_when", "hb_site",
    }  # fmt: skip


def test_an_odm_export_is_proposed_like_its_csv_pair(tmp_path):
    from celltrial.ingest.redcap import read_redcap_project

    records = classic(tmp_path)
    project = read_redcap_project(records)
    path = tmp_path / "export.xml"
    write_odm(project.dictionary, project.records, path)
    from_csv, _ = suggest_mapping(records)
    from_odm, _ = suggest_mapping(path)
    assert from_odm == from_csv


@pytest.mark.skipif(not REDCAP.is_dir(), reason=f"shared REDCap project absent: {REDCAP}")
def test_real_redcap_project_proposes_only_lab_number_fields(tmp_path, study):
    out = tmp_path / "proposal.yaml"
    run = CliRunner().invoke(
        app,
        ["import", str(study.directory), str(REDCAP / "data.csv"), "--suggest-mapping",
         "--mapping", str(out)],
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    text = out.read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    assert data["layout"] == "redcap"
    assert data["columns"] == {
        "subject": "study_id",
        "sex": "sex",
        "age": "age",
        "birth_date": "dob",
        "height": "height",
        "weight": "weight",
    }
    proposed = {k: v["test"] for k, v in data["tests"].items() if v}
    assert proposed == {
        "creat_b": "CREAT", "chol_b": "CHOL", "vld2": "CREAT", "vld4": "CHOL", "vbw2": "CREAT",
        "vbw4": "CHOL", "alb_4": "ALB", "chol_4": "CHOL",
    }  # fmt: skip
    never = {"first_name", "last_name", "telephone_1", "email", "dob", "ec_phone", "comments",
             "next_of_kin_contact_name", "next_of_kin_contact_phone", "bmi", "creat_4",
             "sex", "race", "gym___0", "vbw6"}  # fmt: skip
    assert never.isdisjoint(data["tests"])
    assert "'Creatinine (mg/dL)'" in text  # the label said as a comment
    mapping = read_mapping(out)
    assert mapping.layout == "redcap" and mapping.test_for("vld2").unit == "mg/dL"
