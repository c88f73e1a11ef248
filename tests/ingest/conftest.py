"""A fresh study with two subjects, and helpers to write small messy files."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from celltrial.store.database import study_session
from celltrial.store.models import Subject
from celltrial.study import StudyHandle, init_study

LABS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "labs"


@pytest.fixture
def study(tmp_path) -> StudyHandle:
    handle = init_study(tmp_path / "study", user="tester")
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
