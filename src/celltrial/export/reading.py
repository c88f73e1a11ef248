"""Observations read in chunks of whole subjects, so that an export holds one chunk at a time.

Belongs in :mod:`celltrial.store.frames` (only the store should talk to the database: it is
the query of :func:`~celltrial.store.frames.read_observations`, streamed); kept here until it
moves there.
"""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
from sqlalchemy import Engine, select

from celltrial.store.frames import _subject_filter
from celltrial.store.models import Observation, Subject

#: Rows per chunk (a subject's rows are never split across chunks, so a chunk may be larger).
CHUNK_ROWS = 20_000
_COLUMNS = (
    "subject_id",
    "time",
    "test",
    "value",
    "unit",
    "raw_value",
    "raw_unit",
    "qualifier",
    "ref_low",
    "ref_high",
    "specimen",
    "source",
)


def read_observation_chunks(
    engine: Engine,
    study_id: str,
    *,
    cohort: str | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> Iterator[pd.DataFrame]:
    """The study's (or ``cohort``'s) observations, ordered by subject and time, as frames of
    about ``chunk_rows`` rows holding every row of each subject they hold (columns of
    :data:`celltrial.frames.OBSERVATION_COLUMNS` but ``study_day``; ``time`` aware UTC)."""
    statement = _subject_filter(
        select(
            Subject.code.label("subject_id"),
            Subject.id.label("subject_key"),
            Observation.time,
            Observation.test,
            Observation.value,
            Observation.unit,
            Observation.raw_value,
            Observation.raw_unit,
            Observation.qualifier,
            Observation.ref_low,
            Observation.ref_high,
            Observation.specimen,
            Observation.source,
        ).join(Subject, Observation.subject_id == Subject.id),
        study_id,
        cohort,
    ).order_by(Subject.code, Subject.id, Observation.time, Observation.id)
    names = ["subject_id", "subject_key", *_COLUMNS[1:]]
    with engine.connect() as connection:
        result = connection.execution_options(stream_results=True, yield_per=chunk_rows).execute(
            statement
        )
        pending: list[tuple] = []
        for partition in result.partitions(chunk_rows):
            pending.extend(map(tuple, partition))
            if len(pending) < chunk_rows:
                continue
            last_key = pending[-1][1]
            cut = len(pending)
            while cut > 0 and pending[cut - 1][1] == last_key:
                cut -= 1
            if cut == 0:  # one subject so far: wait for the next one
                continue
            yield _to_frame(pending[:cut], names)
            pending = pending[cut:]
        if pending:
            yield _to_frame(pending, names)


def _to_frame(rows: list[tuple], names: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(rows, columns=names)
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    for column in ("value", "ref_low", "ref_high"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    return frame.drop(columns="subject_key")


__all__ = ["CHUNK_ROWS", "read_observation_chunks"]
