"""The report's chest CT section: results per subject and visit, progression, overlays.

The lead registers :func:`build_ct_section` in ``celltrial.report.sections.SECTION_BUILDERS``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
from markupsafe import Markup

from celltrial.imaging.progression import (
    STABLE_PCT_POINTS,
    STABLE_RELATIVE,
    derive_ct_trajectory,
)
from celltrial.store.frames import read_ct_results

#: Subjects whose baseline and last follow-up are shown side by side.
MAX_OVERLAYS = 5
#: Resolution of the report's overlays (the demo volumes have 4 mm pixels: more adds nothing).
OVERLAY_DPI = 80


def build_ct_section(context) -> object | None:
    """The chest CT section (None when the study has no quantified CT scan)."""
    from celltrial.report.sections import Section
    from celltrial.report.tables import render_table
    from celltrial.store.frames import first_infusions
    from celltrial.timeline import derive_study_day

    study, frames = context.study, context.frames
    results = read_ct_results(study.engine, study.study_id)
    if results.empty:
        return None
    zone = study.protocol.study.zone
    results = derive_study_day(results, first_infusions(frames.infusions), zone)
    results["study_day"] = results["study_day"].astype("Float64")
    known = results.dropna(subset=["study_day"])
    trajectory = derive_ct_trajectory(known) if not known.empty else known
    parts: list[Markup] = [
        Markup(
            "<p>Chest CT quantified by celltrial: lungs segmented, ground-glass opacity and "
            "consolidation measured inside them (density bands after vessel suppression, or the "
            "learned model for display images). Involvement is the lesion volume as % of the "
            "lung volume; the score gives each of six zones (upper, middle, lower third of each "
            "lung) 0–5 by % involvement (total 0–30). Study day 0 is the first infusion.</p>"
        )
    ]
    table = results[
        ["subject_id", "study_day", "lung_ml", "ggo_ml", "consolidation_ml", "involvement_pct"]
    ].copy()
    table["score"] = results["score"].astype("Int64")
    table.columns = [
        "subject",
        "day",
        "lung mL",
        "ground-glass mL",
        "consolidation mL",
        "involved %",
        "score /30",
    ]
    parts.append(
        render_table(
            table,
            caption="CT results per subject and scan.",
            counter=context.tables,
            formats={
                "day": _day,
                "lung mL": lambda v: f"{v:.0f}",
                "ground-glass mL": lambda v: f"{v:.1f}",
                "consolidation mL": lambda v: f"{v:.1f}",
                "involved %": lambda v: f"{v:.1f}",
            },
            listing=True,
        )
    )
    if not trajectory.empty:
        change = trajectory[
            ["subject_id", "study_day", "lesion_ml", "lesion_change_ml", "score", "status"]
        ].copy()
        change = change.rename(
            columns={
                "subject_id": "subject",
                "study_day": "day",
                "lesion_ml": "lesions mL",
                "lesion_change_ml": "change mL",
                "score": "score /30",
            }
        )
        parts.append(Markup("<h3>Progression against each subject's baseline scan</h3>"))
        parts.append(
            render_table(
                change,
                caption="CT lesion change from the baseline scan (last scan on or before day 0): "
                "stable when involvement changed by less than "
                f"{STABLE_PCT_POINTS:g} percentage points or the lesion volume by less than "
                f"{100 * STABLE_RELATIVE:g} %, else improved or progressed.",
                counter=context.tables,
                formats={
                    "day": _day,
                    "lesions mL": lambda v: f"{v:.1f}",
                    "change mL": lambda v: f"{v:+.1f}",
                },
                listing=True,
            )
        )
    parts.extend(_overlays(known, context))
    return Section(
        id="chest-ct",
        title="Chest CT",
        html=Markup("").join(parts),
        methods=(
            "Chest CT: lungs segmented (airways removed, dense consolidation against the pleura "
            "kept from the lung's convex pleural surface), lesions by density band; volumes, "
            "% involvement and a 0–30 zone score, all computed by celltrial's CT analysis.",
        ),
    )


def _day(value) -> str:
    return "–" if pd.isna(value) else f"{int(value)}"


def _overlays(results: pd.DataFrame, context) -> list[Markup]:
    """Baseline beside last follow-up of up to MAX_OVERLAYS subjects whose files are at hand."""
    from celltrial.imaging.overlays import render_view_grid
    from celltrial.imaging.records import read_scan_views, study_views_dir
    from celltrial.report.figures import render_png

    kept = study_views_dir(context.study.directory)

    def views_of(scan: pd.Series):
        """Views kept when the scan was quantified; else measure it again (slow)."""
        return read_scan_views(kept, str(scan["checksum"]), scan["path"])

    out: list[Markup] = []
    shown = 0
    for subject, scans in results.sort_values("study_day").groupby("subject_id", sort=True):
        if shown >= MAX_OVERLAYS or len(scans) < 2:
            continue
        first, last = scans.iloc[0], scans.iloc[-1]
        paths = [Path(str(p)) for p in (first["path"], last["path"])]
        if not all(p.exists() for p in paths):
            continue
        with tempfile.TemporaryDirectory() as folder:
            png = render_view_grid(
                [views_of(first), views_of(last)],
                Path(folder) / "pair.png",
                titles=[f"day {_day(first['study_day'])}", f"day {_day(last['study_day'])}"],
                dpi=OVERLAY_DPI,
            ).read_bytes()
        caption = (
            f"{subject}: chest CT at day {_day(first['study_day'])} beside day "
            f"{_day(last['study_day'])} (axial and coronal; lungs outlined yellow, ground-glass "
            "orange, consolidation blue)."
        )
        if shown == 0:
            out.append(Markup("<h3>Baseline and last follow-up</h3>"))
        out.append(render_png(png, caption=caption, counter=context.figures))
        shown += 1
    return out


__all__ = ["build_ct_section"]
