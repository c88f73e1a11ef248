"""Adverse-event files with times that are no times, or a shape pandas would misread: refused
naming the file and row (times such as "now" or "08:00" were given the import's date; a first
row longer than the header shifted every value by a column)."""

from __future__ import annotations

import pytest

from celltrial.errors import DataError
from celltrial.safety.recording import read_adverse_events_csv

ZONE = "Asia/Shanghai"
HEADER = "subject_id,term,onset,grade,serious\n"


def write(tmp_path, text: str):
    path = tmp_path / "ae.csv"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("onset", ["now", "08:00", "Feb 2020", "0001-01-01", "9999-12-31 10:00"])
def test_onsets_without_a_real_date_are_refused(tmp_path, onset):
    path = write(tmp_path, HEADER + f"S001,Fever,{onset},1,no\n")
    with pytest.raises(
        DataError, match=rf"(?s)ae\.csv: .*row 2, onset: '{onset}' — expected a date"
    ):
        read_adverse_events_csv(path, zone=ZONE)


def test_a_first_row_longer_than_the_header_is_refused_not_shifted(tmp_path):
    path = write(tmp_path, HEADER + "S001,Fever,2020-02-12 14:00,1,no,extra\n")
    with pytest.raises(DataError, match=r"ae\.csv: row 2 has more cells than the header row"):
        read_adverse_events_csv(path, zone=ZONE)


def test_two_columns_with_one_name_are_named_as_written(tmp_path):
    # pandas renamed the second one "term.1", a name that is not in the file
    path = write(tmp_path, "subject_id,term,term,onset\nS001,Fever,Chills,2020-02-12 14:00\n")
    with pytest.raises(DataError, match="columns 2 and 3 are both named 'term'"):
        read_adverse_events_csv(path, zone=ZONE)


@pytest.mark.parametrize("grade", ["2" * 400, "1_000", "3.5", "-"])
def test_a_grade_that_is_no_small_whole_number_is_named(tmp_path, grade):
    # 400 digits became a Python int that pandas 3.0 could not hold (OverflowError, found by the
    # fuzz suite on the minimum versions); int() also took "1_000"
    path = write(tmp_path, HEADER + f"S001,Fever,2020-02-12 14:00,{grade},no\n")
    with pytest.raises(DataError, match=r"row 2, grade: .* — expected a whole number 1–5"):
        read_adverse_events_csv(path, zone=ZONE)
