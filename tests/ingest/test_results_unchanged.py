"""Issue 26 (ingest speed): a messy file is stored and reported exactly as before the speed work.

"Before" is computed here with the previous code (tests/ingest/reference_before.py: the duplicate
check across chunks, the validation steps and the reporting-limit check, verbatim) patched in;
"after" with the current code. The same file is imported into two fresh studies, read in small
chunks (so duplicates span chunks) and on SQLite through the bulk path (indexes dropped and
rebuilt). Every stored row, every count and every report message must be identical.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select

from celltrial.ingest import import_file, storage, validate
from celltrial.ingest import long as long_reader
from celltrial.ingest.importer import ImportRefused
from celltrial.store.models import Observation, Subject
from celltrial.study import StudyHandle, init_study
from tests.ingest import reference_before
from tests.store.backends import BACKENDS, fresh_database

HEADER = "subject_id,time,test,value,unit,ref_low,ref_high\n"


def _messy() -> str:
    """Units to convert, censored values, qualifiers, repeats in and across chunks, bad cells."""
    lines = []
    for i in range(60):  # IL-6 with a reporting floor of 1.5 pg/mL (12 of 60 results)
        value = "1.5" if i % 5 == 0 else f"{2 + i * 0.37:.2f}"
        lines.append(f"P{i % 6:02d},2020-02-{1 + i // 6:02d} 08:{i % 6:02d},IL6,{value},pg/mL,,")
    for i in range(40):  # CRP in mg/L and mg/dL, LYM in 10^9/L and cells/uL
        unit, value = ("mg/dL", f"{0.5 + i / 10:.1f}") if i % 2 else ("mg/L", f"{3 + i}")
        lines.append(f"P{i % 6:02d},2020-02-{1 + i // 6:02d} 09:{i:02d},CRP,{value},{unit},0,5")
        unit, value = ("cells/uL", f"{800 + 10 * i}") if i % 3 else ("10^9/L", f"{1 + i / 50}")
        lines.append(f"P{i % 6:02d},2020-02-{1 + i // 6:02d} 10:{i:02d},LYM,{value},{unit},1,4")
    lines += [
        "P00,2020-02-01 11:00,CRP,<0.5,mg/L,,",
        "P01,2020-02-01 11:00,CRP,>=1000,mg/dL,,",
        "P02,2020-02-01 11:00,CRP,≤3,mg/L,,",
        'P03,2020-02-01 11:00,CRP,"0,8",mg/L,,',
        'P04,2020-02-01 11:00,CRP,"1,234",mg/L,,',  # ambiguous: not stored
        "P05,2020-02-01 11:00,CRP,pending,mg/L,,",  # text: not stored
        "P00,2020-02-01 12:00,CRP,NA,mg/L,,",  # no result
        "P01,2020-02-01 12:00,FOO,5,mg/L,,",  # unknown test
        "P02,2020-02-01 12:00,CRP,-1,mg/L,,",  # sentinel
        "P03,2020-02-01 12:00,CRP,99999,mg/L,,",  # implausible: flagged
        "P04,2020-02-01 12:00,CRP,7,mg/L,1e400,9",  # reference beyond a float: left empty
        "P05,2020-02-01 12:00,CRP,7,mg/L,,",
        "P05,2020-02-01 12:00,CRP,7,mg/L,,",  # the same result twice in one chunk
        "P05,2020-02-01 13:00,CRP,7,mg/L,,",
        "P05,2020-02-01 13:00,CRP,8,mg/L,,",  # two values at one time in one chunk
        "P00,2020-02-01 08:00,IL6,1.5,pg/mL,,",  # repeats a row of the first chunk
        "P01,2020-02-01 08:01,IL6,99,pg/mL,,",  # conflicts with a row of the first chunk
        "P02,2020-02-01 09:02,CRP,5.0,mg/L,0,5",  # repeats (as 5.0) a row of an earlier chunk
        "P03,2020-02-02 11:00,DDIMER,0.8,mg/L FEU,,",  # the catalogue's basis, stated
        "P04,2020-02-02 11:00,DDIMER,0.4,ug/mL DDU,,",  # the other basis: its sibling test
        "P05,2020-02-02 11:00,DDIMER,0.6,ug/mL,,",  # basis implied
    ]
    lines += [f"P{i % 6:02d},2020-02-{3 + i // 6:02d} 11:{i:02d},IL6,{2 + i},,," for i in range(8)]
    return HEADER + "\n".join(lines) + "\n"


@pytest.fixture(params=BACKENDS)
def studies(request, tmp_path) -> Iterator[Callable[[str], StudyHandle]]:
    """Fresh studies on one backend, each with its own database."""
    with ExitStack() as stack:

        def make(name: str) -> StudyHandle:
            folder = tmp_path / name
            folder.mkdir()
            url = stack.enter_context(fresh_database(request.param, folder, migrated=True))
            handle = init_study(folder / "study", user="tester", db_url=url)
            stack.callback(handle.engine.dispose)
            return handle

        yield make


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files read 37 rows at a time; on SQLite every load takes the bulk path."""
    original = long_reader.read_long_chunks
    monkeypatch.setattr(
        "celltrial.ingest.long.read_long_chunks",
        lambda path, mapping, chunk_rows=None, subjects=None: original(
            path, mapping, chunk_rows=37, subjects=subjects
        ),
    )
    monkeypatch.setattr(storage, "BULK_ROWS", 2)


