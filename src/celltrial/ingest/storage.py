"""Write validated results into the study database, idempotently, inside one import batch.

New results are bulk-inserted (each keeps its batch id and source row; on SQLite through the
driver's ``executemany`` of tuples, in the session's own transaction). A result already stored
for the same subject, test and time is left alone when its value is the same, and updated through
the audited ORM path (before/after rows, the import as reason) when it differs.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from celltrial.ingest.frame import group_codes, map_distinct
from celltrial.ingest.report import ValidationReport
from celltrial.store.audit import add_batch_rows
from celltrial.store.models import RESULT_COLUMNS, ImportBatch, Observation, Subject

#: A first chunk at least this large, into a table at most BULK_TABLE_FACTOR times larger, is a
#: bulk load: indexes are dropped and rebuilt once (see :class:`ObservationWriter`).
BULK_ROWS = 100_000
BULK_TABLE_FACTOR = 2


def in_namespace(statement, study_id: str, cohort: str | None):
    """``statement`` restricted to one namespace of subject codes: the study's own subjects
    (``cohort`` None) or one external cohort."""
    statement = statement.where(Subject.study_id == study_id)
    if cohort is None:
        return statement.where(Subject.cohort.is_(None))
    return statement.where(Subject.cohort == cohort)


def known_subjects(session: Session, study_id: str, cohort: str | None = None) -> pd.DataFrame:
    """Subjects of one namespace (the study's own, or one external cohort): index code;
    columns id, start, end (UTC or NaT)."""
    rows = session.execute(
        in_namespace(
            select(
                Subject.code,
                Subject.id,
                Subject.enrolled_at,
                Subject.admitted_at,
                Subject.discharged_at,
                Subject.died_at,
            ),
            study_id,
            cohort,
        )
    ).all()
    frame = pd.DataFrame(
        rows, columns=["code", "id", "enrolled", "admitted", "discharged", "died"]
    ).set_index("code")
    for column in ("enrolled", "admitted", "discharged", "died"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    frame["start"] = frame["enrolled"].fillna(frame["admitted"])
    frame["end"] = frame[["discharged", "died"]].min(axis=1)
    return frame


def codes_elsewhere(
    session: Session, study_id: str, codes: list[str], cohort: str | None
) -> dict[str | None, list[str]]:
    """Of ``codes``, those that name subjects of another namespace than ``cohort``: namespace
    (None for the study's own subjects) → codes, sorted."""
    if not codes:
        return {}
    found: dict[str | None, list[str]] = {}
    for start in range(0, len(codes), 500):
        part = codes[start : start + 500]
        statement = select(Subject.cohort, Subject.code).where(
            Subject.study_id == study_id, Subject.code.in_(part)
        )
        for where, code in session.execute(statement):
            if where != cohort:
                found.setdefault(where, []).append(code)
    return {where: sorted(found[where]) for where in found}


#: Subject facts a file may give: column of the reader's frame → Subject attribute.
FACTS: dict[str, str] = {
    "sex": "sex",
    "age": "age",
    "height_cm": "height_cm",
    "weight_kg": "weight_kg",
    "admitted": "admitted_at",
    "discharged": "discharged_at",
    "died": "died_at",
}
#: Facts that change together: a file that states an outcome (discharged or died) states both.
OUTCOME = ("discharged", "died")


def _fact_value(column: str, value: Any) -> Any:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if column in ("admitted", "discharged", "died"):
        return pd.Timestamp(value).tz_convert("UTC").to_pydatetime()
    if column == "sex":
        return str(value)
    return float(value)


def register_subjects(
    session: Session, batch: ImportBatch, study_id: str, info: pd.DataFrame, *, cohort: str | None
) -> int:
    """Create the subjects of ``info`` (column ``subject`` and what is known) that are new in
    their namespace (the study's own subjects, or external ``cohort``)."""
    existing = set(session.scalars(in_namespace(select(Subject.code), study_id, cohort)))
    new = info[~info["subject"].isin(existing)].drop_duplicates("subject")
    rows = [
        {
            "study_id": study_id,
            "code": str(r["subject"]),
            "cohort": cohort,
            **{FACTS[c]: _fact_value(c, r.get(c)) for c in FACTS if c in new.columns},
            "source_row": None if pd.isna(r.get("source_row")) else int(r["source_row"]),
        }
        for r in new.to_dict("records")
    ]
    return add_batch_rows(session, batch, Subject, rows)


def update_subject_facts(
    session: Session,
    study_id: str,
    info: pd.DataFrame,
    *,
    cohort: str | None,
    report: ValidationReport,
    zone: ZoneInfo | str = "UTC",
    apply: bool = True,
) -> int:
    """Apply the facts ``info`` gives for subjects already stored: each changed fact is an
    audited update (before, after, the import as reason) and a message in ``report``; a fact
    the file leaves empty is kept. Returns the number of subjects changed. With ``apply``
    False, only reports and counts them (reads only: no write lock, nothing to roll back)."""
    columns = [c for c in FACTS if c in info.columns]
    if not columns or info.empty:
        return 0
    given = info.drop_duplicates("subject").set_index("subject")
    subjects = session.scalars(
        in_namespace(select(Subject), study_id, cohort).where(
            Subject.code.in_([str(c) for c in given.index])
        )
    ).all()
    changed_subjects = 0
    for subject in subjects:
        row = given.loc[subject.code]
        new = {c: _fact_value(c, row[c]) for c in columns}
        if any(new.get(c) is not None for c in OUTCOME):  # an outcome is stated whole
            new.update({c: new.get(c) for c in OUTCOME})
        changes = []
        for column, value in new.items():
            if value is None and column not in OUTCOME:
                continue
            attribute = FACTS[column]
            old = getattr(subject, attribute)
            if _same_fact(old, value):
                continue
            if apply:
                setattr(subject, attribute, value)
            changes.append((column, old, value))
        if changes:
            changed_subjects += 1
            source_row = row.get("source_row")
            report.add(
                "warning",
                "subject_fact_changed",
                row=[None if pd.isna(source_row) else int(source_row)] * len(changes),
                column=[column for column, _, _ in changes],
                value=[
                    f"{subject.code}: {_shown(old, zone)} → {_shown(new, zone)}"
                    for _, old, new in changes
                ],
                expected="the value stored before (changed by this import, audited)",
            )
    if apply:
        session.flush()
    return changed_subjects


def _same_fact(old: Any, new: Any) -> bool:
    if old is None or new is None:
        return old is None and new is None
    if isinstance(old, float) or isinstance(new, float):
        return abs(float(old) - float(new)) <= 1e-9 * max(1.0, abs(float(old)))
    if hasattr(old, "tzinfo") and old.tzinfo is None:  # SQLite gives naive UTC
        old = old.replace(tzinfo=UTC)
    return old == new


def _shown(value: Any, zone: ZoneInfo | str) -> str:
    if value is None:
        return "empty"
    if isinstance(value, datetime):
        moment = pd.Timestamp(value)
        moment = moment.tz_localize("UTC") if moment.tzinfo is None else moment
        return moment.tz_convert(zone).strftime("%Y-%m-%d %H:%M %Z")
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


class ObservationWriter:
    """Writes the validated chunks of one import into ``observation`` inside the batch's
    transaction; call :meth:`write` per chunk and :meth:`finish` once before commit.

    - Idempotent: a result already stored (same subject, test and time) by an earlier import is
      left alone when its value is the same and updated through the audited ORM path when it
      differs. Only subjects that had results before this import are looked up.
    - A result repeated in a later chunk of the same file is a duplicate (same value: stored
      once) or a conflict (different values: neither is kept), as within one chunk.
    - Large loads on SQLite (a first chunk of at least :data:`BULK_ROWS` results into a table
      not much larger) drop the observation indexes and rebuild them in :meth:`finish`, in the
      same transaction: an index built once is several times faster than one kept up to date.
    """

    def __init__(
        self,
        session: Session,
        batch: ImportBatch,
        report: ValidationReport,
        *,
        source: str,
        on_progress: Callable[[int], None] | None = None,
        dry: bool = False,
        stage: sqlite3.Connection | None = None,
    ) -> None:
        self.session = session
        #: a private SQLite file the rows go to first (see :mod:`celltrial.ingest.staging`):
        #: no session until :meth:`store_staged` copies them into the study
        self.stage = stage
        self.batch = batch
        #: count what would be stored, reading only (a dry run: no write lock is taken)
        self.dry = dry
        self.report = report
        self.source = source
        self.on_progress = on_progress
        self.counts = {"inserted": 0, "updated": 0, "unchanged": 0}
        self._prior: set[int] | None = None
        self._preloaded: pd.DataFrame | None = None
        self._dropped: list[str] = []
        self._seen: list[pd.DataFrame] = []
        #: the distinct times of ``_seen`` (sorted): a chunk's rows at other times repeat none
        self._seen_times = np.empty(0, dtype="int64")
        self._test_codes: dict[str, int] = {}

    # -- public ------------------------------------------------------------------------------
    def write(self, rows: pd.DataFrame, subject_ids: pd.Series) -> dict[str, int]:
        """Store one validated chunk (see :func:`celltrial.ingest.validate.check_results`)."""
        if rows.empty:
            return self.counts
        frame = rows.copy(deep=False)  # copy-on-write: ``rows`` is never changed through it
        frame["subject_id"] = map_distinct(frame["subject"], subject_ids).astype("int64")
        frame["time"] = pd.to_datetime(frame["time"], utc=True).astype("datetime64[us, UTC]")
        if self._prior is None:
            self._start(len(frame))
        frame = self._within_file(frame)
        existing = self._existing(frame)
        if len(existing):
            merged = frame.merge(
                existing, on=["subject_id", "test", "time"], how="left", suffixes=("", "_old")
            )
            found = merged["id_old"].notna().to_numpy()
            same = (
                found
                & _same(merged["value"], merged["value_old"]).to_numpy()
                & (merged["qualifier"].fillna("") == merged["qualifier_old"].fillna("")).to_numpy()
            )
            self.counts["unchanged"] += int(same.sum())
            changed = merged[found & ~same]
            self.counts["updated"] += (
                len(changed)
                if self.dry
                else _update(self.session, self.batch, changed, self.source)
            )
            frame = merged.loc[~found, frame.columns]
        self.counts["inserted"] += self._insert(frame)
        return self.counts

    def finish(self) -> None:
        """Rebuild the indexes dropped for a bulk load (same transaction)."""
        if self._dropped:
            cursor = self._cursor()
            for sql in self._dropped:
                cursor.execute(sql)
            self._dropped = []

    # -- steps -------------------------------------------------------------------------------
    def _cursor(self) -> Any:
        if self.stage is not None:
            return self.stage.cursor()
        return self.session.connection().connection.driver_connection.cursor()

    def _start(self, first_chunk: int) -> None:
        """Which subjects had results before this import; bulk mode or not."""
        if self.stage is not None:  # the study had none (checked again in store_staged)
            self._prior = set()
            return
        self.session.flush()
        found = self.session.execute(
            select(Observation.subject_id)
            .where(
                (Observation.import_batch_id != self.batch.id)
                | Observation.import_batch_id.is_(None)
            )
            .distinct()
        ).scalars()
        self._prior = set(found)
        if self.dry:
            return
        if self.session.connection().dialect.name != "sqlite" or first_chunk < BULK_ROWS:
            return
        total = self.session.scalar(select(func.count()).select_from(Observation)) or 0
        if total > BULK_TABLE_FACTOR * first_chunk:
            return
        self._preloaded = _query_existing(self.session, self.batch, sorted(self._prior))
        self._dropped = _drop_indexes(self._cursor())

    def store_staged(
        self, session: Session, batch: ImportBatch, placeholders: dict[int, int]
    ) -> int:
        """Copy the staged rows into the study (the write transaction of ``session``, the stage
        attached to it as :data:`STAGE_SCHEMA`), their subject ids from ``placeholders``
        (the id each row was staged with → the stored subject's id). Indexes dropped for a bulk
        load are rebuilt in :meth:`finish`. Returns the number of rows stored."""
        self.session, self.batch, self.stage = session, batch, None
        session.flush()
        staged = self.counts["inserted"]
        cursor = self._cursor()
        total = session.scalar(select(func.count()).select_from(Observation)) or 0
        if staged >= BULK_ROWS and total <= BULK_TABLE_FACTOR * staged:
            self._dropped = _drop_indexes(cursor)
        cursor.execute(
            f"CREATE TEMP TABLE {_SUBJECT_MAP} (placeholder INTEGER PRIMARY KEY, id INTEGER)"
        )
        try:
            cursor.executemany(f"INSERT INTO {_SUBJECT_MAP} VALUES (?, ?)", placeholders.items())
            columns = ", ".join(STAGED_COLUMNS)
            picked = ", ".join(f"s.{c}" for c in STAGED_COLUMNS)
            cursor.execute(
                f"INSERT INTO observation (subject_id, {columns}, import_batch_id, source) "
                f"SELECT m.id, {picked}, ?, ? FROM {STAGE_SCHEMA}.observation AS s "
                f"CROSS JOIN {_SUBJECT_MAP} AS m ON m.placeholder = s.subject_id "
                "ORDER BY s.rowid",
                (batch.id, self.source),
            )
            stored = cursor.rowcount
        finally:
            cursor.execute(f"DROP TABLE {_SUBJECT_MAP}")
        if stored != staged:  # every staged row has its subject (checked by the caller)
            raise RuntimeError(f"{stored} of {staged} staged results copied")
        self._add_batch_count(stored)
        if self.on_progress is not None:
            self.on_progress(stored)
        return stored

    def _existing(self, frame: pd.DataFrame) -> pd.DataFrame:
        ids = [i for i in frame["subject_id"].unique().tolist() if i in (self._prior or ())]
        if not ids:
            return pd.DataFrame()
        if self._preloaded is not None:
            return self._preloaded[self._preloaded["subject_id"].isin(ids)]
        return _query_existing(self.session, self.batch, ids)

    def _within_file(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Drop results repeated from an earlier chunk of the same file (see class doc).

        Results are matched on integer keys: subject id and test code in one, the time in UTC
        microseconds in the other (a merge on text and zoned times spends its time hashing)."""
        # each distinct test's code, spread to its rows (in order of first appearance)
        positions, tests = pd.factorize(
            frame["test"].astype(str).to_numpy(dtype=object), use_na_sentinel=False
        )
        for name in tests:
            self._test_codes.setdefault(name, len(self._test_codes))
        codes = np.array([self._test_codes[name] for name in tests], dtype="int64")
        keys = pd.DataFrame(
            {
                "_subject_test": (frame["subject_id"].to_numpy(dtype="int64") << 20)
                + codes[positions],
                "_time": _utc_micros(frame["time"]),
            },
            index=frame.index,
        )
        for column in ("value", "qualifier", "source_row", "flagged", "column"):
            keys[column] = frame[column]
        times = keys["_time"].to_numpy()
        candidates = np.isin(times, self._seen_times)  # only these can repeat an earlier row
        if candidates.any():
            here = np.unique(times[candidates])
            earlier = pd.concat(
                [seen[np.isin(seen["_time"].to_numpy(), here)] for seen in self._seen],
                ignore_index=True,
            )
            hits = (
                keys[candidates]
                .reset_index()
                .merge(earlier, on=["_subject_test", "_time"], suffixes=("", "_old"))
            )
            if len(hits):
                frame = self._resolve_repeats(frame, hits)
                keys = keys.loc[frame.index]
        self._seen.append(keys.reset_index(drop=True))
        self._seen_times = np.union1d(self._seen_times, keys["_time"].to_numpy())
        return frame

    def _resolve_repeats(self, frame: pd.DataFrame, hits: pd.DataFrame) -> pd.DataFrame:
        same = _same(hits["value"], hits["value_old"]) & (
            hits["qualifier"].fillna("") == hits["qualifier_old"].fillna("")
        )
        counts = self.report.counts
        for part, kind, severity in (
            (hits[same], "duplicate", "info"),
            (hits[~same], "duplicate_conflict", "warning"),
        ):
            if part.empty:
                continue
            self.report.add(
                severity,
                kind,
                row=part["source_row"].tolist(),
                column=part["column"].tolist(),
                value=(
                    part["value"].astype(str)
                    + " (as row "
                    + part["source_row_old"].astype(str)
                    + ": "
                    + part["value_old"].astype(str)
                    + ")"
                ).tolist(),
                expected="one value per subject, test and time"
                if kind == "duplicate_conflict"
                else "each result once",
            )
            for flagged in part["flagged"]:
                counts["flagged" if flagged else "stored"] -= 1
                counts["reported"] += 1
        conflicts = hits[~same].drop_duplicates("source_row_old")
        if len(conflicts):
            self._remove_earlier(conflicts)
        return frame.drop(index=hits["index"].unique())

    def _remove_earlier(self, conflicts: pd.DataFrame) -> None:
        """A conflict with a row stored from an earlier chunk: that row is not kept either."""
        rows = conflicts["source_row_old"].astype(int).tolist()
        for start in range(0, 0 if self.dry else len(rows), 500):
            part = rows[start : start + 500]
            if self.stage is not None:
                marks = ", ".join("?" * len(part))
                self.stage.execute(f"DELETE FROM observation WHERE source_row IN ({marks})", part)
                continue
            self.session.execute(
                delete(Observation).where(
                    Observation.import_batch_id == self.batch.id, Observation.source_row.in_(part)
                )
            )
        for flagged in conflicts["flagged_old"]:
            self.report.counts["flagged" if flagged else "stored"] -= 1
            self.report.counts["reported"] += 1
        self.counts["inserted"] -= len(rows)
        self._add_batch_count(-len(rows))
        self.report.add(
            "warning",
            "duplicate_conflict",
            row=rows,
            column=conflicts["column_old"].tolist(),
            value=conflicts["value_old"].astype(str).tolist(),
            expected="one value per subject, test and time (a later row of the file differs)",
        )
        self._seen = [seen[~seen["source_row"].isin(rows)] for seen in self._seen]

    def _add_batch_count(self, n: int) -> None:
        counts = dict(self.batch.counts)
        counts["observation"] = counts.get("observation", 0) + n
        self.batch.counts = counts

    def _insert(self, frame: pd.DataFrame) -> int:
        if frame.empty:
            return 0
        if self.dry:
            self._add_batch_count(len(frame))
            return len(frame)
        if self.stage is not None:
            n = _insert_sqlite(self._cursor(), frame, self.batch.id, self.source)
            self._add_batch_count(n)
            return n
        connection = self.session.connection()
        if connection.dialect.name != "sqlite":
            records = _columns(frame, self.batch, self.source)
            keys = list(records)
            rows = (dict(zip(keys, v, strict=True)) for v in zip(*records.values(), strict=True))
            return add_batch_rows(self.session, self.batch, Observation, rows)
        n = _insert_sqlite(self._cursor(), frame, self.batch.id, self.source)
        if self.on_progress is not None:
            self.on_progress(n)
        self._add_batch_count(n)
        return n


def _drop_indexes(cursor: Any) -> list[str]:
    """Drop the observation table's indexes (SQLite); their CREATE statements, to rebuild."""
    indexes = cursor.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' "
        "AND tbl_name = 'observation' AND sql IS NOT NULL"
    ).fetchall()
    for name, _sql in indexes:
        cursor.execute(f'DROP INDEX main."{name}"')
    return [sql for _name, sql in indexes]


#: The schema name a stage is attached under while its rows are copied into the study.
STAGE_SCHEMA = "celltrial_stage"
#: Staged subject id → stored subject id, for one copy (a temporary table of the connection).
_SUBJECT_MAP = "temp.celltrial_subject_map"
#: The columns a staged row carries besides its subject (see :func:`_insert_sqlite`).
STAGED_COLUMNS = RESULT_COLUMNS


def write_observations(
    session: Session,
    batch: ImportBatch,
    rows: pd.DataFrame,
    subject_ids: pd.Series,
    *,
    source: str,
    report: ValidationReport | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Store one validated frame (a whole import in one call); counts."""
    writer = ObservationWriter(
        session,
        batch,
        report or ValidationReport(file=source),
        source=source,
        on_progress=on_progress,
    )
    counts = writer.write(rows, subject_ids)
    writer.finish()
    return counts


def _same(a: pd.Series, b: pd.Series) -> pd.Series:
    a, b = a.astype(float), b.astype(float)
    return (a.isna() & b.isna()) | np.isclose(a, b, rtol=1e-12, atol=0.0)


def _query_existing(session: Session, batch: ImportBatch, ids: list[int]) -> pd.DataFrame:
    found: list[Any] = []
    for start in range(0, len(ids), 500):
        found += session.execute(
            select(
                Observation.id,
                Observation.subject_id,
                Observation.test,
                Observation.time,
                Observation.value,
                Observation.qualifier,
            ).where(
                Observation.subject_id.in_(ids[start : start + 500]),
                (Observation.import_batch_id != batch.id) | Observation.import_batch_id.is_(None),
            )
        ).all()
    old = pd.DataFrame(
        found, columns=["id_old", "subject_id", "test", "time", "value_old", "qualifier_old"]
    )
    if len(old):
        old["time"] = pd.to_datetime(old["time"], utc=True).astype("datetime64[us, UTC]")
        old = old.drop_duplicates(["subject_id", "test", "time"], keep="last")
    return old


def _update(session: Session, batch: ImportBatch, changed: pd.DataFrame, source: str) -> int:
    for row in changed.itertuples(index=False):
        obs = session.get(Observation, int(row.id_old))
        obs.value = None if pd.isna(row.value) else float(row.value)
        obs.qualifier = row.qualifier or ""
        # text cut to its column's length, as the generic insert path does (a longer text
        # refused here would refuse the file in a message that names no row)
        obs.raw_value = None if pd.isna(row.raw_value) else str(row.raw_value)[:64]
        obs.raw_unit = None if pd.isna(row.raw_unit) else str(row.raw_unit)[:32]
        obs.unit = None if pd.isna(row.unit) else str(row.unit)[:32]
        obs.flags = None if pd.isna(row.flags) else str(row.flags)[:64]
        obs.source = source
        obs.import_batch_id = batch.id
        obs.source_row = int(row.source_row)
    session.flush()
    return len(changed)


#: Columns that are the same for many rows: inlined as SQL literals per group, not bound per row.
_GROUP_COLUMNS = ("test", "raw_unit", "unit", "qualifier", "specimen", "flags")
_BOUND_COLUMNS = ("subject_id", "time", "raw_value", "value", "source_row")
_MAX_TEXT = {"raw_value": 64, "raw_unit": 32, "specimen": 32, "flags": 64, "unit": 32, "test": 16}


def _insert_sqlite(cursor: Any, frame: pd.DataFrame, batch_id: int, source: str) -> int:
    """executemany of tuples on the driver's cursor (same transaction), rows sorted by subject
    and time, constant columns of each group written as literals. The raw text is kept whole
    (SQLite does not enforce VARCHAR lengths; the generic path truncates).

    The groups go in the order they first appear among the sorted rows, each group's rows in
    that sorted order: one sort puts each group's rows next to each other, so that each group
    takes a slice of the columns instead of picking its rows out of every column."""
    stamps = _utc_micros(frame["time"])
    subject_ids = frame["subject_id"].to_numpy(dtype="int64")
    by_time = np.lexsort((stamps, subject_ids))
    group, cells = group_codes(frame, _GROUP_COLUMNS)
    # groups numbered in order of their first row among the sorted rows; sorted by that number
    # (stable: each group's rows stay in subject and time order)
    ranked, _ = pd.factorize(group[by_time])
    order = by_time[np.argsort(ranked, kind="stable")]
    sizes = np.bincount(ranked)
    bound = {
        "subject_id": subject_ids[order],
        "time": _sqlite_times(stamps[order]),
        "raw_value": frame["raw_value"].to_numpy(dtype=object, na_value=None)[order],
        "value": _floats(frame["value"])[order],
        "source_row": frame["source_row"].to_numpy(dtype="int64")[order],
    }
    missing_refs = {c: frame[c].isna().to_numpy()[order] for c in ("ref_low", "ref_high")}
    # a reference column empty in every row is a NULL literal in every group: no numbers needed
    refs = {c: _floats(frame[c])[order] for c, missing in missing_refs.items() if not missing.all()}
    start = 0
    for size in sizes.tolist():
        rows = slice(start, start + size)
        first = order[start]  # the group's first row: its values of the group columns
        start += size
        key = (None if codes[first] < 0 else values[first] for values, codes in cells)
        constants = dict(zip(_GROUP_COLUMNS, key, strict=True))
        constants["import_batch_id"] = batch_id
        constants["source"] = source
        names = list(_BOUND_COLUMNS)
        arrays = [bound[c][rows] for c in _BOUND_COLUMNS]
        for column, missing in missing_refs.items():
            if missing[rows].all():
                constants[column] = None
            else:
                names.append(column)
                arrays.append(refs[column][rows])
        literals = {c: _literal(v, _MAX_TEXT.get(c)) for c, v in constants.items()}
        unsafe = [c for c, lit in literals.items() if lit is None]
        for column in unsafe:  # text that cannot be a literal (NUL): bind it
            names.append(column)
            arrays.append(np.array([constants[column]] * size, dtype=object))
            del literals[column]
        columns = [*names, *literals]
        row_sql = f"({', '.join(['?'] * len(names) + list(literals.values()))})"
        _insert_rows(
            cursor, f"INSERT INTO observation ({', '.join(columns)}) VALUES ", row_sql, arrays
        )
    return len(frame)


#: Rows per multi-row INSERT: one statement step for many rows is about twice as fast as a step
#: per row, and stays far below SQLite's limit of 32,766 bound parameters.
ROWS_PER_STATEMENT = 500


def _insert_rows(cursor: Any, head: str, row_sql: str, arrays: list[np.ndarray]) -> None:
    """Insert the rows given column-wise in ``arrays`` with multi-row VALUES statements."""
    n = len(arrays[0])
    table = np.empty((n, len(arrays)), dtype=object)
    for j, values in enumerate(arrays):
        table[:, j] = values
    full = n - n % ROWS_PER_STATEMENT
    if full:
        cursor.executemany(
            head + ", ".join([row_sql] * ROWS_PER_STATEMENT),
            table[:full].reshape(full // ROWS_PER_STATEMENT, -1).tolist(),
        )
    if n > full:
        cursor.execute(head + ", ".join([row_sql] * (n - full)), table[full:].ravel().tolist())


def _literal(value: Any, limit: int | None) -> str | None:
    """An SQL literal for ``value``; None when it must be bound instead."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "NULL"
    if isinstance(value, bool | np.bool_):
        return str(int(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    text = str(value)[:limit] if limit else str(value)
    if "\x00" in text:
        return None
    return "'" + text.replace("'", "''") + "'"


def _utc_micros(times: pd.Series) -> np.ndarray:
    """Aware times as int64 microseconds since the epoch (UTC)."""
    naive = times.dt.tz_convert("UTC").dt.tz_localize(None)
    return naive.to_numpy().astype("datetime64[us]").astype("int64")


def _sqlite_times(stamps: np.ndarray) -> np.ndarray:
    """UTC times (int64 µs) as SQLAlchemy stores them on SQLite ('YYYY-MM-DD HH:MM:SS.ffffff'),
    formatted once per distinct time."""
    codes, uniques = pd.factorize(stamps)
    text = np.datetime_as_string(uniques.astype("datetime64[us]"), unit="us")
    text = np.char.replace(text, "T", " ").astype(object)
    return text[codes]


def _floats(values: pd.Series) -> np.ndarray:
    array = values.to_numpy(dtype="float64", na_value=np.nan)
    out = array.astype(object)
    out[np.isnan(array)] = None
    return out


def _columns(frame: pd.DataFrame, batch: ImportBatch, source: str) -> dict[str, list[Any]]:
    """Column lists for the generic (non-SQLite) path; None for missing values."""

    def clean(series: pd.Series) -> list[Any]:
        obj = series.astype(object)
        return obj.where(series.notna(), None).tolist()

    n = len(frame)
    return {
        "subject_id": frame["subject_id"].astype("int64").tolist(),
        "time": [t.to_pydatetime() for t in frame["time"]],
        "test": frame["test"].astype(str).tolist(),
        "raw_value": clean(frame["raw_value"].astype("string").str.slice(0, 64)),
        "raw_unit": clean(frame["raw_unit"].astype("string").str.slice(0, 32)),
        "value": clean(frame["value"].astype(float)),
        "unit": clean(frame["unit"]),
        "qualifier": frame["qualifier"].fillna("").astype(str).tolist(),
        "ref_low": clean(frame["ref_low"].astype(float)),
        "ref_high": clean(frame["ref_high"].astype(float)),
        "specimen": clean(frame["specimen"].astype("string").str.slice(0, 32)),
        "flags": clean(frame["flags"]),
        "source": [source] * n,
        "import_batch_id": [batch.id] * n,
        "source_row": frame["source_row"].astype("int64").tolist(),
    }
