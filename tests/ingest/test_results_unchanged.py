"""Issue 26 (ingest speed): a messy file is stored and reported exactly as before the speed work.

"Before" is computed here with the previous code (tests/ingest/reference_before.py: the duplicate
check across chunks, the validation steps and the reporting-limit check, verbatim) patched in;
"after" with the current code. The same file is imported into two fresh studies, read in small
chunks (so duplicates span chunks) and on SQLite through the bulk path (indexes dropped and
rebuilt). Every stored row, every count and every report message must be identical.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from celltrial.ingest import import_file, importer, storage, validate
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
        patch.setattr(storage.ObservationWriter, "write", reference_before.write)
        patch.setattr(storage, "_insert_sqlite", reference_before._insert_sqlite)
        patch.setattr(long_reader, "to_raw", reference_before.to_raw)
        for step in (
            "_lengths",
            "_timing",
            "_specimens",
            "_references",
            "_ref",
            "_specimen",
            "_result",
            "_times",
            "_subjects",
        ):
            patch.setattr(validate._Run, step, getattr(reference_before, step))
        patch.setattr(
            importer,
            "check_subject_codes",
            lambda codes, rows, report, *, column, kinds=None: reference_before.check_subject_codes(
                codes, rows, report, column=column
            ),
        )
        return run()


def _stored(study: StudyHandle, *, ids: bool = False) -> pd.DataFrame:
    """The stored results by source row; with ``ids`` their ids too (stored in one order)."""
    skipped = ("subject_id", "import_batch_id") if ids else ("id", "subject_id", "import_batch_id")
    columns = [c for c in Observation.__table__.columns if c.name not in skipped]
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
    stored_old, stored_new = _stored(old_study, ids=True), _stored(new_study, ids=True)
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


FACTS_HEADER = "subject_id,time,test,value,unit,specimen,Admission time,Discharge time\n"


def _with_facts() -> list[str]:
    """Rows with admissions and discharges, times written several ways, specimens and units of
    many spellings: what the length, timing, specimen and subject checks look at."""
    formats = (
        "2020-02-{d:02d} 08:{m:02d}",
        "2020/02/{d:02d} 09:{m:02d}",
        "2020-02-{d:02d}T10:{m:02d}:00",
    )
    lines = []
    for i in range(90):
        subject = f"S{i % 5}"
        time = formats[i % 3].format(d=2 + i // 10, m=i % 60)
        admitted, discharged = "2020-02-03 00:00", "2020-02-09 12:00"  # some rows before/after
        test, unit, value = (
            ("CRP", "mg/L", f"{4 + i % 7}"),
            ("LYM", " 10^9/L ", f"{0.5 + i / 100:.2f}"),
            ("IL6", "pg/mL", "1.5" if i % 4 == 0 else f"{3 + i / 3:.2f}"),
        )[i % 3]
        specimen = ("", "serum", "Plasma", "urine")[i % 4] if test == "CRP" else ""
        lines.append(f"{subject},{time},{test},{value},{unit},{specimen},{admitted},{discharged}")
    lines += [
        "S0,2020-02-05,CRP,6,mg/L,,2020-02-03 00:00,2020-02-09 12:00",  # a day without a time
        "S1,2020-02-05 08:00,CRP,<0.5,mg/dL,blood,2020-02-03 00:00,2020-02-09 12:00",
        "S2,2020-02-05 08:00,CRP,pending,mg/L,,2020-02-03 00:00,2020-02-09 12:00",
        'S3,2020-02-05 08:00,CRP,"1,234",mg/L,,2020-02-03 00:00,2020-02-09 12:00',
        "S4,2020-02-05 08:00,FOO,3,mg/L,,2020-02-03 00:00,2020-02-09 12:00",
        "S4,2020-02-05 08:00,CRP,7,mg/L,,2020-02-03 00:00,2020-02-09 12:00",
        "S4,2020-02-05 08:00,CRP,7,mg/L,,2020-02-03 00:00,2020-02-09 12:00",  # duplicate
        "S4,2020-02-06 08:00,CRP,-2,mg/L,,2020-02-03 00:00,2020-02-09 12:00",  # sentinel
    ]
    return lines


def _compare(monkeypatch: pytest.MonkeyPatch, studies, path: Path, *, refused: bool) -> set:
    """Import ``path`` with the code before and after; assert the same counts, messages and
    stored rows; the kinds of message it gave."""
    old_study, new_study = studies("before"), studies("after")

    def run(study: StudyHandle):
        if not refused:
            return import_file(study, path, register=True, cohort="", user="t")
        with pytest.raises(ImportRefused) as caught:
            import_file(study, path, register=True, cohort="", user="t")
        return caught.value

    old = _before(monkeypatch, lambda: run(old_study))
    new = run(new_study)
    if refused:
        assert str(new) == str(old).replace(str(old.report_csv), str(new.report_csv))
    else:
        assert new.counts == old.counts
    assert new.report.counts == old.report.counts
    pd.testing.assert_frame_equal(_messages(new.report), _messages(old.report), check_exact=True)
    pd.testing.assert_frame_equal(
        _stored(new_study, ids=True), _stored(old_study, ids=True), check_exact=True
    )
    if not refused:
        assert len(_stored(new_study)) > 50
    return set(new.report.messages["kind"])


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_facts_and_time_formats_as_before(
    studies, small_chunks, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    """Subject facts, times in several formats, specimens and censored values: stored and
    reported as before, from a CSV file (read in chunks) and from a workbook."""
    path = tmp_path / f"facts{suffix}"
    text = FACTS_HEADER + "\n".join(_with_facts()) + "\n"
    if suffix == ".csv":
        path.write_text(text, encoding="utf-8")
    else:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
        frame.to_excel(path, index=False)
    kinds = _compare(monkeypatch, studies, path, refused=False)
    assert {"before_enrolment", "after_discharge", "other_specimen"} <= kinds
    if suffix == ".xlsx":  # one chunk (a CSV file's 37-row chunks hold too few of a test)
        assert "censored" in kinds
    assert {"duplicate", "sentinel", "text_result", "ambiguous_number", "unknown_test"} <= kinds


def test_refused_facts_file_reported_as_before(
    studies, small_chunks, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing subject, codes, units and specimens longer than the database keeps, a time
    that cannot be read: refused with the same messages as before."""
    path = tmp_path / "refused-facts.csv"
    bad = [
        ",2020-02-05 08:00,CRP,5,mg/L,,,",  # no subject
        f"{'S' * 70},2020-02-05 08:00,CRP,5,mg/L,,,",  # a code too long
        f"S1,2020-02-05 08:00,CRP,5,{'m' * 40},,,",  # a unit too long
        f"S2,2020-02-05 08:00,CRP,5,mg/L,{'serum ' * 8},,",  # a specimen too long
        "S3,2020-02-31 08:00,CRP,5,mg/L,,,",  # no such day
        "S3,yesterday,CRP,5,mg/L,,,",
    ]
    path.write_text(FACTS_HEADER + "\n".join(_with_facts() + bad) + "\n", encoding="utf-8")
    kinds = _compare(monkeypatch, studies, path, refused=True)
    assert {"unknown_subject", "too_long", "bad_time"} <= kinds


