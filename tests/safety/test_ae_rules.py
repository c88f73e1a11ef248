"""Adverse-event files and entries: every problem reported at once, each on the file's line
(header = line 1, as the lab import counts), and onsets checked against the subject's time in the
study (enrolment, or the first infusion without one; death; now)."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from celltrial.errors import DataError
from celltrial.safety.recording import import_adverse_events, record_adverse_event
from celltrial.store.database import study_session
from celltrial.store.models import AdverseEvent, Infusion, Subject
from celltrial.study import init_study
from tests.store.backends import migrated_default_database

ZONE = "Asia/Shanghai"  # the built-in protocol's zone: UTC+8, no daylight saving
NOW = datetime(2020, 3, 1, 4, 0, tzinfo=UTC)  # 2020-03-01 12:00 local
HEADER = "subject_id,term,onset,grade,outcome,description\n"


def utc(text: str) -> datetime:
    return pd.Timestamp(text, tz="UTC").to_pydatetime()


@pytest.fixture
def study(tmp_path):
    """S001 enrolled 2020-02-10 08:00 local, first infusion 2020-02-11 10:00; S002 without an
    enrolment date, first infusion 2020-02-12 10:00; S003 enrolled, died 2020-02-20 12:00;
    S004 neither enrolled nor infused."""
    migrated_default_database(tmp_path / "s")
    study = init_study(tmp_path / "s")
    with study_session(study.engine, user="coordinator") as session:
        subjects = {
            "S001": Subject(study_id=study.study_id, code="S001", enrolled_at=utc("2020-02-10")),
            "S002": Subject(study_id=study.study_id, code="S002"),
            "S003": Subject(
                study_id=study.study_id,
                code="S003",
                enrolled_at=utc("2020-02-10"),
                died_at=utc("2020-02-20 04:00"),
            ),
            "S004": Subject(study_id=study.study_id, code="S004"),
        }
        session.add_all(subjects.values())
        session.flush()
        for code, start in (("S001", "2020-02-11 02:00"), ("S002", "2020-02-12 02:00")):
            session.add(Infusion(subject_id=subjects[code].id, number=1, started_at=utc(start)))
    return study


def write(tmp_path, text: str):
    path = tmp_path / "ae.csv"
    path.write_text(text, encoding="utf-8")
    return path


def import_file(study, path, now=NOW):
    with study_session(study.engine, user="dm") as session:
        return import_adverse_events(session, study.study_id, path, zone=ZONE, now=now)


def refusal(study, path) -> list[str]:
    """The problem lines of a refused import (nothing stored)."""
    with pytest.raises(DataError) as caught:
        import_file(study, path)
    assert stored(study) == []
    head, *lines = str(caught.value).splitlines()
    assert head == f"{path}: {len(lines)} problem(s):"
    return [line.removeprefix("  - ") for line in lines]


def stored(study) -> list[tuple]:
    with study.engine.connect() as connection:
        return connection.execute(
            select(AdverseEvent.term, AdverseEvent.source_row).order_by(AdverseEvent.id)
        ).all()


def test_every_problem_of_the_file_is_reported_at_once_on_its_line(study, tmp_path):
    path = write(
        tmp_path,
        HEADER
        + "S001,Headache,2020-02-12 14:00,1,recovered,\n"  # line 2: fine
        + "S001,Fever,2020-02-12 15:00,9,recovered,\n"  # line 3: grade
        + "S009,Rash,2020-02-12 16:00,1,recovered,\n"  # line 4: unknown subject
        + "S001,Nausea,31/02/2020 10:00,1,recovered,\n"  # line 5: no such date
        + "S001,ARDS,2020-02-13 09:00,4,fatal,\n",  # line 6: fatal but grade 4
    )
    assert refusal(study, path) == [
        "row 3, grade: 9 — expected a CTCAE grade 1–5",
        "row 4, subject_id: unknown subject 'S009' — expected a subject of the study (known: "
        "S001, S002, S003, S004)",
        "row 5, onset: '31/02/2020 10:00' — expected a date and time, e.g. 2020-02-10 14:30 "
        "(local to Asia/Shanghai) or 2020-02-10T14:30+08:00",
        "row 6, grade: 4 — expected grade 5 for a fatal outcome",
    ]


def test_rows_are_the_files_lines_with_blank_lines_and_line_breaks_in_a_cell(study, tmp_path):
    path = write(
        tmp_path,
        HEADER
        + "S001,Headache,2020-02-12 14:00,1,recovered,\n"  # line 2
        + "\n"  # line 3: blank
        + 'S001,Cough,2020-02-12 15:00,1,recovered,"dry,\nat night"\n'  # lines 4-5
        + "S001,Fever,2020-02-12 16:00,7,recovered,\n",  # line 6
    )
    assert refusal(study, path) == ["row 6, grade: 7 — expected a CTCAE grade 1–5"]


def test_ae_rows_and_lab_rows_are_counted_the_same_way(study, tmp_path):
    """The third data row is line 4 in both imports."""
    from celltrial.ingest import ImportRefused
    from celltrial.ingest import import_file as import_labs

    labs = tmp_path / "labs.csv"
    labs.write_text(
        "subject_id,time,test,value,unit\n"
        "S001,2020-02-12 08:00,CRP,1,mg/L\n"
        "S001,2020-02-13 08:00,CRP,2,mg/L\n"
        "S001,not a time,CRP,3,mg/L\n",
        encoding="utf-8",
    )
    with pytest.raises(ImportRefused) as caught:
        import_labs(study, labs)
    assert caught.value.report.errors["row"].tolist() == [4]
    ae = write(
        tmp_path,
        HEADER
        + "S001,Headache,2020-02-12 14:00,1,recovered,\n"
        + "S001,Cough,2020-02-12 15:00,1,recovered,\n"
        + "S001,Fever,not a time,1,recovered,\n",
    )
    assert refusal(study, ae)[0].startswith("row 4, onset: 'not a time'")


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        # enrolment 2020-02-10 08:00 local: at it accepted, a minute before refused
        ("S001,Headache,2020-02-10 08:00,1,recovered,", None),
        (
            "S001,Headache,2020-02-10 07:59,1,recovered,",
            "row 2, onset: 2020-02-10 07:59 (Asia/Shanghai) — expected a time at or after "
            "subject S001's enrolment, 2020-02-10 08:00 (Asia/Shanghai) (an event before "
            "enrolment is medical history; or is the date wrong?)",
        ),
        # enrolled, before the first infusion: a pre-treatment event, accepted
        ("S001,Headache,2020-02-11 09:00,1,recovered,", None),
        # no enrolment date: the first infusion (2020-02-12 10:00 local) is the limit
        ("S002,Headache,2020-02-12 10:00,1,recovered,", None),
        (
            "S002,Headache,2020-02-12 09:59,1,recovered,",
            "row 2, onset: 2020-02-12 09:59 (Asia/Shanghai) — expected a time at or after "
            "subject S002's first infusion, 2020-02-12 10:00 (Asia/Shanghai): the subject has "
            "no enrolment date to accept an earlier event against (record it first, or correct "
            "the date)",
        ),
        # neither: nothing to check against
        ("S004,Headache,2020-01-01 10:00,1,recovered,", None),
        # death 2020-02-20 12:00 local: a fatal event at it accepted, a minute after refused
        ("S003,ARDS,2020-02-20 12:00,5,fatal,", None),
        (
            "S003,Rash,2020-02-20 12:01,1,recovered,",
            "row 2, onset: 2020-02-20 12:01 (Asia/Shanghai) — expected a time at or before "
            "subject S003's death, 2020-02-20 12:00 (Asia/Shanghai)",
        ),
        # now is 2020-03-01 12:00 local
        ("S001,Headache,2020-03-01 12:00,1,recovered,", None),
        (
            "S001,Headache,2020-03-01 12:01,1,recovered,",
            "row 2, onset: 2020-03-01 12:01 (Asia/Shanghai) — expected a time that has passed "
            "(now: 2020-03-01 12:00 (Asia/Shanghai))",
        ),
    ],
)
def test_onset_within_the_subjects_time_in_the_study(study, tmp_path, line, problem):
    path = write(tmp_path, HEADER + line + "\n")
    if problem is None:
        import_file(study, path)
        assert len(stored(study)) == 1
    else:
        assert refusal(study, path) == [problem]


def test_a_pre_infusion_event_is_stored_and_listed_in_the_safety_tables(study, tmp_path):
    from celltrial.safety.analysis import analyse_safety
    from celltrial.study import read_study_frames

    path = write(tmp_path, HEADER + "S001,Headache,2020-02-11 09:00,1,recovered,\n")
    import_file(study, path)
    assert stored(study) == [("Headache", 2)]
    summary = analyse_safety(study.protocol, read_study_frames(study))
    listed = summary.listing[["subject_id", "term", "treatment_emergent"]]
    assert listed.to_dict("records") == [
        {"subject_id": "S001", "term": "Headache", "treatment_emergent": False}
    ]


def event(**changes) -> dict:
    return {
        "subject_id": "S001",
        "term": "Fever",
        "onset": pd.Timestamp("2020-02-12 02:00", tz="UTC"),
        "grade": 1,
        "serious": False,
    } | changes


def record(study, entry: dict) -> AdverseEvent:
    with study_session(study.engine, user="investigator", reason="bedside") as session:
        return record_adverse_event(session, study.study_id, entry, zone=ZONE, now=NOW)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        (
            {"onset": pd.Timestamp("2020-02-09 23:59", tz="UTC")},
            "onset: 2020-02-10 07:59 (Asia/Shanghai) — expected a time at or after subject "
            "S001's enrolment, 2020-02-10 08:00 (Asia/Shanghai)",
        ),
        (
            {"subject_id": "S002", "onset": pd.Timestamp("2020-02-12 01:59", tz="UTC")},
            "onset: 2020-02-12 09:59 (Asia/Shanghai) — expected a time at or after subject "
            "S002's first infusion",
        ),
        (
            {"subject_id": "S003", "onset": pd.Timestamp("2020-02-20 04:01", tz="UTC")},
            "onset: 2020-02-20 12:01 (Asia/Shanghai) — expected a time at or before subject "
            "S003's death",
        ),
        (
            {"onset": pd.Timestamp("2020-03-01 04:01", tz="UTC")},
            "onset: 2020-03-01 12:01 (Asia/Shanghai) — expected a time that has passed",
        ),
    ],
)
def test_one_event_entered_by_hand_follows_the_same_rules(study, changes, problem):
    with pytest.raises(DataError) as caught:
        record(study, event(**changes))
    message = str(caught.value)
    assert message.startswith("adverse event: 1 problem(s):\n  - " + problem)
    assert "row" not in message  # one event typed in: no file, no row
    assert stored(study) == []


def test_one_event_entered_by_hand_reports_every_problem(study):
    with pytest.raises(DataError) as caught:
        record(study, event(subject_id="S404", grade=7))
    assert str(caught.value).splitlines()[1:] == [
        "  - grade: 7 — expected a CTCAE grade 1–5",
        "  - subject_id: unknown subject 'S404' — expected a subject of the study (known: S001, "
        "S002, S003, S004)",
    ]


def test_one_event_at_the_limits_is_recorded(study):
    record(study, event(onset=pd.Timestamp("2020-02-10 00:00", tz="UTC")))  # at enrolment
    record(study, event(onset=pd.Timestamp(NOW)))  # now
    assert [term for term, _row in stored(study)] == ["Fever", "Fever"]


def test_ae_add_refuses_an_onset_before_enrolment(study):
    from celltrial.cli import app

    result = CliRunner().invoke(
        app,
        [
            "ae",
            "add",
            str(study.directory),
            "--db",
            study.url,
            "--subject",
            "S001",
            "--term",
            "Fever",
            "--onset",
            "2020-02-10 07:59",
        ],
    )
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert (
        "onset: 2020-02-10 07:59 (Asia/Shanghai) — expected a time at or after subject S001's "
        "enrolment, 2020-02-10 08:00 (Asia/Shanghai)" in text
    )
    assert stored(study) == []
