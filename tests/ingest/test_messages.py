"""Import messages point at the cell at fault: the file's row (header = line 1), the column as
written in the file and the cell's text, in words a data manager uses."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import func, select

from celltrial.ingest import ImportRefused, import_file
from celltrial.ingest.report import KINDS, describe_message
from celltrial.store.models import AuditEvent, ImportBatch, Observation, Subject

LONG = "Patient ID,Collection Time,Test Name,Result,Units\n"
WIDE = "PATIENT_ID,RE_DATE,CRP,lymphocyte count (10^9/L)\n"


def refused(study, path, **options) -> ImportRefused:
    with pytest.raises(ImportRefused) as caught:
        import_file(study, path, **options)
    return caught.value


def only(messages: pd.DataFrame, kind: str) -> dict:
    rows = messages[messages["kind"] == kind]
    assert len(rows) == 1, rows
    return rows.iloc[0].to_dict()


def stored_count(study) -> int:
    with study.engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(Observation))


# --- 1. a time that cannot be read -----------------------------------------------------------


def test_bad_time_in_a_long_file_names_the_time_cell(study, write):
    path = write(
        "labs.csv",
        LONG
        + "S001,2020-02-28 08:00,CRP,46.0,mg/L\n"  # line 2: fine
        + "S001,31/02/2020,CRP,47.0,mg/L\n"  # line 3: 31 February does not exist
        + "S001,2020-02-29 08:00,CRP,48.0,mg/L\n",  # line 4: a leap day exists
    )
    error = refused(study, path)
    message = only(error.report.errors, "bad_time")
    assert (message["row"], message["column"], message["value"]) == (
        3,
        "Collection Time",
        "31/02/2020",
    )
    assert "2020-02-10 08:30" in message["expected"]
    line = "row 3, column Collection Time: '31/02/2020' — time that cannot be read; expected"
    assert line in str(error)
    assert "47" not in str(error).split("\n")[1]  # the result's value is not the cell at fault
    assert stored_count(study) == 0


def test_bad_time_in_a_wide_file_is_named_once_per_row_on_its_time_column(study, write):
    path = write(
        "wide.csv",
        WIDE
        + "S001,2020-02-10 08:00,46.0,0.5\n"
        + "S001,31/02/2020,47.0,0.6\n"  # two results on the row, one time cell at fault
        + "S001,2020-02-12 08:00,48.0,0.7\n",
    )
    error = refused(study, path)
    errors = error.report.errors
    assert errors[["kind", "row", "column", "value"]].to_dict("records") == [
        {"kind": "bad_time", "row": 3, "column": "RE_DATE", "value": "31/02/2020"}
    ]
    assert "row 3, column RE_DATE: '31/02/2020' — time that cannot be read" in str(error)
    assert "46.0" not in str(error) and "47.0" not in str(error)
    counts = error.report.counts
    assert counts["results"] == 6 and counts["reported"] == 2  # both results of the row


def test_bad_time_in_a_workbook_counts_rows_as_excel_does(study, tmp_path):
    openpyxl = pytest.importorskip("openpyxl", reason="writing XLSX needs openpyxl")
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["subject_id", "time", "test", "value", "unit"])  # row 1
    sheet.append(["S001", "2020-02-10 08:00", "CRP", 12, "mg/L"])  # row 2
    sheet.append(["S001", "2020-02-11 08:00", "CRP", 13, "mg/L"])  # row 3
    sheet.append(["S001", "2020-13-01 08:00", "CRP", 14, "mg/L"])  # row 4: no month 13
    path = tmp_path / "labs.xlsx"
    book.save(path)
    message = only(refused(study, path).report.errors, "bad_time")
    assert (message["row"], message["column"], message["value"]) == (4, "time", "2020-13-01 08:00")


def test_results_before_enrolment_and_after_discharge_are_named_on_the_time(study, write):
    path = write(
        "timing.csv",
        LONG
        + "S001,2020-02-01 08:00,CRP,5,mg/L\n"  # enrolled 2020-02-01 00:00 UTC = 08:00 local
        + "S001,2020-02-01 07:59,CRP,6,mg/L\n"  # one minute before enrolment: flagged
        + "S002,2020-03-01 08:00,CRP,7,mg/L\n"  # at discharge: fine
        + "S002,2020-03-01 08:01,CRP,8,mg/L\n",  # one minute after discharge: flagged
    )
    result = import_file(study, path)
    messages = result.report.messages
    before = only(messages, "before_enrolment")
    after = only(messages, "after_discharge")
    assert (before["row"], before["column"], before["value"]) == (
        3,
        "Collection Time",
        "2020-02-01 07:59",
    )
    assert "2020-02-01 08:00 (Asia/Shanghai)" in before["expected"]
    assert (after["row"], after["column"], after["value"]) == (
        5,
        "Collection Time",
        "2020-03-01 08:01",
    )
    assert "2020-03-01 08:00 (Asia/Shanghai)" in after["expected"]
    assert result.counts["inserted"] == 4  # flagged, stored


# --- 2. a unit that cannot be converted ------------------------------------------------------


@pytest.mark.parametrize(
    ("test", "unit", "why"),
    [
        (
            "CRP",
            "mmol/L",
            "convertible to mg/L for CRP (C-reactive protein): 'mmol/L' is a concentration by "
            "amount of substance (moles) and 'mg/L' a concentration by mass; converting them "
            "needs CRP's molar mass, which is not known",
        ),
        (
            "CRP",
            "U/L",
            "'U/L' is an enzyme activity per volume and 'mg/L' a concentration by mass: "
            "different kinds of quantity",
        ),
        ("lymphocyte count", "g/L", "'g/L' is a concentration by mass and '10^9/L' a count"),
        ("CD4", "%", "'%' is a ratio or percentage and 'cells/uL' a count per volume"),
        ("CRP", "furlongz", "unknown unit 'furlongz': not a unit celltrial knows"),
    ],
)
def test_unit_that_cannot_be_converted_is_named_on_the_unit_cell(study, write, test, unit, why):
    path = write(
        "units.csv",
        LONG + "S001,2020-02-10 08:00,CRP,12,mg/L\n" + f"S001,2020-02-11 08:00,{test},12,{unit}\n",
    )
    error = refused(study, path)
    message = only(error.report.errors, "unit_not_convertible")
    assert (message["row"], message["column"], message["value"]) == (3, "Units", unit)
    assert why in message["expected"]
    text = str(error)
    assert f"row 3, column Units: '{unit}' — unit that cannot be converted" in text
    for jargon in ("[", "**", "pint", "dimensionality", "molar_mass"):
        assert jargon not in text
    assert stored_count(study) == 0


def test_unit_in_a_wide_header_is_named_once_on_the_header(study, write):
    path = write(
        "wide-units.csv",
        "PATIENT_ID,RE_DATE,CRP (mmol/L)\nS001,2020-02-10 08:00,1.2\nS001,2020-02-11 08:00,1.3\n",
    )
    error = refused(study, path)
    message = only(error.report.errors, "unit_not_convertible")
    assert (message["row"], message["column"], message["value"]) == (1, "CRP (mmol/L)", "mmol/L")
    assert "Not stored: 2 results (rows 2, 3)" in message["expected"]
    assert error.report.counts["reported"] == 2


def test_a_convertible_unit_next_to_a_refused_one_is_not_blamed(study, write):
    path = write(
        "mixed.csv",
        LONG + "S001,2020-02-10 08:00,CRP,1.2,mg/dL\nS001,2020-02-11 08:00,CRP,1.2,mmol/L\n",
    )
    errors = refused(study, path).report.errors
    assert errors["row"].tolist() == [3]


# --- 3. a test name the catalogue does not know -----------------------------------------------


def test_unknown_test_in_a_long_file_is_named_with_its_rows_and_a_mapping_hint(study, write):
    path = write(
        "tests.csv",
        LONG
        + "S001,2020-02-10 08:00,CRP,12,mg/L\n"
        + "S001,2020-02-10 08:00,CRPX,3,mg/L\n"  # line 3
        + "S001,2020-02-11 08:00,CRP,11,mg/L\n"
        + "S001,2020-02-11 08:00,CRPX,4,mg/L\n",  # line 5
    )
    result = import_file(study, path)
    message = only(result.report.messages, "unknown_test")
    assert (message["row"], message["column"], message["value"]) == (3, "Test Name", "CRPX")
    assert "Not stored: 2 results (rows 3, 5)" in message["expected"]
    assert "--mapping" in message["expected"]
    assert "--suggest-mapping" in KINDS["unknown_test"]
    line = describe_message(message)
    assert line.startswith("row 3, column Test Name: 'CRPX' — test name not in the catalogue")
    assert result.counts["inserted"] == 2
    assert result.report.counts == {"results": 4, "stored": 2, "flagged": 0, "reported": 2}


def test_unknown_column_of_a_wide_file_is_named_on_its_header(study, write):
    path = write(
        "wide-unknown.csv",
        "PATIENT_ID,RE_DATE,CRP,Favourite colour\n"
        "S001,2020-02-10 08:00,12,3\n"
        "S001,2020-02-11 08:00,11,\n",
    )
    result = import_file(study, path)
    message = only(result.report.messages, "column_ignored")
    assert (message["row"], message["column"], message["value"]) == (
        1,
        "Favourite colour",
        "Favourite colour",
    )
    assert "Not stored: 1 result (row 2)" in message["expected"]


def test_unknown_subject_is_named_on_the_subject_column(study, write):
    path = write(
        "subjects.csv",
        LONG + "S001,2020-02-10 08:00,CRP,12,mg/L\nS404,2020-02-10 08:00,CRP,12,mg/L\n",
    )
    error = refused(study, path)
    message = only(error.report.errors, "unknown_subject")
    assert (message["row"], message["column"], message["value"]) == (3, "Patient ID", "S404")
    assert "--register-subjects" in message["expected"]


def test_text_result_is_named_on_its_own_cell(study, write):
    path = write(
        "text.csv",
        LONG + "S001,2020-02-10 08:00,CRP,pending,mg/L\nS001,2020-02-11 08:00,CRP,5,mg/L\n",
    )
    message = only(import_file(study, path).report.messages, "text_result")
    assert (message["row"], message["column"], message["value"]) == (2, "Result", "pending")


def test_the_report_csv_holds_the_same_row_column_and_text(study, write):
    path = write("csv.csv", LONG + "S001,31/02/2020,CRP,12,mg/L\n")
    error = refused(study, path)
    written = pd.read_csv(error.report_csv, dtype=str)
    assert written[["kind", "row", "column", "value"]].to_dict("records") == [
        {"kind": "bad_time", "row": "2", "column": "Collection Time", "value": "31/02/2020"}
    ]


# --- 4. a dry run says what the import would store ---------------------------------------------


def database_state(study) -> dict:
    """Everything an import may write, to compare before and after a dry run."""
    with study.engine.connect() as connection:
        return {
            "observations": connection.execute(
                select(Observation.subject_id, Observation.test, Observation.value).order_by(
                    Observation.id
                )
            ).all(),
            "subjects": connection.execute(select(Subject.code).order_by(Subject.id)).all(),
            "batches": connection.scalar(select(func.count()).select_from(ImportBatch)),
            "audit": connection.scalar(select(func.count()).select_from(AuditEvent)),
        }


def test_dry_run_counts_equal_the_real_run_on_a_fresh_study(study, write):
    path = write(
        "fresh.csv",
        LONG
        + "S001,2020-02-10 08:00,CRP,12,mg/L\n"
        + "S001,2020-02-10 08:00,CRP,12,mg/L\n"  # the same result twice: stored once
        + "P01,2020-02-10 08:00,CRP,30,mg/L\n"  # a new subject
        + "P02,2020-02-11 08:00,IL-6,7,pg/mL\n",  # another one
    )
    before = database_state(study)
    # S001 is one of the study's own subjects: registering into them (cohort "")
    dry = import_file(study, path, dry_run=True, register=True, cohort="")
    assert database_state(study) == before
    assert dry.batch_id is None
    real = import_file(study, path, register=True, cohort="")
    assert dry.counts == real.counts
    assert real.counts == {
        "inserted": 3,
        "updated": 0,
        "unchanged": 0,
        "subjects": 2,
        "subjects_updated": 0,
    }
    assert dry.report.counts == real.report.counts


def test_dry_run_counts_equal_the_real_run_on_a_reimport_with_one_changed_value(study, write):
    first = LONG + "S001,2020-02-10 08:00,CRP,12,mg/L\nS001,2020-02-11 08:00,CRP,9,mg/L\n"
    import_file(study, write("v1.csv", first))
    changed = write(
        "v2.csv",
        LONG
        + "S001,2020-02-10 08:00,CRP,12,mg/L\n"
        + "S001,2020-02-11 08:00,CRP,19,mg/L\n"  # changed: an audited update
        + "S002,2020-02-12 08:00,CRP,3,mg/L\n",  # new
    )
    before = database_state(study)
    dry = import_file(study, changed, dry_run=True)
    assert database_state(study) == before  # no update, no batch, no audit row
    real = import_file(study, changed)
    assert dry.counts == real.counts
    assert real.counts == {
        "inserted": 1,
        "updated": 1,
        "unchanged": 1,
        "subjects": 0,
        "subjects_updated": 0,
    }
    assert database_state(study) != before


def test_dry_run_of_a_refused_file_writes_nothing_either(study, write):
    path = write("refused.csv", LONG + "P09,2020-02-10 08:00,CRP,12,mg/L\nS001,x,CRP,1,mg/L\n")
    before = database_state(study)
    error = refused(study, path, dry_run=True, register=True)
    assert list(error.report.errors["kind"]) == ["bad_time"]
    assert database_state(study) == before


def test_dry_run_of_a_bulk_load_keeps_the_indexes(study, write, monkeypatch):
    """A first chunk large enough for the bulk path drops and rebuilds the indexes on SQLite:
    a dry run rolls that back too."""
    from celltrial.ingest import storage

    monkeypatch.setattr(storage, "BULK_ROWS", 2)
    with study.engine.connect() as connection:
        if connection.dialect.name != "sqlite":
            pytest.skip("the bulk path is SQLite's")
        indexes = connection.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'observation'"
        ).all()
    lines = "".join(f"S001,2020-02-{d:02d} 08:00,CRP,{d},mg/L\n" for d in range(1, 6))
    dry = import_file(study, write("bulk.csv", LONG + lines), dry_run=True)
    assert dry.counts["inserted"] == 5
    with study.engine.connect() as connection:
        after = connection.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'observation'"
        ).all()
    assert sorted(after) == sorted(indexes) and len(indexes) > 0
    assert stored_count(study) == 0
