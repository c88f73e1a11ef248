"""Seed inputs of every reader: small files made here, and samples of the real data sets.

Generated seeds are always there; real ones (``../shared/data``) only when the data folder is.
Real files are read in place and only their first rows are taken, so that each fuzzed import
stays fast; nothing is copied into the repository.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import gzip
import io
import json

import yaml

from celltrial.protocol.loader import DEFAULT_PROTOCOL, builtin_protocol_text
from celltrial.safety.recording import AE_FILE_COLUMNS
from tests.fuzz import binary
from tests.fuzz.paths import real
from tests.fuzz.tabular import Table

#: Rows taken from the top of a real table (several patients, a few hundred results).
REAL_ROWS = 30

# --- laboratory tables -------------------------------------------------------------------------


def long_table(*, typed: bool) -> Table:
    """A long export: one row per result, the quirks a LIS puts in (limits, units, blanks)."""
    when = [dt.datetime(2020, 2, 10, 8, 0) + dt.timedelta(days=d) for d in range(4)]
    rows = [
        ("S001", when[0], "CRP", 12.5, "mg/L", "0-10", "serum"),
        ("S001", when[0], "Lymphocyte count", 0.8, "10^9/L", "1.1-3.2", "blood"),
        ("S001", when[1], "D-dimer", 5.1, "mg/L FEU", "", "plasma"),
        ("S001", when[1], "IL-6", "<1.5", "pg/mL", "0-7", "serum"),
        ("S002", when[2], "Neutrophil count", 9.2, "10^9/L", "1.8-6.3", "blood"),
        ("S002", when[2], "SpO2", 93, "%", "", ""),
        ("S002", when[3], "Creatinine", 1.1, "mg/dL", "0.6-1.2", "serum"),
        ("S002", when[3], "CRP", "pending", "mg/L", "", "serum"),
    ]
    header = ("subject_id", "time", "test", "value", "unit", "reference_range", "specimen")
    return _typed(Table.of(header, rows), typed)


def wide_table(*, typed: bool) -> Table:
    """A wide export: one row per draw, the patient ID on a patient's first row only."""
    header = (
        "PATIENT_ID",
        "RE_DATE",
        "age",
        "gender",
        "Admission time",
        "Discharge time",
        "outcome",
        "Hypersensitive c-reactive protein",
        "lymphocyte count",
        "D-D dimer",
        "Interleukin 6",
        "hemoglobin",
    )
    admitted, discharged = dt.datetime(2020, 2, 1, 9, 30), dt.datetime(2020, 2, 20, 15, 0)
    rows = []
    for patient, outcome in ((1, 0), (2, 1)):
        for day in range(3):
            rows.append(
                (
                    patient if day == 0 else None,
                    dt.datetime(2020, 2, 2 + day, 7, 45),
                    61 + patient,
                    patient,
                    admitted,
                    discharged,
                    outcome,
                    115.0 - 30 * day if outcome else 20.0 - 5 * day,
                    0.55 + 0.1 * day,
                    21 if day == 0 else 5.1,
                    62.0 if day else None,
                    128 if day != 1 else None,
                )
            )
    return _typed(Table.of(header, rows), typed)


def adverse_event_table() -> Table:
    header = AE_FILE_COLUMNS
    rows = [
        (
            "S001",
            "Fever",
            "2020-02-12 14:00",
            "2020-02-13 08:00",
            "1",
            "no",
            "",
            "possibly related",
            "yes",
            "none",
            "recovered",
            "38.2 °C after infusion",
        ),
        (
            "S002",
            "ARDS",
            "2020-02-13T09:00+08:00",
            "",
            "4",
            "yes",
            "life-threatening",
            "not related",
            "no",
            "",
            "not recovered",
            "",
        ),
        ("S001", "Headache", "2020-02-15 10:30", "", "", "", "", "", "", "", "", ""),
    ]
    return Table.of(header, rows)


def _typed(table: Table, typed: bool) -> Table:
    """Cells as a workbook holds them (``typed``) or as CSV text."""
    if typed:
        return table
    from tests.fuzz.tabular import csv_text

    return Table.of(
        [csv_text(c) for c in table.header],
        [[csv_text(c) for c in row] for row in table.rows],
    )


