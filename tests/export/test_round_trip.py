"""Simulate a cohort → write wide XLSX, long CSV, REDCap and FHIR → import each into a fresh
study → the same canonical values; and the SDTM LB/VS export of what came in."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from celltrial.cohort import simulate
from celltrial.export import (
    derive_sdtm,
    export_observations,
    write_fhir,
    write_long_csv,
    write_redcap,
    write_wide_xlsx,
)
from celltrial.protocol import DEFAULT_PROTOCOL, load_builtin_protocol
from celltrial.store import frames as store_frames
from celltrial.study import init_study

PROTOCOL = load_builtin_protocol(DEFAULT_PROTOCOL)
ZONE = PROTOCOL.study.zone


@pytest.fixture(scope="module")
def cohort():
    simulated = simulate(PROTOCOL, 2, seed=3)
    observations = simulated.observations
    # a value at a detection limit travels with its qualifier
    first_crp = observations.index[observations["test"] == "CRP"][0]
    observations.loc[first_crp, "qualifier"] = "<"
    return simulated


def _imported(study) -> pd.DataFrame:
    frame = store_frames.read_observations(
        study.engine,
        study.study_id,
        zone=ZONE,
        first_infusion=pd.Series(dtype="datetime64[ns, UTC]"),
        cohort="trip",
    )
    return _key(frame)


def _key(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame[["subject_id", "test", "time", "value", "qualifier"]].copy()
    out["time"] = pd.to_datetime(out["time"], utc=True).dt.as_unit("us")
    out["qualifier"] = out["qualifier"].fillna("").astype(str)
    out["subject_id"] = out["subject_id"].astype(str)
    out["test"] = out["test"].astype(str)
    return out.sort_values(["subject_id", "test", "time"]).reset_index(drop=True)


@pytest.mark.parametrize("layout", ["long_csv", "wide_xlsx", "redcap", "fhir"])
def test_round_trip_gives_identical_canonical_values(cohort, tmp_path, layout):
    if layout == "wide_xlsx":
        pytest.importorskip("openpyxl", reason="writing XLSX needs openpyxl")
    from celltrial.ingest import import_file

    observations = cohort.observations
    target = {
        "long_csv": lambda: write_long_csv(observations, tmp_path / "labs.csv"),
        "wide_xlsx": lambda: write_wide_xlsx(observations, tmp_path / "labs.xlsx", zone=ZONE),
        "redcap": lambda: write_redcap(observations, tmp_path / "redcap", zone=ZONE),
        "fhir": lambda: write_fhir(
            observations, tmp_path / "bundle.json", subjects=cohort.subjects
        ),
    }[layout]()
    study = init_study(tmp_path / "study", user="tester")
    result = import_file(study, target, register=True, cohort="trip", user="tester")
    counts = result.report.counts
    assert counts["results"] == len(observations)
    assert counts["reported"] == 0, result.report.messages.head()
    back = _imported(study)
    sent = _key(observations)
    assert len(back) == len(sent)
    pd.testing.assert_frame_equal(
        back[["subject_id", "test", "time"]], sent[["subject_id", "test", "time"]]
    )
    np.testing.assert_allclose(back["value"], sent["value"], rtol=1e-12)
    # the censoring heuristic may add a >=/<= to a column's repeated extreme; never removes one
    assert (back.loc[sent["qualifier"] != "", "qualifier"] == "<").all()
    same = (back["qualifier"] == sent["qualifier"]) | (sent["qualifier"] == "")
    assert same.all()


def test_sdtm_lb_and_vs_split_and_keep_values(cohort):
    observations = cohort.observations.assign(study_day=0.5)
    lb = derive_sdtm(observations, study_id="STUDY", domain="LB")
    vs = derive_sdtm(observations, study_id="STUDY", domain="VS")
    assert len(lb) + len(vs) == len(observations)
    assert set(vs["VSTESTCD"]) >= {"SPO2", "HR", "TEMP"}
    assert "CRP" in set(lb["LBTESTCD"]) and "SPO2" not in set(lb["LBTESTCD"])
    crp = lb[lb["LBTESTCD"] == "CRP"]
    assert (crp["LBSTRESU"] == "mg/L").all() and (crp["LBLOINC"] == "1988-5").all()
    assert (lb["LBDY"] == 1).all()  # study day 0.5 → SDTM day 1 (no day 0)
    limited = lb[lb["LBSTRESC"].str.startswith("<")]
    assert len(limited) == 1 and limited["LBSTRESN"].isna().all()
    assert (
        lb.groupby("USUBJID")["LBSEQ"].apply(lambda s: list(s) == list(range(1, len(s) + 1))).all()
    )


def test_export_command_writes_csv_and_dataset_json(cohort, tmp_path):
    from celltrial.ingest import import_file

    study = init_study(tmp_path / "study", user="tester")
    path = write_long_csv(cohort.observations, tmp_path / "labs.csv")
    import_file(study, path, register=True, cohort="trip", user="tester")
    csvs = export_observations(study, tmp_path / "out", fmt="csv", cohort="trip")
    assert [p.name for p in csvs] == ["lb.csv", "vs.csv"]
    lb = pd.read_csv(csvs[0])
    vs = pd.read_csv(csvs[1])
    assert len(lb) + len(vs) == len(cohort.observations)
    jsons = export_observations(study, tmp_path / "out", fmt="dataset-json", cohort="trip")
    document = json.loads(jsons[0].read_text(encoding="utf-8"))
    assert document["datasetJSONVersion"] == "1.1.0" and document["name"] == "LB"
    assert document["records"] == len(lb) == len(document["rows"])
    names = [c["name"] for c in document["columns"]]
    assert names[:4] == ["STUDYID", "DOMAIN", "USUBJID", "LBSEQ"]
    stresn = names.index("LBSTRESN")
    assert document["columns"][stresn]["dataType"] == "double"

    import celltrial.cli  # noqa: F401  (first: it registers export.command, which imports it)
    from celltrial.export.command import export_command

    app = __import__("typer").Typer()
    app.command()(export_command)
    run = CliRunner().invoke(
        app, [str(study.directory), "--out", str(tmp_path / "cli"), "--format", "bogus"]
    )
    assert run.exit_code != 0 and "csv or dataset-json" in run.output
