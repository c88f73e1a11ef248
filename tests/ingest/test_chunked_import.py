"""Imports read in several chunks: the next chunk is validated while this one is stored."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from celltrial.ingest import import_file
from celltrial.ingest.importer import ImportRefused
from celltrial.store.models import Observation, Subject


@pytest.fixture(params=[True, False], ids=["validate-ahead", "serial"])
def small_chunks(request, monkeypatch):
    """Long CSV files read ``rows`` rows at a time; the next chunk validated in a thread while
    this one is stored, or one after the other."""
    from celltrial.ingest import importer, long

    monkeypatch.setattr(importer, "VALIDATE_AHEAD", request.param)
    original = long.read_long_chunks

    def use(rows: int) -> None:
        monkeypatch.setattr(
            "celltrial.ingest.long.read_long_chunks",
            lambda path, mapping, chunk_rows=None, subjects=None: original(
                path, mapping, chunk_rows=rows, subjects=subjects
            ),
        )

    return use


def _rows(n: int, subjects: int) -> str:
    lines = ["subject_id,time,test,value,unit"]
    for i in range(n):
        day, hour = divmod(i // subjects, 24)
        lines.append(
            f"P{i % subjects:03d},2020-02-{10 + day:02d} {hour:02d}:00,CRP,{i % 200}.5,mg/L"
        )
    return "\n".join(lines) + "\n"


def test_subjects_first_seen_in_later_chunks_are_registered_and_every_value_stored(
    study, write, small_chunks
):
    small_chunks(300)
    # 1,234 rows: several chunks, and a last multi-row INSERT shorter than the others
    path = write("many.csv", _rows(1234, 37))
    result = import_file(study, path, register=True)
    assert result.counts["inserted"] == 1234
    assert result.counts["subjects"] == 37
    assert result.report.counts == {"results": 1234, "stored": 1234, "flagged": 0, "reported": 0}
    with study.engine.connect() as connection:
        stored = connection.execute(
            select(Subject.code, Observation.value, Observation.source_row)
            .join(Subject, Subject.id == Observation.subject_id)
            .order_by(Observation.source_row)
        ).all()
    assert len(stored) == 1234
    for i, (code, value, source_row) in enumerate(stored):
        assert (code, value, source_row) == (f"P{i % 37:03d}", i % 200 + 0.5, i + 2)


def test_an_error_in_a_later_chunk_stores_nothing_from_earlier_chunks(study, write, small_chunks):
    small_chunks(2)
    path = write(
        "late-error.csv",
        "subject_id,time,test,value,unit\n"
        "S001,2020-02-10 08:00,CRP,12,mg/L\n"
        "S001,2020-02-10 09:00,CRP,13,mg/L\n"
        "S001,2020-02-10 10:00,CRP,14,mg/L\n"
        "S009,2020-02-10 11:00,CRP,15,mg/L\n",  # unknown subject, in the second chunk
    )
    with pytest.raises(ImportRefused) as refused:
        import_file(study, path)
    errors = refused.value.report.errors
    assert errors["kind"].tolist() == ["unknown_subject"] and errors["row"].tolist() == [5]
    with study.engine.connect() as connection:
        assert connection.execute(select(Observation.id)).all() == []


def test_dry_run_over_chunks_registers_nothing_and_accounts_for_every_result(
    study, write, small_chunks
):
    small_chunks(100)
    path = write("dry.csv", _rows(450, 9))
    result = import_file(study, path, register=True, dry_run=True)
    assert result.report.ok and result.report.balanced()
    assert result.report.counts["results"] == 450 and result.report.counts["stored"] == 450
    with study.engine.connect() as connection:
        assert connection.execute(select(Subject.code)).scalars().all() == ["S001", "S002"]
        assert connection.execute(select(Observation.id)).all() == []
