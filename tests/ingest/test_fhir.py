"""FHIR R4 bundles: LOINC codes and UCUM units, Patient resources as subjects."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from celltrial.ingest import import_file
from celltrial.store.models import Observation, Subject
from celltrial.study import init_study
from tests.ingest.conftest import LABS

SYNTHEA = LABS / "fhir-synthea"


def _bundle(unit: str, value: float) -> dict:
    patient = {"resourceType": "Patient", "id": "p-1", "gender": "female"}
    observation = {
        "resourceType": "Observation",
        "code": {"coding": [{"system": "http://loinc.org", "code": "1988-5"}], "text": "CRP"},
        "subject": {"reference": "Patient/p-1"},
        "effectiveDateTime": "2020-02-10T08:00:00+08:00",
        "valueQuantity": {"value": value, "unit": unit, "code": unit},
    }
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": patient}, {"resource": observation}],
    }


def test_hand_made_bundle_converts_ucum_units(study, tmp_path):
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(_bundle("mg/dL", 2.5)), encoding="utf-8")
    result = import_file(study, path, register=True, cohort="fhir")
    assert result.counts["subjects"] == 1 and result.counts["inserted"] == 1
    with study.engine.connect() as connection:
        test, value, time = connection.execute(
            select(Observation.test, Observation.value, Observation.time)
        ).one()
        sex = connection.scalar(select(Subject.sex).where(Subject.code == "p-1"))
    assert (test, value, sex) == ("CRP", pytest.approx(25.0), "F")
    assert time.hour == 0  # 08:00 +08:00 is midnight UTC


@pytest.mark.skipif(not SYNTHEA.is_dir(), reason=f"real data set absent: {SYNTHEA}")
def test_synthea_bundle_imports_with_every_observation_accounted_for(tmp_path):
    study = init_study(tmp_path / "study", user="tester")
    path = next(SYNTHEA.glob("*.json"))
    result = import_file(study, path, register=True, cohort="synthea", user="tester")
    counts = result.report.counts
    # 4 quantities + a blood-pressure panel (2 components) + 10 coded results = 16 (the body
    # weight is the subject's weight, not a result)
    assert counts == {"results": 16, "stored": 6, "flagged": 0, "reported": 10}
    assert result.counts["subjects"] == 1
    with study.engine.connect() as connection:
        tests = set(connection.scalars(select(Observation.test)))
    assert tests == {"TEMP", "RESP", "HR", "SPO2", "SYSBP", "DIABP"}
