"""Read study data out of the database as the long frames of :mod:`celltrial.frames`.

Subjects are identified by their pseudonymous code in every frame. Study subjects are those without
a cohort label; external-cohort patients are read only when their cohort is asked for.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy import Connection, Engine, Select, select

from celltrial.frames import (
    ADVERSE_EVENT_COLUMNS,
    CLINICAL_STATUS_COLUMNS,
    INFUSION_COLUMNS,
    OBSERVATION_COLUMNS,
    SUBJECT_COLUMNS,
)
from celltrial.store import tables
from celltrial.timeline import derive_study_day


def _frame(
    engine: Engine | Connection, statement: Select, time_columns: tuple[str, ...] = ()
) -> pd.DataFrame:
    """The rows of ``statement`` (through a connection of ``engine``, or the caller's own)."""
    given = isinstance(engine, Connection)  # the caller keeps it open
    with nullcontext(engine) if given else engine.connect() as connection:
        result = connection.execute(statement)
        frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
    for column in time_columns:
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def _with_time(frame: pd.DataFrame, column: str = "time") -> pd.DataFrame:
    """``frame`` without the rows whose ``column`` is unknown: a result whose stored time cannot
    be read is left out (:mod:`celltrial.store.unreadable_times` names it for correction)."""
    unknown = frame[column].isna()
    return frame[~unknown].reset_index(drop=True) if unknown.any() else frame


def _subject_filter(statement: Select, study_id: str, cohort: str | None) -> Select:
    statement = statement.where(tables.subject.c.study_id == study_id)
    if cohort is None:
        return statement.where(tables.subject.c.cohort.is_(None))
    return statement.where(tables.subject.c.cohort == cohort)


def read_subjects(engine: Engine, study_id: str, *, cohort: str | None = None) -> pd.DataFrame:
    """One row per subject (columns :data:`SUBJECT_COLUMNS`), first infusion included."""
    statement = _subject_filter(
        select(
            tables.subject.c.code.label("subject_id"),
            tables.site.c.code.label("site"),
            tables.subject.c.cohort,
            tables.subject.c.sex,
            tables.subject.c.age,
            tables.subject.c.weight_kg,
            tables.subject.c.height_cm,
            tables.subject.c.enrolled_at.label("enrolled"),
            tables.subject.c.baseline_who_scale,
            tables.subject.c.discharged_at.label("discharged"),
            tables.subject.c.died_at.label("died"),
            tables.subject.c.admitted_at.label("admitted"),
            tables.subject.c.withdrawn_at.label("withdrawn"),
        ).outerjoin(tables.site, tables.subject.c.site_id == tables.site.c.id),
        study_id,
        cohort,
    ).order_by(tables.subject.c.code)
    subjects = _frame(
        engine, statement, ("enrolled", "discharged", "died", "admitted", "withdrawn")
    )
    first = first_infusions(read_infusions(engine, study_id, cohort=cohort))
    subjects["first_infusion"] = pd.to_datetime(
        first.reindex(subjects["subject_id"]).to_numpy(), utc=True
    )
    ordered = [*SUBJECT_COLUMNS, "admitted", "withdrawn"]
    return subjects[ordered]


def first_infusions(infusions: pd.DataFrame) -> pd.Series:
    """subject_id -> start time of the subject's earliest started infusion (day 0)."""
    started = infusions.dropna(subset=["start_time"])
    if started.empty:
        return pd.Series(dtype="datetime64[ns, UTC]")
    return started.groupby("subject_id")["start_time"].min()


def read_infusions(
    engine: Engine, study_id: str, *, cohort: str | None = None, zone: ZoneInfo | str = "UTC"
) -> pd.DataFrame:
    """One row per recorded infusion (columns :data:`INFUSION_COLUMNS`)."""
    statement = _subject_filter(
        select(
            tables.subject.c.code.label("subject_id"),
            tables.infusion.c.number,
            tables.product_lot.c.code.label("lot_id"),
            tables.infusion.c.vial_id,
            tables.infusion.c.planned_at.label("planned_time"),
            tables.infusion.c.started_at.label("start_time"),
            tables.infusion.c.ended_at.label("end_time"),
            tables.infusion.c.cells_given,
            tables.infusion.c.volume_ml,
            tables.infusion.c.completed,
            tables.infusion.c.stop_reason,
        )
        .join(tables.subject, tables.infusion.c.subject_id == tables.subject.c.id)
        .outerjoin(tables.product_lot, tables.infusion.c.lot_id == tables.product_lot.c.id),
        study_id,
        cohort,
    ).order_by(tables.subject.c.code, tables.infusion.c.number)
    frame = _frame(engine, statement, ("planned_time", "start_time", "end_time"))
    frame = derive_study_day(frame, first_infusions(frame), zone, time_column="start_time")
    return frame[[*INFUSION_COLUMNS, "vial_id"]]


def read_lots(engine: Engine, study_id: str) -> pd.DataFrame:
    """One row per product lot with its quality-control results and release status."""
    statement = (
        select(
            tables.product_lot.c.code.label("lot_id"),
            tables.product_lot.c.donor_id,
            tables.product_lot.c.tissue_source,
            tables.product_lot.c.manufactured_at.label("manufactured"),
            tables.product_lot.c.expires_at.label("expires"),
            tables.product_lot.c.total_cells,
            tables.product_lot.c.viability_pct,
            tables.product_lot.c.markers_pct,
            tables.product_lot.c.sterility,
            tables.product_lot.c.mycoplasma,
            tables.product_lot.c.endotoxin_eu_per_ml,
            tables.product_lot.c.release_status,
        )
        .where(tables.product_lot.c.study_id == study_id)
        .order_by(tables.product_lot.c.code)
    )
    return _frame(engine, statement, ("manufactured", "expires"))


#: The observation columns both readers of observations select, after the subject's code: the
#: observation frame's stored columns (its study day is derived).
_OBSERVATION_READ = tuple(
    tables.observation.c[name]
    for name in OBSERVATION_COLUMNS
    if name not in ("subject_id", "study_day")
)


def read_observations(
    engine: Engine,
    study_id: str,
    *,
    zone: ZoneInfo | str,
    first_infusion: pd.Series,
    tests: list[str] | None = None,
    cohort: str | None = None,
) -> pd.DataFrame:
    """All observations (columns :data:`OBSERVATION_COLUMNS`), with study days in ``zone``."""
    statement = _subject_filter(
        select(
            tables.subject.c.code.label("subject_id"),
            *_OBSERVATION_READ,
        ).join(tables.subject, tables.observation.c.subject_id == tables.subject.c.id),
        study_id,
        cohort,
    )
    if tests:
        statement = statement.where(tables.observation.c.test.in_(tests))
    frame = _frame(
        engine,
        statement.order_by(
            tables.subject.c.code, tables.observation.c.time, tables.observation.c.id
        ),
        ("time",),
    )
    frame = derive_study_day(_with_time(frame), first_infusion, zone)
    return frame[list(OBSERVATION_COLUMNS)]


def read_adverse_events(
    engine: Engine, study_id: str, *, zone: ZoneInfo | str, first_infusion: pd.Series
) -> pd.DataFrame:
    """All adverse events of study subjects (columns :data:`ADVERSE_EVENT_COLUMNS`)."""
    statement = _subject_filter(
        select(
            tables.subject.c.code.label("subject_id"),
            tables.adverse_event.c.term,
            tables.adverse_event.c.description,
            tables.adverse_event.c.onset_at.label("onset"),
            tables.adverse_event.c.resolved_at.label("resolved"),
            tables.adverse_event.c.grade,
            tables.adverse_event.c.serious,
            tables.adverse_event.c.serious_criteria,
            tables.adverse_event.c.relatedness,
            tables.adverse_event.c.expected,
            tables.adverse_event.c.action,
            tables.adverse_event.c.outcome,
        ).join(tables.subject, tables.adverse_event.c.subject_id == tables.subject.c.id),
        study_id,
        None,
    ).order_by(tables.subject.c.code, tables.adverse_event.c.onset_at, tables.adverse_event.c.id)
    frame = _with_time(_frame(engine, statement, ("onset", "resolved")), "onset")
    frame = derive_study_day(
        frame, first_infusion, zone, time_column="onset", day_column="onset_day"
    )
    return frame[[*ADVERSE_EVENT_COLUMNS, "description"]]


def read_clinical_status(
    engine: Engine, study_id: str, *, zone: ZoneInfo | str, first_infusion: pd.Series
) -> pd.DataFrame:
    """Daily clinical status of study subjects (columns :data:`CLINICAL_STATUS_COLUMNS`)."""
    statement = _subject_filter(
        select(
            tables.subject.c.code.label("subject_id"),
            tables.clinical_status.c.time,
            tables.clinical_status.c.who_scale,
            tables.clinical_status.c.oxygen_support,
            tables.clinical_status.c.fio2,
        ).join(tables.subject, tables.clinical_status.c.subject_id == tables.subject.c.id),
        study_id,
        None,
    ).order_by(tables.subject.c.code, tables.clinical_status.c.time, tables.clinical_status.c.id)
    frame = derive_study_day(_with_time(_frame(engine, statement, ("time",))), first_infusion, zone)
    return frame[list(CLINICAL_STATUS_COLUMNS)]


def read_imaging(
    engine: Engine, study_id: str, *, zone: ZoneInfo | str, first_infusion: pd.Series
) -> pd.DataFrame:
    """Imaging studies of study subjects (subject_id, time, study_day, modality, series, path)."""
    statement = _subject_filter(
        select(
            tables.subject.c.code.label("subject_id"),
            tables.imaging_study.c.time,
            tables.imaging_study.c.modality,
            tables.imaging_study.c.series_uid,
            tables.imaging_study.c.path,
        ).join(tables.subject, tables.imaging_study.c.subject_id == tables.subject.c.id),
        study_id,
        None,
    ).order_by(tables.subject.c.code, tables.imaging_study.c.time, tables.imaging_study.c.id)
    return derive_study_day(_with_time(_frame(engine, statement, ("time",))), first_infusion, zone)


def read_import_batches(engine: Engine) -> pd.DataFrame:
    """The import history: one row per batch."""
    statement = select(
        tables.import_batch.c.id,
        tables.import_batch.c.time,
        tables.import_batch.c.user,
        tables.import_batch.c.kind,
        tables.import_batch.c.source,
        tables.import_batch.c.source_sha256,
        tables.import_batch.c.counts,
        tables.import_batch.c.report,
        tables.import_batch.c.reason,
    ).order_by(tables.import_batch.c.id)
    return _frame(engine, statement, ("time",))


def read_ct_results(
    engine: Engine | Connection, study_id: str, *, subject: str | None = None
) -> pd.DataFrame:
    """One row per stored CT result of the study's own subjects (time in UTC); only those of
    subject code ``subject`` when given (``engine``: or a connection of the caller's).

    Columns: subject_id, time, path, checksum, method, lung_ml, ggo_ml, consolidation_ml,
    lesion_ml, involvement_pct, score, zones.
    """
    statement = (
        select(
            tables.subject.c.code.label("subject_id"),
            tables.imaging_study.c.time,
            tables.imaging_study.c.path,
            tables.imaging_study.c.checksum,
            tables.ct_result.c.method,
            tables.ct_result.c.lung_volume_ml.label("lung_ml"),
            tables.ct_result.c.ggo_volume_ml.label("ggo_ml"),
            tables.ct_result.c.consolidation_volume_ml.label("consolidation_ml"),
            tables.ct_result.c.involvement_pct,
            tables.ct_result.c.score,
            tables.ct_result.c.zones,
        )
        .join(
            tables.imaging_study, tables.ct_result.c.imaging_study_id == tables.imaging_study.c.id
        )
        .join(tables.subject, tables.imaging_study.c.subject_id == tables.subject.c.id)
        .where(tables.subject.c.study_id == study_id, tables.subject.c.cohort.is_(None))
        .order_by(tables.subject.c.code, tables.imaging_study.c.time, tables.imaging_study.c.id)
    )
    if subject is not None:
        statement = statement.where(tables.subject.c.code == subject)
    frame = _with_time(_frame(engine, statement, ("time",)))
    frame["lesion_ml"] = frame["ggo_ml"] + frame["consolidation_ml"]
    return frame


#: Rows per chunk of :func:`read_observation_chunks` (a subject's rows are never split across
#: chunks, so a chunk may be larger).
OBSERVATION_CHUNK_ROWS = 20_000


def read_observation_chunks(
    engine: Engine,
    study_id: str,
    *,
    cohort: str | None = None,
    chunk_rows: int = OBSERVATION_CHUNK_ROWS,
) -> Iterator[pd.DataFrame]:
    """The study's (or ``cohort``'s) observations, ordered by subject and time, as frames of
    about ``chunk_rows`` rows holding every row of each subject they hold (columns of
    :data:`celltrial.frames.OBSERVATION_COLUMNS` but ``study_day``; ``time`` aware UTC)."""
    statement = _subject_filter(
        select(
            tables.subject.c.code.label("subject_id"),
            tables.subject.c.id.label("subject_key"),
            *_OBSERVATION_READ,
        ).join(tables.subject, tables.observation.c.subject_id == tables.subject.c.id),
        study_id,
        cohort,
    ).order_by(
        tables.subject.c.code,
        tables.subject.c.id,
        tables.observation.c.time,
        tables.observation.c.id,
    )
    names = ["subject_id", "subject_key", *(column.name for column in _OBSERVATION_READ)]
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
            yield _chunk_frame(pending[:cut], names)
            pending = pending[cut:]
        if pending:
            yield _chunk_frame(pending, names)


def _chunk_frame(rows: list[tuple], names: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(rows, columns=names)
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    for column in ("value", "ref_low", "ref_high"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    return _with_time(frame.drop(columns="subject_key"))