@functools.cache
def tongji_sample(language: str) -> Table | None:
    """The first rows of a real Tongji LIS export (English or Chinese headers), typed cells."""
    name = "time_series_375_prerpocess" + ("_en" if language == "en" else "") + ".xlsx"
    path = real(f"labs/tongji/{name}")
    if path is None:
        return None
    from openpyxl import load_workbook

    book = load_workbook(path, read_only=True, data_only=True)
    try:
        rows = list(book.active.iter_rows(max_row=REAL_ROWS + 1, values_only=True))
    finally:
        book.close()
    return Table.of(rows[0], rows[1:])


@functools.cache
def tongji_long(language: str) -> Table | None:
    """The same rows as a long file: one row per result (subject, time, test, value)."""
    wide = tongji_sample(language)
    if wide is None:
        return None
    header = list(wide.header)
    rows, subject = [], None
    for row in wide.rows:
        subject = row[0] if row[0] is not None else subject
        for name, value in zip(header[7:], row[7:], strict=False):
            if value is not None:
                rows.append((subject, row[1], name, value))
    return Table.of(("PATIENT_ID", "RE_DATE", "test", "result"), rows)


@functools.cache
def olink_sample() -> Table | None:
    path = real("labs/olink/plasma_sample_level.csv")
    return None if path is None else _csv_table(path.read_text(encoding="utf-8"))


@functools.cache
def redcap_real() -> tuple[Table, Table] | None:
    folder = real("labs/redcap-longitudinal")
    if folder is None:
        return None
    return (
        _csv_table((folder / "dictionary.csv").read_text(encoding="utf-8"), rows=None),
        _csv_table((folder / "data.csv").read_text(encoding="utf-8"), rows=None),
    )


def _csv_table(text: str, *, rows: int | None = REAL_ROWS) -> Table:
    records = list(csv.reader(io.StringIO(text)))
    return Table.of(records[0], records[1 : None if rows is None else rows + 1])


def redcap_generated() -> tuple[Table, Table]:
    """A small REDCap project: record ID, a visit date, results with units in their labels."""
    dictionary = Table.of(
        (
            "Variable / Field Name",
            "Form Name",
            "Field Type",
            "Field Label",
            "Choices, Calculations, OR Slider Labels",
            "Text Validation Type OR Show Slider Number",
            "Identifier?",
        ),
        [
            ("record_id", "labs", "text", "Record ID", "", "", ""),
            ("name", "labs", "text", "Name", "", "", "y"),
            ("sex", "labs", "radio", "Sex", "0, Female | 1, Male", "", ""),
            ("age", "labs", "text", "Age (years)", "", "integer", ""),
            ("visit_date", "labs", "text", "Date of blood draw", "", "date_ymd", ""),
            ("crp", "labs", "text", "CRP (mg/L)", "", "number", ""),
            ("lymph", "labs", "text", "Lymphocyte count (10^9/L)", "", "number", ""),
            ("symptoms", "labs", "checkbox", "Symptoms", "1, Fever | 2, Cough", "", ""),
            ("score", "labs", "slider", "Dyspnoea", "none | | severe", "", ""),
        ],
    )
    records = Table.of(
        (
            "record_id",
            "redcap_event_name",
            "name",
            "sex",
            "age",
            "visit_date",
            "crp",
            "lymph",
            "symptoms___1",
            "symptoms___2",
            "score",
        ),
        [
            ("R01", "day_0_arm_1", "Ann", "0", "61", "2020-02-10", "115", "0.55", "1", "0", "60"),
            ("R01", "day_3_arm_1", "Ann", "", "", "2020-02-13", "40", "0.9", "0", "1", ""),
            ("R02", "day_0_arm_1", "Bo", "1", "70", "2020-02-11", "<5", "1.2", "0", "0", "10"),
        ],
    )
    return dictionary, records


