"""Write validated results into the study database, idempotently, inside one import batch.

New results are bulk-inserted (each keeps its batch id and source row; on SQLite through the
driver's ``executemany`` in chunks, in the session's own transaction). A result already stored
for the same subject, test and time is left alone when its value is the same, and updated through
the audited ORM path (before/after rows, the import as reason) when it differs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from celltrial.store.audit import add_batch_rows
from celltrial.store.models import ImportBatch, Observation, Subject

INSERT_CHUNK = 50_000
_COLUMNS = (
    "subject_id",
    "time",
    "test",
    "raw_value",
    "raw_unit",
    "value",
    "unit",
    "qualifier",
    "ref_low",
    "ref_high",
    "specimen",
    "source",
    "import_batch_id",
    "source_row",
)


def known_subjects(session: Session, study_id: str) -> pd.DataFrame:
    """Subjects of the study (all cohorts): index code; columns id, start, end (UTC or NaT)."""
    rows = session.execute(
        select(
            Subject.code,
            Subject.id,
            Subject.enrolled_at,
            Subject.admitted_at,
            Subject.discharged_at,
            Subject.died_at,
        ).where(Subject.study_id == study_id)
    ).all()
    frame = pd.DataFrame(
        rows, columns=["code", "id", "enrolled", "admitted", "discharged", "died"]
    ).set_index("code")
    for column in ("enrolled", "admitted", "discharged", "died"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    frame["start"] = frame["enrolled"].fillna(frame["admitted"])
    frame["end"] = frame[["discharged", "died"]].min(axis=1)
    return frame


def register_subjects(
    session: Session, batch: ImportBatch, study_id: str, info: pd.DataFrame, *, cohort: str | None
) -> int:
    """Create the subjects of ``info`` (column ``subject`` and what is known) that are new."""
    existing = set(session.scalars(select(Subject.code).where(Subject.study_id == study_id)))
    new = info[~info["subject"].isin(existing)].drop_duplicates("subject")

    def when(value: Any) -> Any:
        return None if pd.isna(value) else pd.Timestamp(value).to_pydatetime()

    rows = [
        {
            "study_id": study_id,
            "code": str(r.subject),
            "cohort": cohort,
            "sex": None if pd.isna(r.sex) else str(r.sex),
            "age": None if pd.isna(r.age) else float(r.age),
            "admitted_at": when(r.admitted),
            "discharged_at": when(r.discharged),
            "died_at": when(r.died),
            "source_row": None if pd.isna(r.source_row) else int(r.source_row),
        }
        for r in new.itertuples(index=False)
    ]
    return add_batch_rows(session, batch, Subject, rows)


def write_observations(
    session: Session,
    batch: ImportBatch,
    rows: pd.DataFrame,
    subject_ids: pd.Series,
    *,
    source: str,
    on_progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Insert new results, update changed ones (audited), skip identical ones; counts."""
    frame = rows.copy()
    frame["subject_id"] = frame["subject"].map(subject_ids).astype("int64")
    frame["time"] = pd.to_datetime(frame["time"], utc=True).astype("datetime64[us, UTC]")
    existing = _existing(session, batch, frame)
    counts = {"inserted": 0, "updated": 0, "unchanged": 0}
    if len(existing):
        merged = frame.merge(
            existing, on=["subject_id", "test", "time"], how="left", suffixes=("", "_old")
        )
        found = merged["id_old"].notna()
        same = (
            found
            & _same(merged["value"], merged["value_old"])
            & (merged["qualifier"].fillna("") == merged["qualifier_old"].fillna(""))
        )
        changed = merged[found & ~same]
        counts["unchanged"] = int(same.sum())
        counts["updated"] = _update(session, batch, changed, source)
        frame = merged.loc[~found, frame.columns]
    counts["inserted"] = _insert(session, batch, frame, source, on_progress)
    return counts


def _same(a: pd.Series, b: pd.Series) -> pd.Series:
    a, b = a.astype(float), b.astype(float)
    return (a.isna() & b.isna()) | np.isclose(a, b, rtol=1e-12, atol=0.0)


def _existing(session: Session, batch: ImportBatch, frame: pd.DataFrame) -> pd.DataFrame:
    ids = frame["subject_id"].unique().tolist()
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
        obs.raw_value = None if pd.isna(row.raw_value) else str(row.raw_value)
        obs.raw_unit = None if pd.isna(row.raw_unit) else str(row.raw_unit)
        obs.unit = None if pd.isna(row.unit) else str(row.unit)
        obs.source = source
        obs.import_batch_id = batch.id
        obs.source_row = int(row.source_row)
    session.flush()
    return len(changed)


def _insert(
    session: Session,
    batch: ImportBatch,
    frame: pd.DataFrame,
    source: str,
    on_progress: Callable[[int], None] | None,
) -> int:
    if frame.empty:
        return 0
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        records = _columns(frame, batch, source, text_times=False)
        keys = list(records)
        rows = (dict(zip(keys, vals, strict=True)) for vals in zip(*records.values(), strict=True))
        return add_batch_rows(session, batch, Observation, rows)
    cursor = connection.connection.driver_connection.cursor()
    sql = (
        f"INSERT INTO observation ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
    )
    for start in range(0, len(frame), INSERT_CHUNK):
        part = frame.iloc[start : start + INSERT_CHUNK]
        records = _columns(part, batch, source, text_times=True)
        cursor.executemany(sql, zip(*records.values(), strict=True))
        if on_progress is not None:
            on_progress(len(part))
    counts = dict(batch.counts)
    counts["observation"] = counts.get("observation", 0) + len(frame)
    batch.counts = counts
    return len(frame)


def _columns(
    frame: pd.DataFrame, batch: ImportBatch, source: str, *, text_times: bool
) -> dict[str, list[Any]]:
    """Column lists in :data:`_COLUMNS` order; None for missing values."""

    def clean(series: pd.Series) -> list[Any]:
        obj = series.astype(object)
        return obj.where(series.notna(), None).tolist()

    times = frame["time"].dt.tz_convert("UTC").dt.tz_localize(None)
    n = len(frame)
    return {
        "subject_id": frame["subject_id"].astype("int64").tolist(),
        "time": times.dt.strftime("%Y-%m-%d %H:%M:%S.%f").tolist()
        if text_times
        else [t.to_pydatetime() for t in frame["time"]],
        "test": frame["test"].astype(str).tolist(),
        "raw_value": clean(frame["raw_value"].astype("string").str.slice(0, 64)),
        "raw_unit": clean(frame["raw_unit"].astype("string").str.slice(0, 32)),
        "value": clean(frame["value"].astype(float)),
        "unit": clean(frame["unit"]),
        "qualifier": frame["qualifier"].fillna("").astype(str).tolist(),
        "ref_low": clean(frame["ref_low"].astype(float)),
        "ref_high": clean(frame["ref_high"].astype(float)),
        "specimen": clean(frame["specimen"].astype("string").str.slice(0, 32)),
        "source": [source] * n,
        "import_batch_id": [batch.id] * n,
        "source_row": frame["source_row"].astype("int64").tolist(),
    }
