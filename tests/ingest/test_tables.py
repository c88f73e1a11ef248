"""CSV and workbook files read through ingest.tables: what pandas or openpyxl would take silently
(shifted rows, renamed duplicate columns, a second header, unsaved formulas, error cells, NUL
bytes) or report in their own words is one message naming the file and the row or cell."""

from __future__ import annotations

import datetime as dt

import pytest
from openpyxl import Workbook
from sqlalchemy import func, select

from celltrial.errors import DataError
from celltrial.ingest import ImportRefused, import_file
from celltrial.ingest.tables import read_csv_chunks, read_csv_table, read_workbook_sheet
from celltrial.store.models import ImportBatch, Subject

HEADER = "subject_id,time,test,value,unit\n"
ROW = "S001,2020-02-10 08:00,CRP,12,mg/L\n"


def workbook(tmp_path, rows, *, name="labs.xlsx", edit=None):
    book = Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    if edit is not None:
        edit(sheet)
    path = tmp_path / name
    book.save(path)
    return path


def test_first_row_longer_than_the_header_is_refused_not_shifted(write):
    # pandas takes the extra leading cells as row labels: every value moves one column left
    path = write("labs.csv", HEADER + "S001,2020-02-10 08:00,CRP,12,mg/L,extra\n")
    with pytest.raises(DataError, match=r"labs\.csv: row 2 has more cells than the header"):
        read_csv_table(path, dtype=str)


def test_later_row_longer_than_the_header_names_its_line(write):
    path = write("labs.csv", HEADER + ROW + "S001,2020-02-11 08:00,CRP,1,2,mg/L\n")
    with pytest.raises(DataError, match="line 3 has 6 cells but the header row has 5 columns"):
        list(read_csv_chunks(path, chunk_rows=10, dtype=str))


def test_unclosed_quote_is_said_in_plain_words(write):
    path = write("labs.csv", HEADER + 'S001,"2020-02-10 08:00,CRP,12,mg/L\n')
    with pytest.raises(DataError, match="quoted value that starts on line 2 is never closed") as e:
        read_csv_table(path, dtype=str)
    assert "C error" not in str(e.value)


@pytest.mark.parametrize("workbook_file", [False, True])
def test_two_columns_with_one_name_are_refused(tmp_path, write, workbook_file):
    if workbook_file:
        path = workbook(tmp_path, [["subject_id", "time", "test", "value", "value"]])
        read = read_workbook_sheet
    else:
        path = write("labs.csv", "subject_id,time,test,value,value\nS001,2020-02-10,CRP,1,2\n")
        read = read_csv_table
    with pytest.raises(DataError, match="columns 4 and 5 are both named 'value'"):
        read(path)


def test_a_repeated_header_row_is_refused_and_registers_no_subject(study, write):
    path = write("labs.csv", HEADER + ROW + HEADER + ROW.replace("S001", "S002"))
    with pytest.raises(DataError, match=r"row\(s\) 3 repeat the header row"):
        import_file(study, path, register=True)
    with study.engine.connect() as connection:
        codes = set(connection.scalars(select(Subject.code)))
        batches = connection.scalar(select(func.count()).select_from(ImportBatch))
    assert codes == {"S001", "S002"} and batches == 0  # no subject called "subject_id"


def test_formula_without_a_saved_result_is_refused_naming_the_cell(tmp_path):
    # openpyxl (and other programs) write formulas without their result: read as empty cells
    path = workbook(
        tmp_path,
        [
            ["subject_id", "time", "test", "value"],
            ["S001", dt.datetime(2020, 2, 10), "CRP", "=1+1"],
        ],
    )
    with pytest.raises(DataError, match=r"labs\.xlsx: cell\(s\) D2 \(=1\+1\) hold a formula"):
        read_workbook_sheet(path)


