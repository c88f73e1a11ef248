"""Enrol subjects and record product lots (the set-up the bedside forms build on)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from celltrial.errors import DataError
from celltrial.ingest.subject_codes import check_subject_code
from celltrial.protocol.model import ReleaseCriteria
from celltrial.protocol.release import check_lot_release
from celltrial.services.errors import AlreadyExists
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
#: Results a lot's sterility and mycoplasma tests may have.
STERILITY_RESULTS = ("no growth", "growth", "pending")
MYCOPLASMA_RESULTS = ("negative", "positive", "pending")


def place_new_subject(
    session: Any, study: StudyHandle, code: str, site: str | None
) -> tuple[int, str]:
    """The id and code of the site a new subject ``code`` joins (``site``, default the study's
    first); :class:`AlreadyExists` when the study has the code already."""
    taken = session.scalar(
        select(Subject.id).where(
            Subject.study_id == study.study_id,
            Subject.code == code,
            Subject.cohort.is_(None),
        )
    )
    if taken is not None:
        raise AlreadyExists(f"subject code {code!r}: already enrolled in this study")
    sites = session.execute(
        select(Site.id, Site.code).where(Site.study_id == study.study_id).order_by(Site.code)
    ).all()
    chosen = [s for s in sites if site is None or s.code == site]
    if not chosen:
        offered = ", ".join(s.code for s in sites) or "none"
        raise DataError(f"site {site!r}: not a site of this study (sites: {offered})")
    return chosen[0].id, chosen[0].code


def add_new_subject(session: Any, row: Subject) -> None:
    """Insert ``row``; :class:`AlreadyExists` when another user enrolled its code meanwhile."""
    session.add(row)
    try:
        session.flush()
    except IntegrityError:  # enrolled by someone else since place_new_subject's check
        raise AlreadyExists(f"subject code {row.code!r}: already enrolled in this study") from None


def enrol_subject(study: StudyHandle, subject: NewSubject, *, user: str) -> int:
    """Add a study subject (audited insert), refused as the enrolment form's
    (:func:`celltrial.services.enrolment.enrol`) is: a code already enrolled, an unknown site;
    returns its database id."""
    code = check_subject_code(subject.code)
    if subject.sex not in (None, "F", "M"):
        raise DataError(f"sex: {subject.sex!r} — expected F or M")
    with study_session(study.engine, user=user, reason="subject enrolled") as session:
        site_id, _ = place_new_subject(session, study, code, subject.site)
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
        add_new_subject(session, row)
        return row.id


def release_results(lot: Any) -> dict[str, Any]:
    """The results of ``lot`` (a :class:`NewLot` or a stored lot) that
    :func:`~celltrial.protocol.release.check_lot_release` checks."""
    return {
        "viability_pct": lot.viability_pct,
        "markers_pct": lot.markers_pct,
        "sterility": lot.sterility,
        "mycoplasma": lot.mycoplasma,
    }


def check_lot(lot: NewLot, criteria: ReleaseCriteria) -> None:
    """:class:`DataError` listing every problem of ``lot``: bad values, and a lot marked released
    that does not meet the protocol's release criteria (it could be infused)."""
    problems: list[str] = []
    if not lot.code.strip():
        problems.append("lot code: required")
    elif len(lot.code.strip()) > 64:
        problems.append("lot code: at most 64 characters")
    if lot.release_status not in RELEASE_STATUSES:
        problems.append(
            f"release status {lot.release_status!r}: expected one of {', '.join(RELEASE_STATUSES)}"
        )
    if lot.viability_pct is not None and not 0 <= lot.viability_pct <= 100:
        problems.append(f"viability: {lot.viability_pct:g} % — expected 0–100 %")
    for marker, pct in (lot.markers_pct or {}).items():
        if not 0 <= pct <= 100:
            problems.append(f"{marker}: {pct:g} % — expected 0–100 %")
    if lot.sterility is not None and lot.sterility not in STERILITY_RESULTS:
        problems.append(f"sterility {lot.sterility!r}: expected {', '.join(STERILITY_RESULTS)}")
    if lot.mycoplasma is not None and lot.mycoplasma not in MYCOPLASMA_RESULTS:
        problems.append(f"mycoplasma {lot.mycoplasma!r}: expected {', '.join(MYCOPLASMA_RESULTS)}")
    if lot.endotoxin_eu_per_ml is not None and not lot.endotoxin_eu_per_ml >= 0:
        problems.append("endotoxin: expected EU/mL of 0 or more")
    if lot.total_cells is not None and not lot.total_cells > 0:
        problems.append("total cells: expected a positive number")
    if lot.manufactured_at and lot.expires_at and lot.expires_at <= lot.manufactured_at:
        problems.append("expiry: not after the manufacturing time")
    if lot.release_status == "released" and not problems:
        failures = check_lot_release(release_results(lot), criteria)
        if failures:
            problems.append(
                "release status: the lot cannot be released, it does not meet the release "
                "criteria: " + "; ".join(failures)
            )
    if problems:
        raise DataError(f"lot {lot.code.strip() or '(no code)'}: " + "; ".join(problems))


def record_lot(study: StudyHandle, lot: NewLot, *, user: str) -> int:
    """Add a product lot with its release results (audited insert); returns its database id."""
    check_lot(lot, study.protocol.product.release)
    code = lot.code.strip()
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
