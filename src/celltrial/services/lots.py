"""The product-lot register: lots with their release results and whether each meets the
protocol's release criteria (:func:`celltrial.protocol.release.check_lot_release`).

Lots are added with :func:`celltrial.services.casebook.record_lot`; edits here need a reason and
the version the user saw, like every edit of saved data. A lot marked released must meet the
release criteria (the bedside check refuses to infuse any other).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from celltrial.errors import DataError
from celltrial.protocol.release import check_lot_release
from celltrial.services.casebook import NewLot, check_lot, record_lot, release_results
from celltrial.services.editing import (
    apply_changes,
    check_reason,
    check_version,
    refusing_lost_updates,
)
from celltrial.services.errors import NotFound
from celltrial.store.database import study_session
from celltrial.store.models import Infusion, ProductLot
from celltrial.study import StudyHandle


@dataclass(frozen=True)
class LotRecord:
    """A stored lot, its release check and how often it was infused."""

    id: int
    code: str
    release_status: str
    viability_pct: float | None
    markers_pct: dict[str, float]
    sterility: str | None
    mycoplasma: str | None
    endotoxin_eu_per_ml: float | None
    total_cells: float | None
    donor_id: str | None
    tissue_source: str | None
    manufactured_at: datetime | None
    expires_at: datetime | None
    version: int
    #: every way the lot fails the protocol's release criteria (empty: all met)
    release_failures: tuple[str, ...] = ()
    expired: bool = False
    infusions: int = 0

    @property
    def criteria_met(self) -> bool:
        return not self.release_failures


def _record(study: StudyHandle, row: ProductLot, infusions: int) -> LotRecord:
    failures = check_lot_release(release_results(row), study.protocol.product.release)
    return LotRecord(
        id=row.id,
        code=row.code,
        release_status=row.release_status,
        viability_pct=row.viability_pct,
        markers_pct=dict(row.markers_pct or {}),
        sterility=row.sterility,
        mycoplasma=row.mycoplasma,
        endotoxin_eu_per_ml=row.endotoxin_eu_per_ml,
        total_cells=row.total_cells,
        donor_id=row.donor_id,
        tissue_source=row.tissue_source,
        manufactured_at=row.manufactured_at,
        expires_at=row.expires_at,
        version=row.version,
        release_failures=tuple(failures),
        expired=row.expires_at is not None and row.expires_at < datetime.now(UTC),
        infusions=infusions,
    )


def _uses(session: Session, lot_ids: list[int]) -> dict[int, int]:
    if not lot_ids:
        return {}
    found = session.execute(
        select(Infusion.lot_id, func.count())
        .where(Infusion.lot_id.in_(lot_ids))
        .group_by(Infusion.lot_id)
    ).all()
    return {int(lot_id): int(n) for lot_id, n in found}


def _find(session: Session, study: StudyHandle, lot_id: int) -> ProductLot:
    row = session.get(ProductLot, lot_id)
    if row is None or row.study_id != study.study_id:
        raise NotFound(f"no product lot {lot_id} in study {study.study_id}")
    return row


def list_lots(study: StudyHandle) -> list[LotRecord]:
    """Every lot of the study, by code, with its release check."""
    with study_session(study.engine, user="read") as session:
        rows = list(
            session.scalars(
                select(ProductLot)
                .where(ProductLot.study_id == study.study_id)
                .order_by(ProductLot.code)
            )
        )
        uses = _uses(session, [r.id for r in rows])
        return [_record(study, r, uses.get(r.id, 0)) for r in rows]


def read_lot(study: StudyHandle, lot_id: int) -> LotRecord:
    with study_session(study.engine, user="read") as session:
        row = _find(session, study, lot_id)
        return _record(study, row, _uses(session, [row.id]).get(row.id, 0))


def create_lot(study: StudyHandle, lot: NewLot, *, user: str) -> LotRecord:
    """Add a lot (audited insert, checks of :func:`~celltrial.services.casebook.check_lot`)."""
    return read_lot(study, record_lot(study, lot, user=user))


def _text(value: str | None) -> str | None:
    text = (value or "").strip()
    return text or None


def edit_lot(
    study: StudyHandle, lot_id: int, lot: NewLot, *, version: int, reason: str, user: str
) -> LotRecord:
    """Change a lot's results or status: needs a reason and the version the user saw."""
    reason = check_reason(reason)
    check_lot(lot, study.protocol.product.release)
    code = lot.code.strip()
    with (
        refusing_lost_updates("the lot was"),
        study_session(study.engine, user=user, reason=reason) as session,
    ):
        row = _find(session, study, lot_id)
        check_version(session, row, version, f"lot {row.code}")
        if code != row.code:
            taken = session.scalar(
                select(ProductLot.id).where(
                    ProductLot.study_id == study.study_id, ProductLot.code == code
                )
            )
            if taken is not None:
                raise DataError(f"lot code {code!r}: another lot has it")
        apply_changes(
            row,
            {
                "code": code,
                "release_status": lot.release_status,
                "viability_pct": lot.viability_pct,
                "markers_pct": dict(lot.markers_pct or {}),
                "sterility": lot.sterility,
                "mycoplasma": lot.mycoplasma,
                "endotoxin_eu_per_ml": lot.endotoxin_eu_per_ml,
                "total_cells": lot.total_cells,
                "donor_id": _text(lot.donor_id),
                "tissue_source": _text(lot.tissue_source),
                "manufactured_at": lot.manufactured_at,
                "expires_at": lot.expires_at,
            },
        )
        session.flush()
        return _record(study, row, _uses(session, [row.id]).get(row.id, 0))
