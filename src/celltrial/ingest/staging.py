"""Validated results staged in a private SQLite file while the rest of the file is validated.

On a SQLite study, each validated chunk of an import is prepared for storage (subject ids, time
text, repeats across chunks) and inserted into a table of a private file as soon as it is
validated, while the next chunk is being validated. The write transaction then copies all of
them into the study with one ``INSERT … SELECT`` (the file attached to its connection), so the
study holds its write lock for the copy only. Validation still only reads the study: no other
writer waits for it. The stage is used when none of the namespace's subjects has results yet
(a first load); otherwise results are compared with the stored ones in the write step (see
:class:`~celltrial.ingest.storage.ObservationWriter`).
"""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

import pandas as pd
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session

from celltrial.errors import DataError
from celltrial.ingest.report import ValidationReport
from celltrial.ingest.storage import (
    STAGE_SCHEMA,
    STAGED_COLUMNS,
    ObservationWriter,
    in_namespace,
)
from celltrial.store.models import ImportBatch, Observation, Subject

#: The stage is a scratch file: no journal, no syncing (it is thrown away after the import).
_PRAGMAS = ("journal_mode=OFF", "synchronous=OFF", "temp_store=MEMORY")


class _StagedBatch:
    """The batch of staged rows before the write step: no row in the study yet."""

    id = 0

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}


def can_stage(session: Session, study_id: str, cohort: str | None) -> bool:
    """Whether an import into this namespace can be staged: a SQLite study whose subjects of
    the namespace have no results yet (nothing stored to compare with)."""
    if session.get_bind().dialect.name != "sqlite":
        return False
    results = select(Observation.id).join(Subject, Observation.subject_id == Subject.id)
    return session.execute(in_namespace(results, study_id, cohort).limit(1)).first() is None


class Stage:
    """The validated chunks of one import in a private SQLite file (see the module doc).

    :meth:`add` each chunk with the subjects known at its validation (ids below 0 for subjects
    to be registered); :meth:`store` in the write transaction; the file is removed on exit.
    """

    def __init__(self, report: ValidationReport, *, source: str) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="celltrial-import-")
        self.path = Path(self._folder.name) / "stage.db"
        self._connection = sqlite3.connect(self.path, isolation_level=None)
        for pragma in _PRAGMAS:
            self._connection.execute(f"PRAGMA {pragma}")
        columns = ", ".join(("subject_id", *STAGED_COLUMNS, "import_batch_id", "source"))
        # no column types: each value is kept as given, then converted by the study's columns
        # exactly as a direct insert would be
        self._connection.execute(f"CREATE TABLE observation ({columns})")
        self._connection.execute("BEGIN")
        #: messages and counts of repeats across chunks, merged after validation's
        self.report = report
        self.writer = ObservationWriter(
            None,  # type: ignore[arg-type]  # no session until store()
            _StagedBatch(),  # type: ignore[arg-type]
            report,
            source=source,
            stage=self._connection,
        )
        #: subject code → the id its rows were staged with
        self._subjects: dict[str, int] = {}

    def __enter__(self) -> Stage:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._connection.close()
        self._folder.cleanup()

    def add(self, rows: pd.DataFrame, known: pd.DataFrame) -> None:
        """Stage one validated chunk; ``known``: the subjects as validated (index code, id)."""
        ids = known["id"]
        codes = rows["subject"].astype(str).unique()
        # a code keeps its id from chunk to chunk (new subjects are numbered once)
        self._subjects.update(zip(codes, ids.reindex(codes).astype("int64").tolist(), strict=True))
        self.writer.write(rows, ids)

    def store(self, session: Session, batch: ImportBatch, ids: pd.Series, path: Path) -> int:
        """Copy the staged rows into the study in ``session``'s transaction (subjects
        registered: ``ids`` code → id); the number stored. Refused, storing nothing, when a
        subject was removed, renamed or given results by another user meanwhile."""
        stored = ids.reindex(list(self._subjects))
        codes = sorted(stored.index[stored.isna()])
        if codes:
            raise DataError(
                f"{path}: subject(s) {', '.join(codes[:5])} changed in the study while the file "
                "was being validated; nothing was stored: import the file again"
            )
        real = stored.astype("int64").tolist()
        if _have_results(session, sorted(set(real))):
            raise DataError(
                f"{path}: results of subjects of this file were stored by another user while "
                "the file was being validated; nothing was stored: import the file again"
            )
        placeholders = dict(zip(self._subjects.values(), real, strict=True))
        return self.writer.store_staged(session, batch, placeholders)

    def attach(self, session: Session) -> None:
        """Attach the stage to ``session``'s connection (before its first write: SQLite
        attaches outside a transaction only); detached when the connection is given back."""
        if self._connection.in_transaction:  # staged rows written (the file unlocked)
            self._connection.execute("COMMIT")
        connection = session.connection()
        _detach_on_checkin(connection.engine)
        connection.exec_driver_sql(f"ATTACH DATABASE ? AS {STAGE_SCHEMA}", (str(self.path),))
        connection.info[STAGE_SCHEMA] = True


def _have_results(session: Session, subject_ids: list[int]) -> bool:
    """Whether any of these subjects has a result stored."""
    for start in range(0, len(subject_ids), 500):
        part = subject_ids[start : start + 500]
        found = select(Observation.id).where(Observation.subject_id.in_(part)).limit(1)
        if session.execute(found).first() is not None:
            return True
    return False


def _detach_on_checkin(engine: Engine) -> None:
    if not event.contains(engine, "checkin", _detach):
        event.listen(engine, "checkin", _detach)


def _detach(dbapi_connection: sqlite3.Connection, record: object) -> None:
    """Detach a stage from a connection going back to its pool (its transaction is over)."""
    info = getattr(record, "info", None)
    if dbapi_connection is not None and info is not None and info.pop(STAGE_SCHEMA, None):
        dbapi_connection.execute(f"DETACH DATABASE {STAGE_SCHEMA}")
