"""Writes that SQLite would take but PostgreSQL refuses behave the same on every backend."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from celltrial.errors import DataError
from celltrial.store.database import open_engine, study_session, upgrade_database
from celltrial.store.models import CtResult, ImagingStudy, ImportBatch, Study, Subject

T0 = datetime(2020, 2, 10, 2, 0, tzinfo=UTC)


@pytest.fixture
def engine(database_url):
    engine = open_engine(database_url)
    upgrade_database(engine)
    with study_session(engine, user="setup") as session:
        session.add(
            Study(id="S", title="t", protocol_yaml="", protocol_sha256="0" * 64, created_at=T0)
        )
        session.add(Subject(study_id="S", code="S001"))
    yield engine
    engine.dispose()


def test_json_stores_nan_and_infinity_as_null(engine):
    # a scan without lungs has no mean lung density (NaN): PostgreSQL's json refuses NaN
    with study_session(engine, user="ct") as session:
        subject = session.scalar(select(Subject))
        scan = ImagingStudy(subject_id=subject.id, time=T0)
        session.add(scan)
        session.flush()
        session.add(
            CtResult(
                imaging_study_id=scan.id,
                method="density",
                zones={"_scan": {"mean_lung_density_hu": math.nan, "caveats": [math.inf, 1.5]}},
            )
        )
        session.add(
            ImportBatch(time=T0, user="ct", kind="file", source="f.csv", counts={"x": -math.inf})
        )
    with engine.connect() as connection:
        zones = connection.scalar(select(CtResult.zones))
        counts = connection.scalar(select(ImportBatch.counts))
    assert zones == {"_scan": {"mean_lung_density_hu": None, "caveats": [None, 1.5]}}
    assert counts == {"x": None}


def test_text_longer_than_its_column_is_refused_by_name(engine):
    # SQLite would store it; PostgreSQL refuses it with a bare database error
    too_long = r"subject\.code: 'SSS.*' is longer than 64 characters"
    with pytest.raises(DataError, match=too_long), study_session(engine, user="x") as session:
        session.add(Subject(study_id="S", code="S" * 65))
    too_long = r"subject\.sex: 'female' is longer than 1 character"
    with pytest.raises(DataError, match=too_long), study_session(engine, user="x") as session:
        session.scalar(select(Subject)).sex = "female"
    with engine.connect() as connection:
        assert connection.execute(select(Subject.code, Subject.sex)).all() == [("S001", None)]