def _before(monkeypatch: pytest.MonkeyPatch, run: Callable[[], object]) -> object:
    with monkeypatch.context() as patch:
        patch.setattr(validate.V, "parse_values", reference_before.parse_values)
        patch.setattr(validate._Run, "execute", reference_before.execute)
        patch.setattr(validate._Run, "_censored", reference_before._censored)
        patch.setattr(validate._Run, "_units", reference_before._units)
        patch.setattr(validate._Run, "_convert_group", reference_before._convert_group)
        patch.setattr(storage.ObservationWriter, "_within_file", reference_before._within_file)
        return run()


def _stored(study: StudyHandle) -> pd.DataFrame:
    columns = [
        c
        for c in Observation.__table__.columns
        if c.name not in ("id", "subject_id", "import_batch_id")
    ]
    with study.engine.connect() as connection:
        rows = connection.execute(
            select(Subject.code, *columns)
            .join(Subject, Subject.id == Observation.subject_id)
            .order_by(Observation.source_row)
        ).all()
    return pd.DataFrame(rows, columns=["subject", *(c.name for c in columns)])


def _messages(report) -> pd.DataFrame:
    return report.messages.reset_index(drop=True)


def test_messy_file_stored_and_reported_as_before(
    studies, small_chunks, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "messy.csv"
    path.write_text(_messy(), encoding="utf-8")
    old_study, new_study = studies("before"), studies("after")
    old = _before(
        monkeypatch, lambda: import_file(old_study, path, register=True, cohort="", user="t")
    )
    new = import_file(new_study, path, register=True, cohort="", user="t")
    assert new.counts == old.counts
    assert new.report.counts == old.report.counts
    pd.testing.assert_frame_equal(_messages(new.report), _messages(old.report), check_exact=True)
    stored_old, stored_new = _stored(old_study), _stored(new_study)
    pd.testing.assert_frame_equal(stored_new, stored_old, check_exact=True)
    # the file exercises what the speed work touched
    kinds = set(new.report.messages["kind"])
    assert {"censored", "duplicate", "duplicate_conflict", "text_result"} <= kinds
    assert {"ambiguous_number", "unknown_test", "sentinel", "implausible"} <= kinds
    assert {"unit_implied", "basis_implied", "bad_reference", "no_result_marker"} <= kinds
    assert (stored_new["unit"] != stored_new["raw_unit"]).any()  # converted
    assert len(stored_new) > 140


def test_refused_file_reported_as_before(
    studies, small_chunks, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The messy rows and one in a unit CRP cannot be converted from: refused, the same report."""
    path = tmp_path / "refused.csv"
    bad_unit = "P00,2020-02-09 11:00,CRP,5,mmHg,,\n"  # not a unit of CRP: an error
    path.write_text(_messy() + bad_unit, encoding="utf-8")
    old_study, new_study = studies("before"), studies("after")

    def refused(study: StudyHandle) -> ImportRefused:
        with pytest.raises(ImportRefused) as caught:
            import_file(study, path, register=True, cohort="", user="t")
        return caught.value

    old = _before(monkeypatch, lambda: refused(old_study))
    new = refused(new_study)
    assert str(new) == str(old).replace(str(old.report_csv), str(new.report_csv))
    assert new.report.counts == old.report.counts
    pd.testing.assert_frame_equal(_messages(new.report), _messages(old.report), check_exact=True)
    assert set(new.report.errors["kind"]) == {"unit_not_convertible"}
    assert len(_stored(new_study)) == 0