REDCAP_VALUES = (
    "text",
    "checkbox",
    "radio",
    "dropdown",
    "calc",
    "slider",
    "file",
    "descriptive",
    "yesno",
    "truefalse",
    "notes",
    "weird",
    "date_ymd",
    "datetime_ymd",
    "number",
    "integer",
    "",
    "||",
    "1, a | 1, b",
    "0, No | 1, Yes",
    ",",
    "y",
    "record_id",
    "day_0_arm_1",
)

# --- FHIR --------------------------------------------------------------------------------------


def fhir_bundle() -> dict:
    """A Bundle: a patient, a CRP with a comparator, a blood-pressure panel, a coded result."""
    patient = {
        "resourceType": "Patient",
        "id": "p-1",
        "gender": "female",
        "deceasedDateTime": "2020-03-01T10:00:00+08:00",
    }

    def observation(code: str, text: str, **value) -> dict:
        return {
            "resourceType": "Observation",
            "status": "final",
            "code": {
                "coding": [{"system": "http://loinc.org", "code": code, "display": text}],
                "text": text,
            },
            "subject": {"reference": "urn:uuid:p-1"},
            "effectiveDateTime": "2020-02-10T08:00:00+08:00",
            **value,
        }

    crp = observation(
        "1988-5",
        "CRP",
        valueQuantity={"value": 0.5, "comparator": "<", "unit": "mg/dL", "code": "mg/dL"},
    )
    panel = observation("85354-9", "Blood pressure panel")
    panel["component"] = [
        {
            "code": {"coding": [{"code": "8480-6", "display": "Systolic"}]},
            "valueQuantity": {"value": 120, "unit": "mm[Hg]", "code": "mm[Hg]"},
        },
        {
            "code": {"coding": [{"code": "8462-4", "display": "Diastolic"}]},
            "valueQuantity": {"value": 80, "unit": "mm[Hg]", "code": "mm[Hg]"},
        },
    ]
    coded = observation(
        "94500-6",
        "SARS-CoV-2 RNA",
        valueCodeableConcept={"coding": [{"display": "Detected"}], "text": "Detected"},
    )
    period = observation("59408-5", "SpO2", valueQuantity={"value": 93, "unit": "%", "code": "%"})
    del period["effectiveDateTime"]
    period["effectivePeriod"] = {"start": "2020-02-11T06:00:00Z"}
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in (patient, crp, panel, coded, period)],
    }


def fhir_single() -> dict:
    """One Observation on its own, not in a Bundle."""
    return fhir_bundle()["entry"][1]["resource"]


@functools.cache
def synthea_bundle() -> dict | None:
    folder = real("labs/fhir-synthea")
    if folder is None:
        return None
    path = next(iter(sorted(folder.glob("*.json"))), None)
    return None if path is None else json.loads(path.read_text(encoding="utf-8"))


# --- protocol ----------------------------------------------------------------------------------


@functools.cache
def protocol_tree() -> dict:
    return yaml.safe_load(builtin_protocol_text(DEFAULT_PROTOCOL))


# --- CT ----------------------------------------------------------------------------------------


@functools.cache
def generated_nifti() -> bytes:
    return binary.small_nifti()


@functools.cache
def medseg_nifti() -> bytes | None:
    folder = real("ct/medseg2d")
    if folder is None:
        return None
    first = next(iter(sorted(folder.glob("train_*/image.nii.gz"))), None)
    return None if first is None else gzip.decompress(first.read_bytes())


@functools.cache
def generated_dicom() -> tuple[bytes, ...]:
    return tuple(binary.dicom_series())


@functools.cache
def lungmask_dicom() -> tuple[bytes, ...] | None:
    folder = real("ct/dicom-lungmask")
    if folder is None:
        return None
    return tuple(p.read_bytes() for p in sorted(folder.glob("*.dcm")))


@functools.cache
def generated_images() -> dict[str, bytes]:
    return binary.display_images()


@functools.cache
def infnet_image() -> bytes | None:
    folder = real("ct/infnet-pseudo/images")
    if folder is None:
        return None
    first = next(iter(sorted(folder.glob("*.jpg"))), None)
    return None if first is None else first.read_bytes()
