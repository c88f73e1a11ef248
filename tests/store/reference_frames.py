"""The study readers of :mod:`celltrial.store.frames` as they were before issue 26 (commit
022ef20), verbatim: through the ORM models. ``test_frames_without_orm.py`` reads the same studies
through them and through the light Core tables, and compares.
"""

from __future__ import annotations

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
from celltrial.store.models import (
    AdverseEvent,
    ClinicalStatus,
    ImagingStudy,
    Infusion,
    Observation,
    ProductLot,
    Site,
    Subject,
)
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
    statement = statement.where(Subject.study_id == study_id)
    if cohort is None:
        return statement.where(Subject.cohort.is_(None))
    return statement.where(Subject.cohort == cohort)


def read_subjects(engine: Engine, study_id: str, *, cohort: str | None = None) -> pd.DataFrame:
    """One row per subject (columns :data:`SUBJECT_COLUMNS`), first infusion included."""
    statement = _subject_filter(
        select(
            Subject.code.label("subject_id"),
            Site.code.label("site"),
            Subject.cohort,
            Subject.sex,
            Subject.age,
            Subject.weight_kg,
            Subject.height_cm,
            Subject.enrolled_at.label("enrolled"),
            Subject.baseline_who_scale,
            Subject.discharged_at.label("discharged"),
            Subject.died_at.label("died"),
            Subject.admitted_at.label("admitted"),
            Subject.withdrawn_at.label("withdrawn"),
        ).outerjoin(Site, Subject.site_id == Site.id),
        study_id,
        cohort,
    ).order_by(Subject.code)
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
            Subject.code.label("subject_id"),
            Infusion.number,
            ProductLot.code.label("lot_id"),
            Infusion.vial_id,
            Infusion.planned_at.label("planned_time"),
            Infusion.started_at.label("start_time"),
            Infusion.ended_at.label("end_time"),
            Infusion.cells_given,
            Infusion.volume_ml,
            Infusion.completed,
            Infusion.stop_reason,
        )
        .join(Subject, Infusion.subject_id == Subject.id)
        .outerjoin(ProductLot, Infusion.lot_id == ProductLot.id),
        study_id,
        cohort,
    ).order_by(Subject.code, Infusion.number)
    frame = _frame(engine, statement, ("planned_time", "start_time", "end_time"))
    frame = derive_study_day(frame, first_infusions(frame), zone, time_column="start_time")
    return frame[[*INFUSION_COLUMNS, "vial_id"]]


def read_lots(engine: Engine, study_id: str) -> pd.DataFrame:
    """One row per product lot with its quality-control results and release status."""
    statement = (
        select(
            ProductLot.code.label("lot_id"),
            ProductLot.donor_id,
            ProductLot.tissue_source,
            ProductLot.manufactured_at.label("manufactured"),
            ProductLot.expires_at.label("expires"),
            ProductLot.total_cells,
            ProductLot.viability_pct,
            ProductLot.markers_pct,
            ProductLot.sterility,
            ProductLot.mycoplasma,
            ProductLot.endotoxin_eu_per_ml,
            ProductLot.release_status,
        )
        .where(ProductLot.study_id == study_id)
        .order_by(ProductLot.code)
    )
    return _frame(engine, statement, ("manufactured", "expires"))


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
            Subject.code.label("subject_id"),
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
    )
    if tests:
        statement = statement.where(Observation.test.in_(tests))
    frame = _frame(
        engine, statement.order_by(Subject.code, Observation.time, Observation.id), ("time",)
    )
    frame = derive_study_day(_with_time(frame), first_infusion, zone)
    return frame[list(OBSERVATION_COLUMNS)]


def read_adverse_events(
    engine: Engine, study_id: str, *, zone: ZoneInfo | str, first_infusion: pd.Series
) -> pd.DataFrame:
    """All adverse events of study subjects (columns :data:`ADVERSE_EVENT_COLUMNS`)."""
    statement = _subject_filter(
        select(
            Subject.code.label("subject_id"),
            AdverseEvent.term,
            AdverseEvent.description,
            AdverseEvent.onset_at.label("onset"),
            AdverseEvent.resolved_at.label("resolved"),
            AdverseEvent.grade,
            AdverseEvent.serious,
            AdverseEvent.serious_criteria,
            AdverseEvent.relatedness,
            AdverseEvent.expected,
            AdverseEvent.action,
            AdverseEvent.outcome,
        ).join(Subject, AdverseEvent.subject_id == Subject.id),
        study_id,
        None,
    ).order_by(Subject.code, AdverseEvent.onset_at, AdverseEvent.id)
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
            Subject.code.label("subject_id"),
            ClinicalStatus.time,
            ClinicalStatus.who_scale,
            ClinicalStatus.oxygen_support,
            ClinicalStatus.fio2,
        ).join(Subject, ClinicalStatus.subject_id == Subject.id),
        study_id,
        None,
    ).order_by(Subject.code, ClinicalStatus.time, ClinicalStatus.id)
    frame = derive_study_day(_with_time(_frame(engine, statement, ("time",))), first_infusion, zone)
    return frame[list(CLINICAL_STATUS_COLUMNS)]


def read_imaging(
    engine: Engine, study_id: str, *, zone: ZoneInfo | str, first_infusion: pd.Series
) -> pd.DataFrame:
    """Imaging studies of study subjects (subject_id, time, study_day, modality, series, path)."""
    statement = _subject_filter(
        select(
            Subject.code.label("subject_id"),
            ImagingStudy.time,
            ImagingStudy.modality,
            ImagingStudy.series_uid,
            ImagingStudy.path,
        ).join(Subject, ImagingStudy.subject_id == Subject.id),
        study_id,
        None,
    ).order_by(Subject.code, ImagingStudy.time, ImagingStudy.id)
    return derive_study_day(_with_time(_frame(engine, statement, ("time",))), first_infusion, zone)
