"""Result times: a cell must name a whole date in 1900–2099; nothing is completed with a guessed
date, and a placeholder date can no longer put a row into the database that breaks every later
read of the study."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from celltrial.ingest import ImportRefused, import_file
from celltrial.ingest.times import parse_time, parse_times

ZONE = "Asia/Shanghai"


@pytest.mark.parametrize(
    "cell",
    [
        "08:00",  # a clock time: pandas gives it today's date
        dt.time(8, 0),  # a workbook cell holding only a time
        "now",  # pandas: the moment of the import
        "today",
        "Feb 2020",  # a month: pandas makes it the 1st
        "2020",  # a year: pandas makes it 1 January
        "10 8",  # pandas: 8 October of year 1
        "-1",
        "0001-01-01",
        "9999-12-31",
        "0001-01-01T00:00+08:00",
        "9999-12-31T23:00-05:00",
        dt.datetime(1899, 12, 30, 8, 0),  # Excel's day zero under a bare time
    ],
)
def test_cells_without_a_real_date_are_unreadable(cell):
    times, unreadable = parse_times(pd.Series([cell, "2020-02-10 08:00"], dtype=object), ZONE)
    assert pd.isna(times.iloc[0]) and bool(unreadable.iloc[0])
    assert times.iloc[1] == pd.Timestamp("2020-02-10 00:00", tz="UTC")


def test_years_1_and_9999_in_datetime_cells_raise_nothing():
    stamps = [dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31, 23), dt.datetime(2020, 2, 10)]
    times, unreadable = parse_times(pd.Series(stamps, dtype="datetime64[us]"), ZONE)
    assert unreadable.tolist() == [True, True, False]
    assert times.iloc[2] == pd.Timestamp("2020-02-09 16:00", tz="UTC")


def test_a_month_name_date_is_not_read_as_an_offset():
    # "-2020" in 10-Feb-2020 was taken for a UTC offset: the date was unreadable
    times, unreadable = parse_times(pd.Series(["10-Feb-2020"]), "UTC")
    assert times.iloc[0] == pd.Timestamp("2020-02-10", tz="UTC") and not unreadable.iloc[0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("now", "expected a date and time"),
        ("08:00", "expected a date and time"),
        ("0001-01-01", "expected a date in the years 1900–2099"),
    ],
)
def test_typed_times_need_a_real_date(text, message):
    with pytest.raises(ValueError, match=message):
        parse_time(text, ZONE)


def test_a_placeholder_date_is_refused_and_the_study_stays_readable(study, write):
    # 0001-01-01 in UTC+8 is a time in year 0: stored, it broke every later read of the table
    header = "subject_id,time,test,value,unit\n"
    bad = write("bad.csv", header + "S001,0001-01-01,CRP,12,mg/L\n")
    with pytest.raises(ImportRefused) as refused:
        import_file(study, bad)
    assert list(refused.value.report.errors["kind"]) == ["bad_time"]
    good = write("good.csv", header + "S001,2020-02-10 08:00,CRP,12,mg/L\n")
    assert import_file(study, good).counts["inserted"] == 1
