"""Subject IDs are text exactly as written, in every reader (issue 22): ``00123`` is not 123,
``1e5`` is not 100000, a hex pseudonym ``024e7871`` is not a number (it overflowed a float)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from openpyxl import Workbook
from sqlalchemy import select

from celltrial.ingest import import_file
from celltrial.ingest.mapping import Mapping
from celltrial.ingest.tables import id_text, read_table
from celltrial.store.models import Subject

WRITTEN = ["00123", "1e5", "024e7871", "7.0"]
WIDE = ["PATIENT_ID", "RE_DATE", "age", "gender", "Admission time", "Discharge time", "CRP"]
LONG = ["subject_id", "time", "test", "value", "unit"]


def codes(study, cohort: str) -> list[str]:
    with study.engine.connect() as connection:
        return sorted(connection.scalars(select(Subject.code).where(Subject.cohort == cohort)))


def wide_cells(subject: object) -> list[object]:
    return [subject, "2020-02-10 08:00", 61, "M", "2020-02-01", "2020-03-01", 12]


def long_cells(subject: object) -> list[object]:
    return [subject, "2020-02-10 08:00", "CRP", 12, "mg/L"]


def csv_file(tmp_path, layout: str, ids: list[object]):
    header, cells = (WIDE, wide_cells) if layout == "wide" else (LONG, long_cells)
    lines = [",".join(header)] + [",".join(map(str, cells(i))) for i in ids]
    path = tmp_path / f"{layout}.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def workbook(tmp_path, layout: str, ids: list[object]):
    header, cells = (WIDE, wide_cells) if layout == "wide" else (LONG, long_cells)
    book = Workbook()
    book.active.append(header)
    for subject in ids:
        book.active.append(cells(subject))
    path = tmp_path / f"{layout}.xlsx"
    book.save(path)
    return path


@pytest.mark.parametrize("layout", ["wide", "long"])
def test_csv_ids_are_stored_as_written(study, tmp_path, layout):
    result = import_file(study, csv_file(tmp_path, layout, WRITTEN), register=True, cohort="c")
    assert result.layout == layout
    assert codes(study, "c") == sorted(WRITTEN)
    assert result.report.ok


@pytest.mark.parametrize("layout", ["wide", "long"])
def test_workbook_text_ids_are_kept_and_numbers_lose_no_digits(study, tmp_path, layout):
    # text cells as typed (leading zeros kept); cells Excel typed as numbers: 123, not 123.0
    ids = [*WRITTEN, 123, 124.0, 6.5]
    result = import_file(study, workbook(tmp_path, layout, ids), register=True, cohort="x")
    assert result.layout == layout
    assert codes(study, "x") == sorted([*WRITTEN, "123", "124", "6.5"])


def test_ids_carried_down_in_a_wide_csv_stay_text(study, tmp_path):
    # the Tongji export writes a patient's ID on the first of its rows only
    lines = [",".join(WIDE)]
    for subject in WRITTEN:
        lines.append(",".join(map(str, wide_cells(subject))))
        lines.append(
            ",".join(map(str, ["", "2020-02-11 08:00", 61, "M", "2020-02-01", "2020-03-01", 9]))
        )
    path = tmp_path / "carried.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = import_file(study, path, register=True, cohort="c")
    assert codes(study, "c") == sorted(WRITTEN)
    assert result.counts["inserted"] == 8


def test_results_of_text_ids_reach_known_subjects(study, tmp_path):
    # the study's own subject 00123 gets the results of 00123, not of 123
    lines = [",".join(LONG), ",".join(map(str, long_cells("S001")))]
    path = tmp_path / "own.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert import_file(study, path).counts["inserted"] == 1


@pytest.mark.parametrize(
    ("cell", "text"),
    [
        ("00123", "00123"),
        (" 1e5 ", "1e5"),
        ("024e7871", "024e7871"),
        (123, "123"),
        (7.0, "7"),
        (6.5, "6.5"),
        (2.5e20, "2.5e+20"),
        (float("nan"), None),
        ("", None),
        (None, None),
    ],
)
def test_id_text(cell, text):
    assert id_text(cell) == text


def test_read_table_reads_only_the_id_columns_as_text(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("subject_id,value\n00123,0012\n", encoding="utf-8")
    table = read_table(path, id_columns=["subject_id"])
    assert table["subject_id"].tolist() == ["00123"]
    assert table["value"].tolist() == [12]  # other columns as pandas reads them
    book = Workbook()
    book.active.append(["subject_id", "time"])
    book.active.append([123, dt.datetime(2020, 2, 10)])
    book.save(tmp_path / "t.xlsx")
    sheet = read_table(tmp_path / "t.xlsx", id_columns=lambda header: [header[0]], dtype=object)
    assert sheet["subject_id"].tolist() == ["123"]
    assert isinstance(sheet["time"].iloc[0], dt.datetime | pd.Timestamp)


def test_mapping_names_the_id_column(tmp_path):
    from celltrial.ingest.columns import subject_id_column

    mapping = Mapping(columns={"subject": "Pseudonym"})
    assert subject_id_column(mapping)(["Pseudonym", "x"]) == ["Pseudonym"]
