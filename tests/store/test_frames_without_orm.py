"""The study frames read through the light Core tables (:mod:`celltrial.store.tables`, no ORM)
are the frames the ORM models read, and `celltrial status` prints the same from them, on every
backend, for a finished and a partial study (issue 26)."""

from __future__ import annotations

import functools
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import delete
from typer.testing import CliRunner

import celltrial.overview
import celltrial.study
from celltrial.cli import app
from celltrial.cohort import simulate
from celltrial.store import models, tables
from celltrial.store.database import study_session
from celltrial.store.loading import load_simulated_cohort
from celltrial.study import StudyHandle, init_study, read_study_frames
from tests.store import reference_frames

runner = CliRunner()


def test_light_tables_have_the_models_columns():
    for light in tables.TABLES:
        model = models.Base.metadata.tables[light.name]
        for column in light.columns:
            assert column.name in model.columns, f"{light.name}.{column.name}"
            assert type(column.type) is type(model.columns[column.name].type), (
                f"{light.name}.{column.name}"
            )


def _make_study(folder: Path, url: str, *, partial: bool) -> tuple[StudyHandle, pd.Timestamp]:
    """A simulated 4-subject study, and the day its status is asked for; ``partial``: the data
    stop 8 days after the first infusion, one subject lacks its third infusion and one more
    subject is enrolled but not treated."""
    study = init_study(folder, db_url=url, user="test")
    cohort = simulate(study.protocol, 4, seed=7)
    with study_session(study.engine, user="test", reason="test") as session:
        load_simulated_cohort(session, study.study_id, cohort)
    day0 = pd.Timestamp(cohort.infusions["start_time"].min())
    if not partial:
        return study, day0 + pd.Timedelta(days=40)
    cut = (day0 + pd.Timedelta(days=8)).to_pydatetime()
    with study.engine.begin() as connection:
        for model in (models.Observation, models.ClinicalStatus):
            connection.execute(delete(model).where(model.time > cut))
        second = connection.scalar(
            models.Subject.__table__.select()
            .with_only_columns(models.Subject.id)
            .order_by(models.Subject.code)
            .offset(1)
            .limit(1)
        )
        connection.execute(
            delete(models.Infusion).where(
                models.Infusion.subject_id == second, models.Infusion.number == 3
            )
        )
    with study_session(study.engine, user="test", reason="test") as session:
        session.add(models.Subject(study_id=study.study_id, code="S900", sex="F", age=60.0))
    return study, pd.Timestamp(cut) + pd.Timedelta(days=1)


@pytest.fixture(params=["finished", "partial"])
def study_and_today(request, database_url, tmp_path):
    partial = request.param == "partial"
    study, today = _make_study(tmp_path / "study", database_url, partial=partial)
    yield study, today, partial
    study.engine.dispose()


def _status(study: StudyHandle, today: pd.Timestamp, *options: str) -> str:
    result = runner.invoke(
        app,
        ["status", str(study.directory), "--db", study.url, *options],
        env={"COLUMNS": "160"},
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_frames_and_status_are_those_read_through_the_models(study_and_today, monkeypatch):
    study, today, partial = study_and_today
    monkeypatch.setattr(
        celltrial.overview,
        "summarize_study",
        functools.partial(celltrial.overview.summarize_study, today=today),
    )
    light = read_study_frames(study)
    shown = {fmt: _status(study, today, "--format", fmt) for fmt in ("text", "csv", "json")}
    monkeypatch.setattr(celltrial.study, "store_frames", reference_frames)
    through_models = read_study_frames(study)
    for name in light.__dataclass_fields__:
        pd.testing.assert_frame_equal(getattr(light, name), getattr(through_models, name))
    for fmt, output in shown.items():
        assert output == _status(study, today, "--format", fmt), fmt
    statuses = {s for s in ("due", "upcoming") if f",{s}," in shown["csv"]}
    if partial:  # the partial study is one: an untreated subject, visits still to come
        assert "S900" in shown["text"] and statuses
    else:
        assert "S900" not in shown["text"] and not statuses
