"""Files that would store wrong data are refused: misaligned columns, dates read one way per
file, size caps, database lengths; validation before the write lock."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pandas as pd
import pytest
from openpyxl import Workbook
from sqlalchemy import select

from celltrial.errors import DataError
from celltrial.ingest import ImportRefused, import_file
from celltrial.ingest.mapping import read_mapping
from celltrial.ingest.report import NOT_IMPORTED, STATUS_COLUMN
from celltrial.ingest.times import DateOrder, parse_time, parse_times
from celltrial.store.database import study_session
from celltrial.store.models import Observation, Subject

LONG = "subject_id,time,test,value,unit\n"


def refused(study, path, **options) -> ImportRefused:
    with pytest.raises(ImportRefused) as caught:
        import_file(study, path, **options)
    return caught.value


def observations(study) -> list[tuple]:
    with study.engine.connect() as connection:
        return connection.execute(
            select(Observation.time, Observation.value, Observation.ref_low)
        ).all()


def subject_codes(study) -> list[str]:
    with study.engine.connect() as connection:
        return sorted(connection.scalars(select(Subject.code)))


# --- 2. misaligned files are refused ------------------------------------------------------------


def test_subject_column_holding_test_names_is_refused_and_registers_nobody(study, write):
    # header in another order: the subject column holds the test names
    path = write("swapped.csv", LONG + "CRP,2020-02-10 08:00,S001,12,mg/L\n")
    error = refused(study, path, register=True)
    kinds = error.report.errors["kind"].tolist()
    assert "misaligned_columns" in kinds
    message = error.report.errors.query("kind == 'misaligned_columns'").iloc[0]
    assert "column subject_id holds test names, not subject IDs" in message["expected"]
    assert "shifted" in str(error)
    assert subject_codes(study) == ["S001", "S002"] and observations(study) == []


def test_subject_column_holding_times_is_refused(study, write):
    path = write(
        "shifted.csv",
        "time,subject_id,test,value,unit\n"
        "S001,2020-02-10 08:00,CRP,12,mg/L\nS002,2020-02-11 08:00,CRP,13,mg/L\n",
    )
    error = refused(study, path, register=True, cohort="x")
    message = error.report.errors.query("kind == 'misaligned_columns'").iloc[0]
    assert "holds times, not subject IDs" in message["expected"]
    assert subject_codes(study) == ["S001", "S002"]


def test_a_file_whose_every_result_is_dropped_is_refused(study, write):
    path = write("nothing.csv", LONG + "S001,2020-02-10 08:00,NOT A TEST,12,mg/L\n")
    error = refused(study, path)
    assert error.report.errors["kind"].tolist() == ["nothing_stored"]
    assert "none of the file's 1 results" in str(error)


def test_a_few_decimal_codes_among_others_are_still_subjects(study, write):
    text = LONG + "".join(f"{c},2020-02-10 08:00,CRP,12,mg/L\n" for c in ("6.5", "A1", "B2"))
    result = import_file(study, write("ids.csv", text), register=True, cohort="c")
    assert result.counts["subjects"] == 3


# --- 1. dates: one order per file, by a stated rule ---------------------------------------------


def test_a_date_that_reads_both_ways_is_refused_with_what_to_put_in_the_mapping(study, write):
    path = write("dmy.csv", LONG + "S001,10/02/2020 08:00,CRP,12,mg/L\n")
    error = refused(study, path)
    message = error.report.errors.iloc[0]
    assert (message["kind"], message["row"], message["value"]) == (
        "ambiguous_date",
        2,
        "10/02/2020 08:00",
    )
    assert "10 February or 2 October" in message["expected"]
    assert "date_format: DD/MM/YYYY" in message["expected"]


@pytest.mark.parametrize("first", [True, False])
def test_one_date_that_reads_one_way_decides_the_whole_file_in_any_order(study, write, first):
    rows = ["S001,10/02/2020 08:00,CRP,12,mg/L\n", "S001,13/02/2020 08:00,CRP,9,mg/L\n"]
    text = LONG + "".join(rows if first else rows[::-1])
    import_file(study, write("evidence.csv", text))
    days = sorted(pd.Timestamp(t).day for t, _v, _r in observations(study))
    assert days == [10, 13]  # 10 February, never 2 October


def test_the_mapping_states_the_order(study, write, tmp_path):
    mapping = tmp_path / "m.yaml"
    mapping.write_text("date_format: DD/MM/YYYY\n", encoding="utf-8")
    import_file(
        study, write("dmy.csv", LONG + "S001,10/02/2020 08:00,CRP,12,mg/L\n"), mapping=mapping
    )
    (when, _value, _ref) = observations(study)[0]
    assert (pd.Timestamp(when).month, pd.Timestamp(when).day) == (2, 10)


def test_dates_that_prove_both_orders_are_an_error():
    order = DateOrder()
    _times, bad = parse_times(pd.Series(["13/02/2020", "02/13/2020"]), "UTC", order=order)
    assert bad.tolist() == [False, True] and order.order == "dmy"


def test_mapping_date_format_must_name_an_order(tmp_path):
    mapping = tmp_path / "m.yaml"
    mapping.write_text("date_format: YYYY\n", encoding="utf-8")
    with pytest.raises(DataError, match="DD/MM/YYYY"):
        read_mapping(mapping)


def test_a_typed_time_that_reads_both_ways_is_refused():
    with pytest.raises(ValueError, match="10 February or 2 October"):
        parse_time("10/02/2020 14:30", "UTC")
    assert parse_time("13/02/2020 14:30", "UTC").day == 13
    assert parse_time("10/02/2020 14:30", "UTC", dayfirst=True).month == 2


def test_a_time_more_than_a_day_in_the_future_is_an_error(study, write):
    later = (pd.Timestamp.now() + pd.Timedelta(days=3)).strftime("%Y-%m-%d %H:%M")
    error = refused(study, write("future.csv", LONG + f"S001,{later},CRP,12,mg/L\n"))
    assert error.report.errors["kind"].tolist() == ["bad_time"]
    assert error.report.errors["row"].tolist() == [2]


def test_an_unreadable_death_date_in_a_wide_file_is_an_error(study, write):
    text = "PATIENT_ID,RE_DATE,outcome,Death time,CRP\nS001,2020-02-10 08:00,died,31/02/2020,12\n"
    error = refused(study, write("death.csv", text))
    # unreadable, and so a subject who died without a date: both on the death column
    assert {tuple(r) for r in error.report.errors[["kind", "column", "row"]].values} == {
        ("bad_time", "Death time", 2)
    }


# --- 4. caps before reading ---------------------------------------------------------------------


def test_a_csv_with_too_many_columns_is_refused_before_it_is_read(study, write):
    header = ",".join(f"c{i}" for i in range(6000))
    path = write("wide.csv", "subject_id,time," + header + "\nS001,2020-02-10," + "," * 5999 + "\n")
    started = time.perf_counter()
    with pytest.raises(DataError, match="6,002 columns; expected at most 5,000"):
        import_file(study, path)
    assert time.perf_counter() - started < 5


def test_a_workbook_spanning_the_whole_sheet_is_refused_before_it_is_read(study, tmp_path):
    book = Workbook()
    book.active.append(["subject_id", "time", "test", "value", "unit"])
    book.active["XFD1048576"] = 1
    path = tmp_path / "far.xlsx"
    book.save(path)
    with pytest.raises(DataError, match="16,384 columns"):
        import_file(study, path)


def test_a_mapping_with_yaml_aliases_is_refused(tmp_path):
    mapping = tmp_path / "bomb.yaml"
    mapping.write_text('a: &a ["x", "x"]\nb: &b [*a, *a]\ncolumns: {}\n', encoding="utf-8")
    started = time.perf_counter()
    with pytest.raises(DataError, match="line 1: YAML anchors and aliases"):
        read_mapping(mapping)
    assert time.perf_counter() - started < 1


# --- 7. what the database keeps, the same on both backends --------------------------------------


def test_a_subject_code_longer_than_64_characters_is_an_error_by_row(study, write):
    code = "S" * 65
    error = refused(
        study,
        write("long.csv", LONG + f"{code},2020-02-10 08:00,CRP,12,mg/L\n"),
        register=True,
        cohort="c",
    )
    message = error.report.errors.iloc[0]
    assert (message["kind"], message["row"], message["column"]) == ("too_long", 2, "subject_id")
    assert subject_codes(study) == ["S001", "S002"]


def test_a_unit_longer_than_the_database_keeps_is_an_error_by_row(study, write):
    unit = "mg/L" + "x" * 40
    error = refused(study, write("unit.csv", LONG + f"S001,2020-02-10 08:00,CRP,12,{unit}\n"))
    assert "too_long" in error.report.errors["kind"].tolist()


def test_infinity_is_never_stored(study, write):
    text = (
        "subject_id,time,test,value,unit,ref_low\n"
        "S001,2020-02-10 08:00,CRP,5,mg/L,1e309\n"
        "S001,2020-02-11 08:00,CRP,1e308,mg/dL,\n"  # 1e309 mg/L once converted
    )
    result = import_file(study, write("inf.csv", text))
    kinds = set(result.report.messages["kind"])
    assert {"bad_reference", "not_finite"} <= kinds
    assert observations(study) == [(observations(study)[0][0], 5.0, None)]


def test_the_report_of_a_refused_import_says_nothing_was_stored(study, write):
    error = refused(study, write("bad.csv", LONG + "S001,31/02/2020,CRP,12,mg/L\n"))
    written = pd.read_csv(error.report_csv, dtype=str)
    assert written.columns[0] == STATUS_COLUMN
    assert set(written[STATUS_COLUMN]) == {NOT_IMPORTED}


# --- 3. validation before the write lock --------------------------------------------------------


@pytest.mark.parametrize("dry_run", [False, True])
def test_another_connection_writes_while_the_file_is_validated(study, write, monkeypatch, dry_run):
    from celltrial.ingest import importer

    original = importer.check_results
    wrote: list[float] = []

    def add_subject() -> None:
        started = time.perf_counter()
        with study_session(study.engine, user="other", reason="meanwhile") as session:
            session.add(
                Subject(
                    study_id=study.study_id, code="S9", enrolled_at=datetime(2020, 2, 1, tzinfo=UTC)
                )
            )
        wrote.append(time.perf_counter() - started)

    def slow_check(*args, **kwargs):
        writer = threading.Thread(target=add_subject)
        writer.start()
        writer.join(timeout=10)  # an import holding the write lock would make it wait 60 s
        assert not writer.is_alive(), "another connection could not write during validation"
        return original(*args, **kwargs)

    monkeypatch.setattr(importer, "check_results", slow_check)
    path = write("labs.csv", LONG + "S001,2020-02-10 08:00,CRP,12,mg/L\n")
    result = import_file(study, path, dry_run=dry_run)
    assert wrote and wrote[0] < 5
    assert result.counts["inserted"] == 1
    assert "S9" in subject_codes(study)
    assert len(observations(study)) == (0 if dry_run else 1)