def test_excel_error_cells_are_kept_as_their_text(tmp_path):
    def error(sheet):
        sheet["D2"].value = "#DIV/0!"
        sheet["D2"].data_type = "e"

    path = workbook(
        tmp_path,
        [["subject_id", "time", "test", "value"], ["S001", dt.datetime(2020, 2, 10), "CRP", 1.0]],
        edit=error,
    )
    table = read_workbook_sheet(path)
    assert table.loc[0, "value"] == "#DIV/0!"  # pandas gives an empty cell: a result lost


def test_error_cell_result_is_reported_by_row_not_dropped(study, tmp_path):
    def error(sheet):
        sheet["D3"].value = "#N/A"
        sheet["D3"].data_type = "e"

    when = dt.datetime(2020, 2, 10, 8)
    path = workbook(
        tmp_path,
        [
            ["subject_id", "time", "test", "value", "unit"],
            ["S001", when, "CRP", 12, "mg/L"],
            ["S001", when + dt.timedelta(days=1), "CRP", 1, "mg/L"],
        ],
        edit=error,
    )
    result = import_file(study, path)
    messages = result.report.messages
    assert result.report.counts["results"] == 2 and result.report.counts["reported"] == 1
    assert (messages["row"] == 3).any() and "#N/A" in set(messages["value"].astype(str))


def test_nul_byte_is_refused_naming_the_line(tmp_path):
    path = tmp_path / "labs.csv"
    path.write_bytes((HEADER + ROW).encode() + b"S00\x001,2020-02-11 08:00,CRP,1,mg/L\n")
    with pytest.raises(DataError, match=r"labs\.csv: line 3 holds a NUL character"):
        read_csv_table(path, dtype=str)


def test_damaged_workbook_is_said_in_plain_words(tmp_path):
    good = workbook(tmp_path, [["subject_id", "time", "test", "value"], ["S001", 1, "CRP", 2]])
    damaged = tmp_path / "cut.xlsx"
    damaged.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DataError, match=r"cut\.xlsx: cannot read the workbook: the workbook is "):
        read_workbook_sheet(damaged)


def test_workbook_text_that_looks_like_a_number_stays_text(study, tmp_path):
    # pandas turned the text "-4552…" (400 digits) into a Python int, which overflowed later
    when = dt.datetime(2020, 2, 10, 8)
    path = workbook(
        tmp_path,
        [
            ["subject_id", "time", "test", "value", "unit"],
            ["S001", when, "CRP", "-4552" + "1" * 400, "mg/L"],
            ["S001", when + dt.timedelta(days=1), "CRP", 3, "mg/L"],
        ],
    )
    result = import_file(study, path)
    assert result.report.counts == {"results": 2, "stored": 1, "flagged": 0, "reported": 1}


def test_a_header_cell_beyond_the_csv_limit_is_named(write):
    # pandas reads it; the csv module, which reads the header as written, refuses it
    path = write("labs.csv", "subject_id," + "x" * 200_000 + "\nS001,1\n")
    with pytest.raises(DataError, match=r"labs\.csv: the header row holds a cell of more than"):
        read_csv_table(path, dtype=str)


def test_a_workbook_number_beyond_2_53_stays_a_float(tmp_path):
    # pandas made 1E+308 a 309-digit Python int: its text overflowed the stored raw value
    path = workbook(tmp_path, [["subject_id", "value"], ["S001", 1e308]])
    assert read_workbook_sheet(path, dtype=object).loc[0, "value"] == 1e308
    assert isinstance(read_workbook_sheet(path, dtype=object).loc[0, "value"], float)


def test_a_result_longer_than_the_database_keeps_is_an_error_by_row(study, write):
    # the update path kept the whole text, and the length check refused the file without a row;
    # now the length is checked before the database, the same on SQLite and PostgreSQL
    long = "0." + "0" * 70 + "1"
    import_file(study, write("a.csv", HEADER + "S001,2020-02-10 08:00,CRP,12,mg/L\n"))
    with pytest.raises(ImportRefused) as refused:
        import_file(study, write("b.csv", HEADER + f"S001,2020-02-10 08:00,CRP,{long},mg/L\n"))
    error = refused.value.report.errors.iloc[0]
    assert (error["kind"], error["row"], error["column"]) == ("too_long", 2, "value")
