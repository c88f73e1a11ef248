"""Bulk loads into the study database, each one audited import batch (all or nothing)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from celltrial.cohort import SimulatedCohort
from celltrial.errors import DataError
from celltrial.store.audit import add_batch_rows, begin_batch, finish_batch
from celltrial.store.models import (
    RESULT_COLUMNS,
    AdverseEvent,
    ClinicalStatus,
    ImagingStudy,
    ImportBatch,
    Infusion,
    Observation,
    ProductLot,
    Site,
    Subject,
)


def _none_if_missing(value: Any) -> Any:
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value


def _records(
    frame: pd.DataFrame, mapping: dict[str, str | Callable[[pd.Series], Any]]
) -> Iterable[dict[str, Any]]:
    """Rows of ``frame`` as dicts of model columns (``mapping``: model column -> frame column)."""
    columns = {
        target: frame[source] if isinstance(source, str) else frame.apply(source, axis=1)
        for target, source in mapping.items()
    }
    as_lists = {k: [_none_if_missing(v) for v in col.tolist()] for k, col in columns.items()}
    for index in range(len(frame)):
        yield {k: v[index] for k, v in as_lists.items()}


def _ensure_site(session: Session, study_id: str, code: str) -> int:
    site = session.scalar(select(Site).where(Site.study_id == study_id, Site.code == code))
    if site is None:
        site = Site(study_id=study_id, code=code, name=f"Site {code}")
        session.add(site)
        session.flush()
    return site.id


def load_simulated_cohort(session: Session, study_id: str, cohort: SimulatedCohort) -> ImportBatch:
    """Store a simulated cohort as one audited import batch."""
    existing = set(
        session.scalars(
            select(Subject.code).where(Subject.study_id == study_id, Subject.cohort.is_(None))
        )
    )
    clash = sorted(existing & set(cohort.subjects["subject_id"]))
    if clash:
        raise DataError(
            f"the study already has subject(s) {', '.join(clash[:5])}; "
            "simulate into a new study directory"
        )
    fingerprint = hashlib.sha256(
        json.dumps({"seed": cohort.seed, "n": len(cohort.subjects)}).encode()
    ).hexdigest()
    batch = begin_batch(
        session,
        kind="simulation",
        source=f"celltrial.cohort.simulate(n_subjects={len(cohort.subjects)}, seed={cohort.seed})",
        source_sha256=fingerprint,
        report={"seed": cohort.seed, "subjects": len(cohort.subjects)},
    )
    site_ids = {code: _ensure_site(session, study_id, code) for code in cohort.subjects["site"]}
    subjects = cohort.subjects.assign(source_row=range(1, len(cohort.subjects) + 1))
    add_batch_rows(
        session,
        batch,
        Subject,
        _records(
            subjects,
            {
                "study_id": lambda _r: study_id,
                "code": "subject_id",
                "site_id": lambda r: site_ids[r["site"]],
                "sex": "sex",
                "age": "age",
                "weight_kg": "weight_kg",
                "height_cm": "height_cm",
                "admitted_at": "admitted",
                "enrolled_at": "enrolled",
                "baseline_who_scale": "baseline_who_scale",
                "discharged_at": "discharged",
                "died_at": "died",
                "source_row": "source_row",
            },
        ),
    )
    subject_ids = dict(
        session.execute(
            select(Subject.code, Subject.id).where(
                Subject.study_id == study_id, Subject.cohort.is_(None)
            )
        ).all()
    )
    add_batch_rows(
        session,
        batch,
        ProductLot,
        _records(
            cohort.lots,
            {
                "study_id": lambda _r: study_id,
                "code": "lot_id",
                "donor_id": "donor_id",
                "tissue_source": "tissue_source",
                "manufactured_at": "manufactured",
                "expires_at": "expires",
                "total_cells": "total_cells",
                "viability_pct": "viability_pct",
                "markers_pct": "markers_pct",
                "sterility": "sterility",
                "mycoplasma": "mycoplasma",
                "endotoxin_eu_per_ml": "endotoxin_eu_per_ml",
                "release_status": "release_status",
            },
        ),
    )
    lot_ids = dict(
        session.execute(
            select(ProductLot.code, ProductLot.id).where(ProductLot.study_id == study_id)
        ).all()
    )
    add_batch_rows(
        session,
        batch,
        Infusion,
        _records(
            cohort.infusions,
            {
                "subject_id": lambda r: subject_ids[r["subject_id"]],
                "number": "number",
                "lot_id": lambda r: lot_ids[r["lot_id"]],
                "vial_id": "vial_id",
                "planned_at": "planned_time",
                "started_at": "start_time",
                "ended_at": "end_time",
                "cells_given": "cells_given",
                "volume_ml": "volume_ml",
                "completed": "completed",
                "stop_reason": "stop_reason",
            },
        ),
    )
    _load_observations(session, batch, cohort.observations, subject_ids)
    by_subject = {"subject_id": lambda r: subject_ids[r["subject_id"]]}
    add_batch_rows(
        session,
        batch,
        AdverseEvent,
        _records(
            cohort.adverse_events,
            by_subject
            | {
                "term": "term",
                "description": "description",
                "onset_at": "onset",
                "resolved_at": "resolved",
                "grade": "grade",
                "serious": "serious",
                "serious_criteria": "serious_criteria",
                "relatedness": "relatedness",
                "expected": "expected",
                "action": "action",
                "outcome": "outcome",
            },
        ),
    )
    add_batch_rows(
        session,
        batch,
        ClinicalStatus,
        _records(
            cohort.clinical_status,
            by_subject
            | {
                "time": "time",
                "who_scale": "who_scale",
                "oxygen_support": "oxygen_support",
                "fio2": "fio2",
            },
        ),
    )
    if len(cohort.imaging):
        add_batch_rows(
            session,
            batch,
            ImagingStudy,
            _records(
                cohort.imaging,
                by_subject
                | {
                    "time": "time",
                    "modality": "modality",
                    "series_uid": "series_uid",
                    "path": "path",
                },
            ),
        )
    finish_batch(session, batch)
    return batch


def _load_observations(
    session: Session, batch: ImportBatch, observations: pd.DataFrame, subject_ids: dict[str, int]
) -> None:
    """Observations are the bulk of a load: build the row dicts column-wise, not row by row."""
    frame = observations.reset_index(drop=True)
    columns: dict[str, list[Any]] = {
        "subject_id": frame["subject_id"].map(subject_ids).tolist(),
        "time": [t.to_pydatetime() for t in frame["time"]],
        "source_row": list(range(1, len(frame) + 1)),
    }
    given = [c for c in RESULT_COLUMNS if c not in columns and c != "flags"]  # none flagged
    for column in (*given, "source"):
        columns[column] = [_none_if_missing(v) for v in frame[column].tolist()]
    keys = list(columns)
    rows = (dict(zip(keys, values, strict=True)) for values in zip(*columns.values(), strict=True))
    add_batch_rows(session, batch, Observation, rows)
