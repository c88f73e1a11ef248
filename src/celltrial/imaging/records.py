"""CT scans into the study: many scans quantified in parallel, stored audited, read back.

Scans run on local cores by default (one process per scan, up to the number of cores) or on a
Dask cluster when given a scheduler address (``dask.distributed``, an optional dependency). Each
scan's result is stored as an ``imaging_study`` row (file, checksum, series UID; an existing row of
that subject on that date without a file is completed rather than duplicated) and a ``ct_result``
row, all in one audited transaction: either every scan is stored or none.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from celltrial.imaging.io import ImagingError

if TYPE_CHECKING:
    from celltrial.imaging.overlays import OverlayViews

#: ``<subject>_<YYYY-MM-DD>`` (optionally ``T<HHMM>``) at the start of a scan's file name.
SCAN_NAME = re.compile(r"^(?P<subject>.+?)_(?P<date>\d{4}-\d{2}-\d{2})(?:T(?P<hhmm>\d{4}))?")


@dataclass(frozen=True)
class ScanRecord:
    """The picklable outcome of one scan (no arrays): what is stored for it."""

    path: str
    checksum: str | None
    series_uid: str | None
    result: dict[str, Any]
    notes: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


def measure_scan_record(
    path: str | Path,
    *,
    method: str = "auto",
    window: tuple[float, float] | None = None,
    views_dir: str | Path | None = None,
) -> ScanRecord:
    """Read, segment and quantify one scan; the numbers only (for worker processes).

    With ``views_dir``, the scan's overlay views are kept there as ``<checksum>.npz`` so that a
    report shows the overlay without segmenting the scan again."""
    from celltrial.imaging.scan import measure_scan

    result = measure_scan(path, method=method, window=window)
    volume = result.volume
    if volume.meta.get("spacing_unknown"):
        raise ImagingError(
            f"{path}: the pixel size is not in the file (no Pixel Spacing): volumes in mL "
            "cannot be stored; `celltrial ct segment` reports its areas in pixels"
        )
    if views_dir is not None:
        from celltrial.imaging.overlays import compute_views, save_views

        save_views(compute_views(result), views_path(views_dir, volume.checksum))
    return ScanRecord(
        path=str(Path(path).resolve()),
        checksum=volume.checksum,
        series_uid=volume.series_uid,
        result=result.quantification.to_dict(),
        notes=tuple(result.quantification.caveats),
    )


def study_views_dir(directory: str | Path) -> Path:
    """Where a study keeps the overlay views of its quantified scans."""
    return Path(directory) / "ct" / "views"


def views_path(views_dir: str | Path, checksum: str) -> Path:
    """Where the overlay views of the scan with ``checksum`` are kept."""
    return Path(views_dir) / f"{checksum}.npz"


def read_scan_views(
    views_dir: str | Path, checksum: str | None, path: str | Path | None
) -> OverlayViews | None:
    """The overlay views of a quantified scan: those kept when it was quantified, else the scan
    measured again from its file (slow); None when neither is at hand."""
    from celltrial.imaging.overlays import compute_views, load_views
    from celltrial.imaging.scan import measure_scan

    saved = views_path(views_dir, checksum) if checksum else None
    if saved is not None and saved.exists():
        return load_views(saved)
    if path is None or not Path(path).exists():
        return None
    return compute_views(measure_scan(path))


def measure_scans(
    paths: Sequence[str | Path],
    *,
    method: str = "auto",
    window: tuple[float, float] | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    on_done: Callable[[ScanRecord], None] = lambda _record: None,
    views_dir: str | Path | None = None,
) -> list[ScanRecord]:
    """Quantify ``paths`` in parallel; records in the order of ``paths``.

    ``workers``: local processes (default: the number of cores, at most one per scan; 1 runs in
    this process). ``scheduler``: a Dask scheduler address (``tcp://host:8786``) instead.
    Raises :class:`ImagingError` naming every scan that failed (nothing is half done).
    """
    paths = [str(p) for p in paths]
    records: dict[int, ScanRecord] = {}
    errors: dict[int, str] = {}
    options = {"method": method, "window": window, "views_dir": views_dir}
    if scheduler:
        try:
            from dask.distributed import Client
            from dask.distributed import as_completed as dask_completed
        except ImportError:
            raise ImagingError(
                "--scheduler needs dask.distributed: pip install 'dask[distributed]'"
            ) from None
        try:
            client = Client(scheduler, timeout="10s")
        except OSError as exc:
            raise ImagingError(f"cannot reach the Dask scheduler {scheduler}: {exc}") from None
        with client:
            futures = {
                client.submit(measure_scan_record, p, pure=False, **options): i
                for i, p in enumerate(paths)
            }
            for future in dask_completed(futures):
                _collect(future, futures[future], paths, records, errors, on_done)
    else:
        n = min(workers or os.cpu_count() or 1, len(paths))
        if n <= 1:
            for i, p in enumerate(paths):
                try:
                    records[i] = measure_scan_record(p, **options)
                    on_done(records[i])
                except ImagingError as exc:
                    errors[i] = str(exc)
        else:
            with ProcessPoolExecutor(max_workers=n) as pool:
                futures = {
                    pool.submit(measure_scan_record, p, **options): i for i, p in enumerate(paths)
                }
                for future in as_completed(futures):
                    _collect(future, futures[future], paths, records, errors, on_done)
    if errors:
        listed = "; ".join(f"{paths[i]}: {errors[i]}" for i in sorted(errors))
        raise ImagingError(f"{len(errors)} of {len(paths)} scan(s) failed, none stored: {listed}")
    return [records[i] for i in range(len(paths))]


def _collect(future, index, paths, records, errors, on_done) -> None:
    try:
        records[index] = future.result()
    except ImagingError as exc:
        errors[index] = str(exc)
        return
    on_done(records[index])


def parse_scan_name(path: str | Path) -> tuple[str, str] | None:
    """``(subject, date text)`` from a file named ``<subject>_<YYYY-MM-DD>…``, else None."""
    match = SCAN_NAME.match(Path(path).name)
    if match is None:
        return None
    text = match["date"] + (f"T{match['hhmm'][:2]}:{match['hhmm'][2:]}" if match["hhmm"] else "")
    return match["subject"], text


def parse_scan_time(text: str, *, zone: ZoneInfo | str) -> datetime:
    """A scan's date or date-time (ISO) as an aware time; a bare date means 12:00 local."""
    zone = ZoneInfo(str(zone)) if not isinstance(zone, ZoneInfo) else zone
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(12, 0), tzinfo=zone)
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ImagingError(f"--date {text!r}: expected YYYY-MM-DD or YYYY-MM-DDTHH:MM") from None
    return value if value.tzinfo else value.replace(tzinfo=zone)


