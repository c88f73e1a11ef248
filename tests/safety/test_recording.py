"""Recording and importing adverse events through the audited write path."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from sqlalchemy import select

from celltrial.errors import DataError
from celltrial.safety.recording import import_adverse_events, record_adverse_event
from celltrial.store.database import study_session
from celltrial.store.models import AdverseEvent, AuditEvent, Subject
from celltrial.study import init_study
from tests.store.backends import migrated_default_database

ZONE = "Asia/Shanghai"


@pytest.fixture
def study(tmp_path):
    migrated_default_database(tmp_path / "s")
    study = init_study(tmp_path / "s")
    with study_session(study.engine, user="coordinator") as session:
        for code in ("S001", "S002"):
            session.add(Subject(study_id=study.study_id, code=code))
    return study


def write(tmp_path, text: str):
    path = tmp_path / "ae.csv"
    path.write_text(text, encoding="utf-8")
    return path


GOOD = (
    "subject_id,term,onset,grade,serious,serious_criteria,relatedness,outcome\n"
    "S001,Headache,2020-02-12 14:00,1,no,,unlikely related,recovered\n"
    "S002,ARDS,2020-02-13T09:00+08:00,4,yes,life-threatening,not related,not recovered\n"
)


def stored(study):
    with study.engine.connect() as connection:
        return connection.execute(select(AdverseEvent).order_by(AdverseEvent.id)).all()


def test_import_then_reimport_adds_nothing(study, tmp_path):
    path = write(tmp_path, GOOD)
    with study_session(study.engine, user="dm") as session:
        batch = import_adverse_events(session, study.study_id, path, zone=ZONE)
        assert batch.report == {"rows": 2, "new": 2, "already stored": 0}
    rows = stored(study)
    assert [r.term for r in rows] == ["Headache", "ARDS"]
    # local time in the study zone (UTC+8) and an explicit offset both land on the same instant
    assert rows[0].onset_at == pd.Timestamp("2020-02-12 06:00", tz="UTC")
    assert rows[1].onset_at == pd.Timestamp("2020-02-13 01:00", tz="UTC")
    assert rows[1].serious and rows[1].serious_criteria == "life-threatening"
    assert [r.source_row for r in rows] == [2, 3]
    with study_session(study.engine, user="dm") as session:
        assert import_adverse_events(session, study.study_id, path, zone=ZONE) is None
    assert len(stored(study)) == 2


def test_one_bad_row_stores_nothing(study, tmp_path):
    path = write(tmp_path, GOOD + "S001,Fever,2020-02-14 10:00,9,no,,possibly related,recovered\n")
    with (
        pytest.raises(DataError, match=r"row 4, grade: 9 — expected a CTCAE grade 1–5"),
        study_session(study.engine, user="dm") as session,
    ):
        import_adverse_events(session, study.study_id, path, zone=ZONE)
    assert stored(study) == []


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("S009,Fever,2020-02-14 10:00,1,no,,,", "row 4, subject_id: unknown subject 'S009'"),
        ("S001,Fever,not a date,1,no,,,", "row 4, onset: 'not a date' — expected a date"),
        ("S001,Fever,2020-02-14 10:00,1,maybe,,,", "row 4, serious: 'maybe' — expected yes or no"),
        ("S001,Fever,2020-02-14 10:00,one,no,,,", "row 4, grade: 'one'"),
    ],
)
def test_bad_rows_named(study, tmp_path, line, message):
    path = write(tmp_path, GOOD + line + "\n")
    with (
        pytest.raises(DataError, match=re.escape(message)),
        study_session(study.engine, user="dm") as s,
    ):
        import_adverse_events(s, study.study_id, path, zone=ZONE)


def test_unknown_column_refused(study, tmp_path):
    path = write(tmp_path, "subject_id,term,onset,severity\nS001,Fever,2020-02-14 10:00,mild\n")
    with (
        pytest.raises(DataError, match="unknown column"),
        study_session(study.engine, user="dm") as session,
    ):
        import_adverse_events(session, study.study_id, path, zone=ZONE)


def test_record_one_event_is_audited(study):
    event = {
        "subject_id": "S001",
        "term": "Nausea",
        "grade": 1,
        "serious": False,
        "onset": pd.Timestamp("2020-02-14 02:00", tz="UTC"),
        "relatedness": "possibly related",
    }
    with study_session(study.engine, user="investigator", reason="bedside report") as session:
        record_adverse_event(session, study.study_id, event)
    with study.engine.connect() as connection:
        audit = connection.execute(
            select(AuditEvent).where(AuditEvent.table_name == "adverse_event")
        ).one()
    assert (audit.action, audit.user, audit.reason) == ("insert", "investigator", "bedside report")
    assert audit.after["term"] == "Nausea"
    with (
        pytest.raises(DataError, match="unknown subject 'S404'"),
        study_session(study.engine, user="investigator") as session,
    ):
        record_adverse_event(session, study.study_id, event | {"subject_id": "S404"})
