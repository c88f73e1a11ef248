"""Write observations in the layouts celltrial imports: long CSV, wide XLSX (one row per draw),
REDCap (data dictionary + records with a repeating instrument) and a FHIR R4 Bundle.

Values are written in their canonical units with their qualifier ("<0.5"), times with their
UTC offset (CSV, REDCap as naive times in ``zone``, XLSX as naive times in ``zone``), so that an
import into a study with the same time zone gives back the same canonical values.
"""

from __future__ import annotations

import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd

from celltrial.catalogue import load_catalogue

FHIR_UNIT_SYSTEM = "http://unitsofmeasure.org"
LOINC_SYSTEM = "http://loinc.org"


def _text(frame: pd.DataFrame) -> pd.Series:
    qualifier = frame["qualifier"].fillna("").astype(str)
    return qualifier + frame["value"].map(lambda v: "" if pd.isna(v) else repr(float(v)))


def _local(times: pd.Series, zone: ZoneInfo | str) -> pd.Series:
    return pd.to_datetime(times, utc=True).dt.tz_convert(str(zone)).dt.tz_localize(None)


def write_long_csv(observations: pd.DataFrame, path: str | Path) -> Path:
    """One row per result: subject_id, time (ISO 8601 with offset), test, value, unit."""
    path = Path(path)
    pd.DataFrame(
        {
            "subject_id": observations["subject_id"],
            "time": pd.to_datetime(observations["time"], utc=True).map(lambda t: t.isoformat()),
            "test": observations["test"],
            "value": _text(observations),
            "unit": observations["unit"],
        }
    ).to_csv(path, index=False)
    return path


def write_wide_xlsx(observations: pd.DataFrame, path: str | Path, *, zone: ZoneInfo | str) -> Path:
    """One row per subject and time, one column per test named "Test name (unit)"."""
    path = Path(path)
    catalogue = {t.code: t for t in load_catalogue().tests}
    frame = observations.assign(text=_text(observations), local=_local(observations["time"], zone))
    wide = frame.pivot_table(
        index=["subject_id", "local"], columns="test", values="text", aggfunc="first"
    )
    wide.columns = [f"{catalogue[c].name} ({catalogue[c].unit})" for c in wide.columns]
    wide = wide.reset_index().rename(columns={"local": "time"})
    wide.to_excel(path, index=False)
    return path


def write_redcap(observations: pd.DataFrame, folder: str | Path, *, zone: ZoneInfo | str) -> Path:
    """A REDCap export in ``folder``: dictionary.csv and data.csv with a repeating instrument
    ``labs`` (one instance per subject and time, its datetime in ``lab_datetime``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    catalogue = {t.code: t for t in load_catalogue().tests}
    tests = sorted(observations["test"].unique())
    fields = [
        ("record_id", "enrolment", "text", "Record ID", ""),
        (
            "lab_datetime",
            "labs",
            "text",
            "Date and time of sample collection",
            "datetime_seconds_ymd",
        ),
    ] + [
        (c.lower(), "labs", "text", f"{catalogue[c].name} ({catalogue[c].unit})", "") for c in tests
    ]
    pd.DataFrame(
        fields,
        columns=[
            "Variable / Field Name",
            "Form Name",
            "Field Type",
            "Field Label",
            "Text Validation Type OR Show Slider Number",
        ],
    ).assign(**{"Choices, Calculations, OR Slider Labels": "", "Identifier?": ""}).to_csv(
        folder / "dictionary.csv", index=False
    )
    frame = observations.assign(text=_text(observations), local=_local(observations["time"], zone))
    wide = frame.pivot_table(
        index=["subject_id", "local"], columns="test", values="text", aggfunc="first"
    ).reset_index()
    wide.columns = [c.lower() if c in tests else c for c in wide.columns]
    records = pd.DataFrame(
        {
            "record_id": wide["subject_id"],
            "redcap_repeat_instrument": "labs",
            "redcap_repeat_instance": wide.groupby("subject_id").cumcount() + 1,
            "lab_datetime": wide["local"].dt.strftime("%Y-%m-%d %H:%M:%S"),
        }
    )
    records = pd.concat([records, wide[[c.lower() for c in tests]]], axis=1)
    records.to_csv(folder / "data.csv", index=False)
    return folder


def write_fhir(
    observations: pd.DataFrame, path: str | Path, *, subjects: pd.DataFrame | None = None
) -> Path:
    """A FHIR R4 collection Bundle: a Patient per subject, an Observation per result (LOINC code
    where the catalogue has one, else the test name; the canonical unit as UCUM code)."""
    path = Path(path)
    catalogue = {t.code: t for t in load_catalogue().tests}
    sexes = {}
    if subjects is not None and "sex" in subjects:
        sexes = dict(zip(subjects["subject_id"], subjects["sex"], strict=True))
    entries = []
    for subject in sorted(observations["subject_id"].unique()):
        patient = {"resourceType": "Patient", "id": str(subject)}
        sex = {"M": "male", "F": "female"}.get(sexes.get(subject))
        if sex:
            patient["gender"] = sex
        entries.append({"fullUrl": f"urn:uuid:{subject}", "resource": patient})
    comparators = {"<": "<", "<=": "<=", ">": ">", ">=": ">="}
    for number, row in enumerate(observations.itertuples(index=False), start=1):
        test = catalogue[row.test]
        coding = (
            [{"system": LOINC_SYSTEM, "code": test.loinc, "display": test.name}]
            if test.loinc
            else []
        )
        quantity = {
            "value": float(row.value),
            "unit": row.unit,
            "system": FHIR_UNIT_SYSTEM,
            "code": row.unit,
        }
        if row.qualifier in comparators:
            quantity["comparator"] = comparators[row.qualifier]
        entries.append(
            {
                "fullUrl": f"urn:uuid:obs-{number}",
                "resource": {
                    "resourceType": "Observation",
                    "id": f"obs-{number}",
                    "status": "final",
                    "code": {"coding": coding, "text": test.name},
                    "subject": {"reference": f"Patient/{row.subject_id}"},
                    "effectiveDateTime": pd.Timestamp(row.time).tz_convert("UTC").isoformat(),
                    "valueQuantity": quantity,
                },
            }
        )
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    path.write_text(json.dumps(bundle, indent=1), encoding="utf-8")
    return path
