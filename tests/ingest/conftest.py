"""A fresh study with two subjects, and helpers to write small messy files."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from celltrial.store.database import study_session
from celltrial.store.models import Subject
from celltrial.study import StudyHandle, init_study
from tests.store.backends import BACKENDS, fresh_database

LABS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "labs"


@pytest.fixture(params=BACKENDS)
def study(request, tmp_path) -> Iterator[StudyHandle]:
    """The study, on SQLite and on PostgreSQL (the bulk SQLite path and the generic one)."""
    with fresh_database(request.param, tmp_path, migrated=True) as url:
        handle = _enrolled(tmp_path, url)
        yield handle
        handle.engine.dispose()


def _enrolled(tmp_path: Path, url: str) -> StudyHandle:
    handle = init_study(tmp_path / "study", user="tester", db_url=url)
    with study_session(handle.engine, user="tester", reason="enrolment") as session:
        for code in ("S001", "S002"):
            session.add(
                Subject(
                    study_id=handle.study_id,
                    code=code,
                    enrolled_at=datetime(2020, 2, 1, tzinfo=UTC),
                    discharged_at=datetime(2020, 3, 1, tzinfo=UTC) if code == "S002" else None,
                )
            )
    return handle


@pytest.fixture
def write(tmp_path):
    """Write ``text`` to a file in tmp_path and return its path."""

    def make(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return make
