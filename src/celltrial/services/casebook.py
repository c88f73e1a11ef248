"""Enrol subjects and record product lots (the set-up the bedside forms build on)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from celltrial.errors import DataError
from celltrial.store.database import study_session
from celltrial.store.models import ProductLot, Site, Subject
from celltrial.study import StudyHandle


@dataclass(frozen=True)
class NewSubject:
    code: str
    enrolled_at: datetime
    sex: str | None = None
    age: float | None = None
    weight_kg: float | None = None
    height_cm: float | None = None
    baseline_who_scale: int | None = None
    site: str = "01"


@dataclass(frozen=True)
class NewLot:
    code: str
    release_status: str
    viability_pct: float | None = None
    markers_pct: dict[str, float] | None = None
    sterility: str | None = None
    mycoplasma: str | None = None
    endotoxin_eu_per_ml: float | None = None
    total_cells: float | None = None
    donor_id: str | None = None
    tissue_source: str | None = None
    manufactured_at: datetime | None = None
    expires_at: datetime | None = None


RELEASE_STATUSES = ("quarantine", "released", "rejected")


def enrol_subject(study: StudyHandle, subject: NewSubject, *, user: str) -> int:
    """Add a study subject (audited insert); returns its database id."""
    code = subject.code.strip()
    if not code:
        raise DataError("subject code: required")
    if subject.sex not in (None, "F", "M"):
        raise DataError(f"sex: {subject.sex!r} — expected F or M")
    with study_session(study.engine, user=user, reason="subject enrolled") as session:
        exists = session.scalar(
            select(Subject.id).where(Subject.study_id == study.study_id, Subject.code == code)
        )
        if exists is not None:
            raise DataError(f"subject {code!r} is already enrolled")
        site_id = session.scalar(
            select(Site.id).where(Site.study_id == study.study_id, Site.code == subject.site)
        )
        if site_id is None:
            raise DataError(f"site {subject.site!r}: not a site of study {study.study_id}")
        row = Subject(
            study_id=study.study_id,
            code=code,
            site_id=site_id,
            sex=subject.sex,
            age=subject.age,
            weight_kg=subject.weight_kg,
            height_cm=subject.height_cm,
            enrolled_at=subject.enrolled_at,
            baseline_who_scale=subject.baseline_who_scale,
        )
        session.add(row)
        session.flush()
        return row.id


def record_lot(study: StudyHandle, lot: NewLot, *, user: str) -> int:
    """Add a product lot with its release results (audited insert); returns its database id."""
    code = lot.code.strip()
    if not code:
        raise DataError("lot code: required")
    if lot.release_status not in RELEASE_STATUSES:
        raise DataError(
            f"release status {lot.release_status!r}: expected one of {', '.join(RELEASE_STATUSES)}"
        )
    with study_session(study.engine, user=user, reason="product lot recorded") as session:
        exists = session.scalar(
            select(ProductLot.id).where(
                ProductLot.study_id == study.study_id, ProductLot.code == code
            )
        )
        if exists is not None:
            raise DataError(f"lot {code!r} is already recorded")
        row = ProductLot(
            study_id=study.study_id,
            code=code,
            donor_id=lot.donor_id,
            tissue_source=lot.tissue_source,
            manufactured_at=lot.manufactured_at,
            expires_at=lot.expires_at,
            total_cells=lot.total_cells,
            viability_pct=lot.viability_pct,
            markers_pct=dict(lot.markers_pct or {}),
            sterility=lot.sterility,
            mycoplasma=lot.mycoplasma,
            endotoxin_eu_per_ml=lot.endotoxin_eu_per_ml,
            release_status=lot.release_status,
        )
        session.add(row)
        session.flush()
        return row.id
