"""Staged imports (SQLite): validated rows wait in a private file, then one copy stores them.

- A file staged and the same file not staged (the chunks kept as they are until the write step)
  give the same stored rows, counts and report, message for message.
- While the file is validated the study is only read: another writer takes the write lock at
  once. The stage is detached from the study's connection afterwards.
- Results or subjects changed by another user during validation refuse the file, storing
  nothing, in one plain sentence.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, select, text

from celltrial.errors import DataError
from celltrial.ingest import import_file, importer, staging
from celltrial.store.database import study_session
from celltrial.store.models import ImportBatch, Observation, Subject
from celltrial.study import StudyHandle, init_study
from tests.ingest.test_results_unchanged import _messy, _stored, small_chunks  # noqa: F401


@pytest.fixture
def sqlite_study(tmp_path: Path) -> Iterator[StudyHandle]:
    studies: list[StudyHandle] = []

    def make(name: str) -> StudyHandle:
        handle = init_study(tmp_path / name, user="tester")
        studies.append(handle)
        return handle

    yield make  # type: ignore[misc]
    for handle in studies:
        handle.engine.dispose()


@pytest.fixture
def spilling_stage(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stages with tiny pages and cache, so that even a small file's stage is written to disk
    (and locked) while it is filled, as a large file's is."""
    monkeypatch.setattr(staging, "_PRAGMAS", ("page_size=512", "cache_size=2", *staging._PRAGMAS))


def _study_path(study: StudyHandle) -> str:
    return str(study.engine.url.database)


@pytest.mark.usefixtures("small_chunks", "spilling_stage")
def test_staged_file_stored_and_reported_as_unstaged(
    sqlite_study, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "messy.csv"
    path.write_text(_messy(), encoding="utf-8")
    plain, staged = sqlite_study("plain"), sqlite_study("staged")
    with monkeypatch.context() as patch:
        patch.setattr(importer, "can_stage", lambda *_args: False)
        old = import_file(plain, path, register=True, cohort="", user="t")

    added: list[int] = []
    add = staging.Stage.add

    def add_and_check_lock(self, rows, known) -> None:
        # validation reads the study only: another writer takes the write lock at once
        other = sqlite3.connect(_study_path(staged), timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
        finally:
            other.close()
        added.append(len(rows))
        add(self, rows, known)

    monkeypatch.setattr(staging.Stage, "add", add_and_check_lock)
    new = import_file(staged, path, register=True, cohort="", user="t")

    assert len(added) > 3  # staged chunk by chunk
    assert new.counts == old.counts
    assert new.report.counts == old.report.counts
    pd.testing.assert_frame_equal(
        new.report.messages.reset_index(drop=True),
        old.report.messages.reset_index(drop=True),
        check_exact=True,
    )
    stored_old, stored_new = _stored(plain), _stored(staged)
    pd.testing.assert_frame_equal(stored_new, stored_old, check_exact=True)
    assert {"duplicate", "duplicate_conflict"} <= set(new.report.messages["kind"])
    assert len(stored_new) == new.counts["inserted"] > 140
    with staged.engine.connect() as connection:
        counts = connection.scalar(select(ImportBatch.counts))
        assert counts["observation"] == new.counts["inserted"]
        # the stage is detached, the observation indexes rebuilt
        schemas = [row[1] for row in connection.execute(text("PRAGMA database_list"))]
        assert schemas == ["main"] or set(schemas) == {"main", "temp"}
        indexes = connection.execute(
            text("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'observation'")
        ).all()
        assert len(indexes) == 3


def _two_subjects(study: StudyHandle) -> None:
    with study_session(study.engine, user="tester", reason="enrolment") as session:
        for code in ("S001", "S002"):
            session.add(Subject(study_id=study.study_id, code=code))


FILE = (
    "subject_id,time,test,value,unit\n"
    "S001,2020-02-02 08:00,CRP,12,mg/L\n"
    "S002,2020-02-02 08:00,CRP,14,mg/L\n"
)


def _meanwhile(monkeypatch: pytest.MonkeyPatch, change) -> None:
    """Run ``change`` (another user's write) while the file is being validated."""
    add = staging.Stage.add

    def add_then_change(self, rows, known) -> None:
        add(self, rows, known)
        change()

    monkeypatch.setattr(staging.Stage, "add", add_then_change)


def test_results_stored_meanwhile_refuse_the_file(
    sqlite_study, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = sqlite_study("study")
    _two_subjects(study)
    path = tmp_path / "labs.csv"
    path.write_text(FILE, encoding="utf-8")

    def add_result() -> None:
        with study_session(study.engine, user="nurse", reason="entered") as session:
            subject = session.scalar(select(Subject).where(Subject.code == "S002"))
            session.add(
                Observation(
                    subject_id=subject.id,
                    time=datetime(2020, 2, 3, tzinfo=UTC),
                    test="CRP",
                    value=5.0,
                    unit="mg/L",
                )
            )

    _meanwhile(monkeypatch, add_result)
    with pytest.raises(DataError, match="stored by another user while the file was being valid"):
        import_file(study, path, user="t")
    with study.engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(Observation)) == 1
        assert connection.scalar(select(func.count()).select_from(ImportBatch)) == 0


def test_subject_renamed_meanwhile_refuses_the_file(
    sqlite_study, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = sqlite_study("study")
    _two_subjects(study)
    path = tmp_path / "labs.csv"
    path.write_text(FILE, encoding="utf-8")

    def rename() -> None:
        with study_session(study.engine, user="coordinator", reason="typo") as session:
            session.scalar(select(Subject).where(Subject.code == "S001")).code = "S011"

    _meanwhile(monkeypatch, rename)
    with pytest.raises(DataError, match=r"subject\(s\) S001 changed in the study while"):
        import_file(study, path, user="t")
    with study.engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(Observation)) == 0


def test_rows_grouped_by_their_constant_columns_as_a_groupby_does() -> None:
    """The insert writes each group's shared values once: the groups and their rows are those
    of a pandas groupby on the same columns, numbered in order of first appearance, and each
    group's values (None where missing) can be read from any of its rows."""
    import numpy as np

    from celltrial.ingest.frame import group_codes

    rng = np.random.default_rng(7)
    columns = ("test", "unit", "qualifier", "flags")
    choices = np.array(["CRP", "mg/L", None, "it's", ""], dtype=object)
    frame = pd.DataFrame({c: rng.choice(choices, 3000) for c in columns})
    frame["test"] = frame["test"].astype("str")  # pandas' text dtype, missing as NaN
    frame["flags"] = frame["flags"].where(frame["flags"].notna(), np.nan)
    keys = frame.astype(object).where(frame.notna())
    expected = keys.groupby(list(columns), sort=False, dropna=False).indices
    group, cells = group_codes(frame, columns)
    assert group.max() + 1 == len(expected) > 50
    got: dict[tuple, list[int]] = {}
    for row in rng.permutation(len(frame)).tolist():  # values read from any row of a group
        values = tuple(None if codes[row] < 0 else column[row] for column, codes in cells)
        assert got.setdefault(values, [int(group[row])])[0] == group[row]
    expected_rows = {
        tuple(None if pd.isna(v) else v for v in key): rows.tolist()
        for key, rows in expected.items()
    }
    assert set(got) == set(expected_rows)
    for values, (code,) in got.items():
        assert np.flatnonzero(group == code).tolist() == expected_rows[values]
    firsts = [int(np.flatnonzero(group == code)[0]) for code in range(len(expected))]
    assert firsts == sorted(firsts)