def store_ct_results(
    engine,
    study_id: str,
    records: Sequence[ScanRecord],
    *,
    subjects: Sequence[str],
    times: Sequence[datetime],
    user: str,
    reason: str | None = None,
) -> list[int]:
    """Store each record as an imaging study (+ CT result) of its subject at its time, audited.

    An imaging study of the same subject with the same checksum, or on the same local date with
    no file yet (a planned CT visit), is completed and its earlier CT results replaced; otherwise
    a new one is added. Returns the imaging study ids. All or nothing.
    """
    from sqlalchemy import select

    from celltrial.errors import StudyError
    from celltrial.store.database import study_session
    from celltrial.store.models import CtResult, ImagingStudy, Subject

    ids = []
    with study_session(engine, user=user, reason=reason or "CT quantification") as session:
        for record, code, when in zip(records, subjects, times, strict=True):
            subject = session.scalar(
                select(Subject).where(
                    Subject.study_id == study_id, Subject.code == code, Subject.cohort.is_(None)
                )
            )
            if subject is None:
                raise StudyError(f"{record.path}: subject {code!r} is not in study {study_id}")
            existing = list(
                session.scalars(select(ImagingStudy).where(ImagingStudy.subject_id == subject.id))
            )
            match = next(
                (s for s in existing if record.checksum and s.checksum == record.checksum), None
            )
            if match is None:
                match = next(
                    (
                        s
                        for s in existing
                        if s.path is None and _local_date(s.time, when) == when.date()
                    ),
                    None,
                )
            if match is None:
                match = ImagingStudy(subject_id=subject.id, time=when, modality="CT")
                session.add(match)
            match.path = record.path
            match.checksum = record.checksum
            match.series_uid = record.series_uid
            session.flush()
            for old in session.scalars(
                select(CtResult).where(CtResult.imaging_study_id == match.id)
            ):
                session.delete(old)
            session.flush()
            r = record.result
            session.add(
                CtResult(
                    imaging_study_id=match.id,
                    method=r["method"],
                    lung_volume_ml=r["lung_volume_ml"],
                    ggo_volume_ml=r["ggo_volume_ml"],
                    consolidation_volume_ml=r["consolidation_volume_ml"],
                    involvement_pct=r["involvement_pct"],
                    zones={**r["zones"], "_scan": _scan_extras(r, record)},
                    score=r["score"],
                )
            )
            ids.append(match.id)
        session.flush()
    return ids


def _scan_extras(result: dict[str, Any], record: ScanRecord) -> dict[str, Any]:
    return {
        "mean_lung_density_hu": result.get("mean_lung_density_hu"),
        "well_aerated_pct": result.get("well_aerated_pct"),
        "caveats": list(record.notes),
    }


def _local_date(stored: datetime, when: datetime) -> date:
    if stored.tzinfo is None:  # SQLite returns naive UTC
        from datetime import UTC

        stored = stored.replace(tzinfo=UTC)
    return stored.astimezone(when.tzinfo).date()


__all__ = [
    "ScanRecord",
    "measure_scan_record",
    "measure_scans",
    "parse_scan_name",
    "parse_scan_time",
    "read_scan_views",
    "store_ct_results",
]
