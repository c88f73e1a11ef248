"""Wide LIS files: subject IDs as written, and subject fields that cannot be read reported, never
dropped (IDs such as 6.5 or 1e+20 and ages such as 1e308 raised pandas errors)."""

from __future__ import annotations

import datetime as dt

import pytest
from openpyxl import Workbook
from sqlalchemy import select

from celltrial.errors import DataError
from celltrial.ingest import ImportRefused, import_file
from celltrial.store.models import Subject

HEADER = [
    "PATIENT_ID",
    "RE_DATE",
    "age",
    "gender",
    "Admission time",
    "Discharge time",
    "outcome",
    "lymphocyte count",
]
ADMITTED, DISCHARGED = dt.datetime(2020, 2, 1), dt.datetime(2020, 3, 1)


def sheet(tmp_path, *rows, name="wide.xlsx"):
    book = Workbook()
    for row in (HEADER, *rows):
        book.active.append(list(row))
    path = tmp_path / name
    book.save(path)
    return path


def row(patient, **changes):
    values = dict(
        zip(
            HEADER,
            [patient, dt.datetime(2020, 2, 10, 8), 61, 1, ADMITTED, DISCHARGED, 0, 0.8],
            strict=True,
        )
    )
    values.update(changes)
    return list(values.values())


def codes(study):
    with study.engine.connect() as connection:
        return set(connection.scalars(select(Subject.code).where(Subject.cohort == "wide")))


@pytest.mark.parametrize(
    ("cell", "code"), [(6.5, "6.5"), (2.5e20, "2.5e+20"), (7.0, "7"), ("007", "007")]
)
def test_subject_ids_are_kept_as_written(study, tmp_path, cell, code):
    path = sheet(tmp_path, row(cell))
    import_file(study, path, register=True, cohort="wide")
    assert codes(study) == {code}


def test_csv_ids_keep_their_leading_zeros(study, write):
    text = ",".join(HEADER) + "\n007,2020-02-10 08:00,61,1,2020-02-01,2020-03-01,0,12\n"
    import_file(study, write("wide.csv", text), register=True, cohort="wide")
    assert codes(study) == {"007"}


def test_first_row_without_an_id_names_the_file_row_and_column(study, tmp_path):
    path = sheet(tmp_path, row(None), row(None))
    with pytest.raises(DataError, match=r"wide\.xlsx: row 2, column PATIENT_ID: no subject ID"):
        import_file(study, path, register=True)


@pytest.mark.parametrize("admitted", [dt.datetime(1, 1, 1), "0001-01-01", "31/02/2020", 1e300])
def test_unreadable_admission_time_is_an_error_not_a_blank(study, tmp_path, admitted):
    path = sheet(tmp_path, row(1, **{"Admission time": admitted}))
    with pytest.raises(ImportRefused) as refused:
        import_file(study, path, register=True)
    errors = refused.value.report.errors
    assert list(errors["kind"]) == ["bad_time"] and list(errors["column"]) == ["Admission time"]
    assert codes(study) == set()


@pytest.mark.parametrize(
    ("age", "shown"), [("sixty", "sixty"), (1e308, "1e+308"), (-3, "-3"), ("inf", "inf")]
)
def test_an_age_that_is_not_an_age_is_a_warning_and_left_empty(study, tmp_path, age, shown):
    path = sheet(tmp_path, row(1, age=age))
    result = import_file(study, path, register=True, cohort="wide")
    bad = result.report.messages.query("kind == 'bad_subject_fact'")
    assert bad[["severity", "row", "column", "value"]].values.tolist() == [
        ["warning", 2, "age", shown]
    ]
    assert "a number of years from 0 to 120" in bad["expected"].iloc[0]
    with study.engine.connect() as connection:
        query = select(Subject.code, Subject.age).where(Subject.cohort == "wide")
        assert connection.execute(query).all() == [("1", None)]


def test_a_huge_whole_number_in_a_csv_is_reported_not_a_crash(study, write):
    text = ",".join(HEADER) + f"\n1,2020-02-10 08:00,61,1,2020-02-01,2020-03-01,0,{'3' * 400}\n"
    # its only result cannot be stored: the import that would store nothing is refused
    with pytest.raises(ImportRefused) as refused:
        import_file(study, write("wide.csv", text), register=True, cohort="wide")
    report = refused.value.report
    assert report.counts == {"results": 1, "stored": 0, "flagged": 0, "reported": 1}
    assert report.errors["kind"].tolist() == ["nothing_stored"]


def test_rows_with_nothing_in_them_are_not_draws(study, write):
    # Excel saves empty rows as ",,,,": carried down, they made the patient's fields differ
    text = (
        ",".join(HEADER)
        + "\n1,2020-02-10 08:00,61,1,2020-02-01,2020-03-01,0,12\n"
        + ",,,,,,,\n"
        + ",2020-02-11 08:00,61,1,2020-02-01,2020-03-01,0,8\n"
        + ",,,,,,,\n"
    )
    result = import_file(study, write("wide.csv", text), register=True, cohort="wide")
    assert result.counts["inserted"] == 2
    assert not {3, 5} & set(result.report.messages["row"].dropna())  # the empty rows