def test_wide_file_stored_and_reported_as_before(
    studies, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wide file (a column per test, units in the headers) with messy cells: as before."""
    path = tmp_path / "wide.csv"
    lines = ["PATIENT_ID,RE_DATE,Admission time,CRP (mg/dL),IL-6 (pg/mL),lymphocyte count"]
    for i in range(60):
        crp = ("<0.5", "pending", '"1,234"', "", "NA")[i % 5] if i % 7 == 0 else f"{i / 10:.1f}"
        il6 = "1.5" if i % 3 == 0 else f"{2 + i:.1f}"
        lines.append(
            f"W{i % 4},2020-02-{1 + i // 4:02d} 08:{i:02d},2020-02-03 08:00,{crp},{il6},"
            f"{0.4 + i / 50:.2f}"
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    kinds = _compare(monkeypatch, studies, path, refused=False)
    assert {"censored", "before_enrolment", "text_result", "ambiguous_number"} <= kinds


def test_reporting_limits_found_as_before() -> None:
    """Counting each number by sorting finds the same floors and ceilings as counting by
    hashing did: spikes at either end, ties, zeros of both signs, negatives, few results."""
    import numpy as np

    from celltrial.ingest.limits import compute_reporting_limits

    rng = np.random.default_rng(26)
    found = 0
    for trial in range(400):
        n = int(rng.integers(5, 400))
        values = np.round(rng.lognormal(0, 0.6, n) * 10, int(rng.integers(0, 3)))
        if trial % 3 == 0:
            values[rng.random(n) < 0.2] = np.round(values.min(), 1)  # a floor
        if trial % 4 == 0:
            values[rng.random(n) < 0.15] = 21.0  # a ceiling
        if trial % 5 == 0:
            values[rng.random(n) < 0.1] = rng.choice([0.0, -0.0, -1.0, np.nan, np.inf])
        got = compute_reporting_limits(values)
        assert got == reference_before.compute_reporting_limits(values)
        found += got != (None, None)
    assert found > 50


def _messy_cells() -> list[pd.Series]:
    """Columns as readers give them: text with blanks and every kind of missing value, numbers
    and times from workbooks, pandas' text dtype, nothing at all."""
    cells = [" CRP ", "CRP", "", None, float("nan"), pd.NA, pd.NaT, 5, 5.0, "5", "mg/L", "µg/L"]
    rng = np.random.default_rng(3)
    mixed = pd.Series(rng.choice(np.array(cells, dtype=object), 500), index=range(7, 507))
    text = pd.Series(rng.choice(["a", " b", None, ""], 300), dtype="string")
    return [mixed, text, pd.Series([], dtype=object), pd.Series([None, np.nan], dtype=object)]


def test_per_distinct_value_helpers_as_before() -> None:
    """The helpers that work once per distinct cell give what the old code did (missing cells
    of every kind, text dtype, mixed workbook cells; times read once per distinct cell), and
    :func:`map_distinct` what ``Series.map`` gives."""
    from celltrial.ingest.frame import map_distinct, map_unique
    from celltrial.ingest.times import parse_times

    rng_times = np.random.default_rng(4)

    def shown(unique: pd.Series) -> pd.Series:
        return unique.map(repr)

    for series in _messy_cells():
        pd.testing.assert_series_equal(
            map_unique(series, shown), reference_before.map_unique(series, shown)
        )
        stamps = pd.Series(
            rng_times.choice(["2020-02-03 08:00", " 2020/02/04 ", "", None, pd.NA, "x"], 400)
        )
        for zone in ("UTC", "Asia/Shanghai"):
            new_times, new_bad = parse_times(stamps, zone)
            old_times, old_bad = reference_before.parse_times(stamps, zone)
            pd.testing.assert_series_equal(new_times, old_times)
            pd.testing.assert_series_equal(new_bad, old_bad)
        mapping = pd.Series({"CRP": 1.5, "a": 2.0, " b": 3.0, "mg/L": 4.0})
        pd.testing.assert_series_equal(
            map_distinct(series, mapping), series.map(mapping).astype(float), check_names=False
        )
        times = pd.DataFrame(
            {
                "start": pd.to_datetime(["2020-02-01", None, "2020-02-03", None], utc=True),
                "end": pd.to_datetime([None, "2020-03-01", "2020-03-02", None], utc=True),
            },
            index=["CRP", "a", " b", "mg/L"],
        )
        for column, mapped in zip(times.columns, map_distinct(series, times), strict=True):
            pd.testing.assert_series_equal(mapped, series.map(times[column]), check_names=False)


def test_completed_raw_frame_as_before_and_reader_frame_untouched() -> None:
    """:func:`complete_raw` (a shallow copy since the speed work) gives the frame the old deep
    copy gave, and changing the result never changes the reader's frame (copy on write)."""
    from celltrial.ingest.frame import RAW_COLUMNS, complete_raw

    read = pd.DataFrame(
        {
            "subject": pd.Series(["P01", "P02", None], dtype="string"),
            "raw_value": pd.Series(["<0.5", 3.0, None], dtype=object),
            "time": ["2020-02-01 08:00", "", None],
            "source_row": [2, 3, 4],
        }
    )
    kept = read.copy(deep=True)
    old = read.copy()  # the old code: a deep copy, then the missing columns added
    for column in RAW_COLUMNS:
        if column not in old.columns:
            old[column] = None
    out = complete_raw(read)
    pd.testing.assert_frame_equal(out, old[list(RAW_COLUMNS)])
    out.loc[0, "subject"] = "CHANGED"
    out["raw_value"] = out["raw_value"].where(out.index != 1, "9")
    out.iloc[2, out.columns.get_loc("source_row")] = 99
    pd.testing.assert_frame_equal(read, kept)


def _subject_columns() -> list[pd.Series]:
    """Subject columns as readers give them: codes with spaces, blanks and every kind of missing
    cell, workbook numbers, codes too long, and columns holding times, test names or decimals
    (shifted columns), with kinds tied in number of rows."""
    rng = np.random.default_rng(5)
    long_code = "P" + "9" * 70
    plain = [" P01", "P01", "P02 ", "", "  ", None, float("nan"), pd.NA, 7, 7.0, long_code]
    shifted = ["2020-02-01 08:00", "CRP", "3.5", "4.25", "LDH", "2020-02-02", " 6.75", "P03"]
    tied = ["CRP"] * 3 + ["2020-02-01"] * 3 + ["P1"]
    return [
        pd.Series(rng.choice(np.array(plain, dtype=object), 400), index=range(10, 410)),
        pd.Series(rng.choice(np.array(shifted, dtype=object), 300)),
        pd.Series(rng.choice(["3.5", "4.25", "P1", "P2"], 50), dtype="string"),
        pd.Series(["6.5"] * 9 + ["P1"]),  # one decimal code on many rows: a study's numbering
        pd.Series(tied, dtype=object),
        pd.Series(tied[::-1], dtype=object),
        pd.Series([None, "", "  "], dtype=object),
        pd.Series([], dtype=object),
    ]


def test_subject_code_check_as_before() -> None:
    """The subject-code check, which now looks at each distinct code once, returns and reports
    exactly what the old per-row check did (too-long codes, shifted columns, ties), also with
    the kinds of codes kept from an earlier chunk."""
    from celltrial.ingest.alignment import check_subject_codes
    from celltrial.ingest.report import ValidationReport

    for codes in _subject_columns():
        rows = pd.Series(np.arange(2, len(codes) + 2), index=codes.index)
        old_report, new_report = ValidationReport(file="f"), ValidationReport(file="f")
        old = reference_before.check_subject_codes(codes, rows, old_report, column="ID")
        kinds: dict[str, str | None] = {}
        new = check_subject_codes(codes, rows, new_report, column="ID", kinds=kinds)
        assert new == old
        pd.testing.assert_frame_equal(new_report.messages, old_report.messages)
        again = ValidationReport(file="f")  # a later chunk: the kinds known already
        assert check_subject_codes(codes, rows, again, column="ID", kinds=kinds) == old
        pd.testing.assert_frame_equal(again.messages, old_report.messages)
    shifted = ValidationReport(file="f")
    assert check_subject_codes(
        _subject_columns()[1], pd.Series(range(2, 302)), shifted, column="ID"
    )
    assert "misaligned_columns" in set(shifted.messages["kind"])


def _rows_to_insert(seed: int, n: int) -> pd.DataFrame:
    """A validated chunk as the writer inserts it: many groups of constant columns (missing
    cells of every kind, quotes, a NUL), subject and time ties, reference limits given in some
    rows of a group, in no row of another."""
    rng = np.random.default_rng(seed)

    def pick(options: list) -> np.ndarray:
        return rng.choice(np.array(options, dtype=object), n)

    frame = pd.DataFrame(
        {
            "subject_id": rng.integers(1, 12, n).astype("int64"),
            "time": pd.to_datetime("2020-02-01", utc=True)
            + pd.to_timedelta(rng.integers(0, 40, n), unit="h"),
            "test": pick(["CRP", "LYM", "IL6"]),
            "raw_value": pd.Series(pick(["1.5", "<0.5", None, "7"]), dtype="string"),
            "raw_unit": pick(["mg/L", "mg/dL", None, np.nan, "it's"]),
            "value": rng.choice([1.5, 0.5, np.nan, 7.0], n),
            "unit": pick(["mg/L", None]),
            "qualifier": pick(["", "<", "<="]),
            "ref_low": np.where(rng.random(n) < 0.3, rng.random(n), np.nan),
            "ref_high": np.nan,
            "specimen": pick([None, "serum", pd.NA, "bad\x00text"]),
            "source_row": rng.permutation(n).astype("int64") + 2,
            "flags": pick([None, "censored", "implausible,censored"]),
        }
    )
    frame["time"] = frame["time"].astype("datetime64[us, UTC]")
    return frame


def test_sqlite_insert_as_before() -> None:
    """The SQLite insert, which now sorts each group's rows next to each other, stores every
    row with the same values in the same order (the same ids) as the old insert."""
    import sqlite3

    from celltrial.ingest.storage import STAGED_COLUMNS, _insert_sqlite

    def stored(insert: Callable, frame: pd.DataFrame) -> list[tuple]:
        connection = sqlite3.connect(":memory:")
        columns = ", ".join(("subject_id", *STAGED_COLUMNS, "import_batch_id", "source"))
        connection.execute(f"CREATE TABLE observation ({columns})")
        assert insert(connection.cursor(), frame, 3, "it's.csv") == len(frame)
        return connection.execute("SELECT rowid, * FROM observation ORDER BY rowid").fetchall()

    for seed, n in ((1, 1700), (2, 3), (3, 1)):
        frame = _rows_to_insert(seed, n)
        new = stored(_insert_sqlite, frame)
        assert new == stored(reference_before._insert_sqlite, frame)
        assert len(new) == n
    grouped = stored(_insert_sqlite, _rows_to_insert(1, 1700))
    # the text with a NUL is bound, not written as a literal
    assert any(value == "bad\x00text" for row in grouped for value in row)
    assert len({row[1:2] + row[4:5] for row in grouped}) > 20


def test_long_raw_frame_as_before() -> None:
    """The long reader's raw frame, whose test names are now stripped, resolved and looked up
    once per distinct name, equals the old one: names with spaces, blank and missing, unknown,
    with a unit in the name, workbook numbers; with and without a unit column; a mapping."""
    from celltrial.ingest.long import to_raw
    from celltrial.ingest.mapping import Mapping, TestColumn

    rng = np.random.default_rng(6)
    names = [" CRP ", "CRP", "", "  ", None, np.nan, "FOO", "IL-6 (pg/mL)", 5, "lymphocyte count"]
    n = 300
    table = pd.DataFrame(
        {
            "ID": rng.choice(["P1", "P2"], n),
            "Time": "2020-02-01 08:00",
            "Test": rng.choice(np.array(names, dtype=object), n),
            "Value": rng.choice(["1.5", "<0.5", ""], n),
            "Unit": rng.choice(np.array(["mg/L", " pg/mL", "", None], dtype=object), n),
        },
        index=range(5, 5 + n),
    )
    roles = {"subject": "ID", "time": "Time", "test": "Test", "value": "Value", "unit": "Unit"}
    without_unit = {k: v for k, v in roles.items() if k != "unit"}
    mapped = Mapping(
        tests={"FOO": TestColumn(test="CRP", unit="mg/dL", specimen="serum"), "CRP": None}
    )
    for frame, used, mapping in (
        (table, roles, Mapping()),
        (table, without_unit, Mapping()),
        (table, roles, mapped),
        (table.iloc[:0], roles, Mapping()),
        (table.assign(Test=None), roles, Mapping()),
    ):
        new = to_raw(frame, used, mapping, first_row=2)
        pd.testing.assert_frame_equal(
            new, reference_before.to_raw(frame, used, mapping, first_row=2)
        )
    assert new["name"].isna().all()


def test_clean_file_stored_as_before(
    studies, small_chunks, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file with nothing to flag and no specimen column (as the ingest benchmark's): stored
    as before, without flags, each result's specimen its test's."""
    path = tmp_path / "clean.csv"
    lines = [
        f"P{i % 4},2020-02-{1 + i // 8:02d} {8 + i // 60:02d}:{i % 60:02d},{('CRP', 'LYM')[i % 2]},"
        f"{1 + i / 10:.1f},{('mg/L', '10^9/L')[i % 2]},,"
        for i in range(70)
    ]
    path.write_text(HEADER + "\n".join(lines) + "\n", encoding="utf-8")
    kinds = _compare(monkeypatch, studies, path, refused=False)
    assert not kinds & {"censored", "implausible", "before_enrolment", "after_discharge"}


def test_values_parsed_as_before() -> None:
    """Result cells, whose texts that are not plain numbers are now parsed once per distinct
    text, give the values, qualifiers and statuses the old per-row parse gave (pandas' text
    dtype and a workbook's mixed cells)."""
    from celltrial.ingest.values import parse_values

    texts = ["<0.5", " <0.5", "NA", None, "1,234", "pending", "inf", ">", "1e400", "0,8"]
    texts += ["≥1000", "5", "", "-", "<=3", "7.25"]
    rng = np.random.default_rng(8)
    cells = rng.choice(np.array(texts, dtype=object), 600)
    for series in (
        pd.Series(cells, dtype="str", index=range(3, 603)),
        pd.Series(cells, dtype="string"),
        pd.Series([*cells[:50], True, 1, 1.0, 2.5], dtype=object),
    ):
        new = parse_values(series)
        pd.testing.assert_frame_equal(new, reference_before.parse_values(series))
        assert set(new["status"]) >= {"ok", "empty", "text", "ambiguous"}


def test_times_and_days_read_as_before() -> None:
    """Times and whether each names a day alone, now told apart once per distinct cell for
    both, are what the two separate readers give: repeated text with blanks and every kind of
    missing cell, a workbook's mixed cells, all cells distinct, one cell, datetimes."""
    from celltrial.ingest.times import date_only, parse_times, parse_times_and_days

    rng = np.random.default_rng(9)
    texts = ["2020-02-03 08:00", " 2020/02/04 ", "2020-02-05", "", None, pd.NA, "x", "31.12.2019"]
    workbook = [pd.Timestamp("2020-02-03 00:00"), pd.Timestamp("2020-02-03 08:30"), "2020-02-06"]
    columns = [
        pd.Series(rng.choice(np.array(texts, dtype=object), 400), index=range(9, 409)),
        pd.Series(rng.choice(np.array(texts[:4], dtype=object), 50), dtype="string"),
        pd.Series(rng.choice(np.array([*workbook, None], dtype=object), 60)),
        pd.Series(["2020-02-03 08:00", "2020-02-04"]),
        pd.Series(["2020-02-03"]),
        pd.Series(pd.to_datetime(["2020-02-03 00:00", None, "2020-02-04 08:00"])),
    ]
    for cells in columns:
        for zone in ("UTC", "Europe/Berlin"):
            times, bad, days = parse_times_and_days(cells, zone)
            old_times, old_bad = parse_times(cells, zone)
            pd.testing.assert_series_equal(times, old_times)
            pd.testing.assert_series_equal(bad, old_bad)
            pd.testing.assert_series_equal(days, date_only(cells))


def test_nul_found_as_before(tmp_path: Path) -> None:
    """A CSV file's NUL character, whose line is now counted only once one is found, is
    refused with the old message: in the first block of the file, far beyond it, on a last line
    without its line end; a file without one passes."""
    from celltrial.errors import DataError
    from celltrial.ingest.tables import _check_text

    row = b"P01,2020-02-01 08:00,CRP,5,mg/L\n"
    many = row * (5_000_000 // len(row))  # more than one block of 4 MiB
    cases = {
        "first": row * 3 + b"P0\x001,x\n" + row,
        "far": many + row * 7 + b"P02,\x00\n" + row,
        "last": many + b"P03,5\x00",
        "crlf": row.replace(b"\n", b"\r\n") * 9 + b"\x00",
        "none": many,
    }
    for name, content in cases.items():
        path = tmp_path / f"{name}.csv"
        path.write_bytes(content)
        said = []
        for check in (_check_text, reference_before._check_text):
            try:
                check(path, "lab file")
                said.append(None)
            except DataError as error:
                said.append(str(error))
        assert said[0] == said[1]
        assert (said[0] is None) == (name == "none")
    with pytest.raises(DataError, match="line 4 holds a NUL"):
        _check_text(tmp_path / "first.csv", "x")
