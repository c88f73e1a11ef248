"""A subject's chest CT scans for the web app: the stored results with the change from the
baseline scan, and the baseline beside the last follow-up as a PNG (as the report shows them).

The overlays are those kept when each scan was quantified (``<study>/ct/views/<checksum>.npz``,
:mod:`celltrial.imaging.overlays`); a scan without kept views is measured again from its file.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy.orm import Session

from celltrial.services.errors import NotFound
from celltrial.services.monitoring import read_study_state, rows_of_subject
from celltrial.store.frames import first_infusions, read_ct_results
from celltrial.store.models import Subject
from celltrial.study import StudyHandle
from celltrial.timeline import derive_study_day

#: Resolution of the overlay PNG (the demo volumes have 4 mm pixels: more adds nothing).
OVERLAY_DPI = 80


@dataclass(frozen=True)
class CtScanRecord:
    """One quantified scan of a subject and its change from the subject's baseline scan."""

    subject_code: str
    time: datetime
    study_day: int | None
    method: str
    lung_ml: float | None
    ggo_ml: float | None
    consolidation_ml: float | None
    lesion_ml: float | None
    involvement_pct: float | None
    score: float | None
    #: baseline, improved, stable or progressed (None before the first infusion is known)
    status: str | None
    lesion_change_ml: float | None
    checksum: str | None


def _scans(study: StudyHandle, code: str) -> pd.DataFrame:
    """The subject's CT results with study days and the change from baseline, by time."""
    state = read_study_state(study)
    if not len(rows_of_subject(state.frames.subjects, code)):
        raise NotFound(f"no subject {code!r} in study {study.study_id}")
    if not len(rows_of_subject(state.frames.imaging, code)):
        return pd.DataFrame()  # no imaging study, so no CT result (most subjects)
    results = read_ct_results(study.engine, study.study_id, subject=code)
    return _with_progression(
        results, first_infusions(state.frames.infusions), study.protocol.study.zone
    )


def _with_progression(
    results: pd.DataFrame, first_infusion: pd.Series, zone: ZoneInfo | str
) -> pd.DataFrame:
    """CT results (:func:`read_ct_results`) with study days (``first_infusion``: subject code
    -> day 0) and the change from baseline, by time."""
    from celltrial.imaging.progression import derive_ct_trajectory

    if results.empty:  # most subjects: no study days and trajectory to derive
        return results
    results = derive_study_day(results, first_infusion, zone)
    results["status"] = None
    results["lesion_change_ml"] = float("nan")
    known = results.dropna(subset=["study_day"])
    if not known.empty:
        trajectory = derive_ct_trajectory(known)
        results.loc[trajectory.index, "status"] = trajectory["status"]
        results.loc[trajectory.index, "lesion_change_ml"] = trajectory["lesion_change_ml"]
    return results.sort_values("time").reset_index(drop=True)


def list_ct_scans(study: StudyHandle, subject_code: str) -> list[CtScanRecord]:
    """The subject's quantified CT scans, oldest first."""
    return _records(_scans(study, subject_code), subject_code)


def subject_ct_scans(
    session: Session, subject: Subject, first_infusion: datetime | None, zone: ZoneInfo | str
) -> list[CtScanRecord]:
    """The subject's quantified CT scans, oldest first, read within a session of the caller's;
    ``first_infusion``: the start of the subject's first infusion (day 0), if any."""
    results = read_ct_results(session.connection(), subject.study_id, subject=subject.code)
    day_0 = pd.Series(
        [] if first_infusion is None else [pd.Timestamp(first_infusion).tz_convert("UTC")],
        index=[] if first_infusion is None else [subject.code],
        dtype="datetime64[ns, UTC]",
    )
    return _records(_with_progression(results, day_0, zone), subject.code)


def _records(scans: pd.DataFrame, subject_code: str) -> list[CtScanRecord]:
    if scans.empty:
        return []
    columns = [f.name for f in fields(CtScanRecord) if f.name not in {"subject_code", "time"}]
    rows = scans[["time", *columns]].astype(object)
    rows = rows.where(rows.notna(), None)
    return [
        CtScanRecord(
            subject_code=subject_code,
            time=row["time"].to_pydatetime(),
            **{c: row[c] for c in columns if c != "study_day"}
            | {"study_day": None if row["study_day"] is None else int(row["study_day"])},
        )
        for row in rows.to_dict("records")
    ]


def _day(row: pd.Series) -> str:
    day = row["study_day"]
    if pd.isna(day):
        return f"{pd.Timestamp(row['time']):%Y-%m-%d}"
    return f"day {int(day)}"


def render_ct_comparison(study: StudyHandle, subject_code: str) -> bytes:
    """PNG of the baseline scan (last on or before day 0, else the first) beside the last
    follow-up, axial above coronal; the one scan alone when there is one.
    :class:`NotFound` when no scan's overlay is at hand."""
    from celltrial.imaging.overlays import render_view_grid
    from celltrial.imaging.records import read_scan_views, study_views_dir

    scans = _scans(study, subject_code)
    if scans.empty:
        raise NotFound(f"subject {subject_code} has no quantified CT scan")
    baseline = scans[scans["status"] == "baseline"]
    first = baseline.iloc[-1] if len(baseline) else scans.iloc[0]
    last = scans.iloc[-1]
    shown = [first] if first.name == last.name else [first, last]
    kept = study_views_dir(study.directory)
    views = [read_scan_views(kept, s["checksum"], s["path"]) for s in shown]
    pairs = [(v, s) for v, s in zip(views, shown, strict=True) if v is not None]
    if not pairs:
        raise NotFound(
            f"the CT scans of subject {subject_code} have neither kept overlays nor their files "
            "at hand"
        )
    with tempfile.TemporaryDirectory() as folder:
        return render_view_grid(
            [v for v, _ in pairs],
            Path(folder) / "ct.png",
            titles=[_day(s) for _, s in pairs],
            dpi=OVERLAY_DPI,
        ).read_bytes()
