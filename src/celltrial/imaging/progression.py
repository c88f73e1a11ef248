"""Change between scans of a subject: per zone and overall, improved / stable / progressed."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from celltrial.errors import DataError
from celltrial.imaging.quantify import CtQuantification, load_bands

#: Default thresholds (``bands.yaml``, ``progression``): a change in involvement (percentage
#: points) below the first, or a relative change in lesion volume below the second, is "stable".
STABLE_PCT_POINTS = float(load_bands()["progression"]["stable_pct_points"])
STABLE_RELATIVE = float(load_bands()["progression"]["stable_relative"])


@dataclass(frozen=True)
class CtProgression:
    """Change from ``before`` to ``after``: a row per zone (and overall) in ``summary``."""

    summary: pd.DataFrame
    status: str  # improved | stable | progressed
    lesion_change_ml: float
    involvement_change_pct_points: float
    score_change: int
    method: str
    caveats: tuple[str, ...] = ()


def classify_change(
    before_pct: float,
    after_pct: float,
    before_ml: float,
    after_ml: float,
    *,
    stable_pct_points: float = STABLE_PCT_POINTS,
    stable_relative: float = STABLE_RELATIVE,
) -> str:
    """improved / stable / progressed: both the absolute (% points) and relative change count."""
    delta = after_pct - before_pct
    relative = (after_ml - before_ml) / before_ml if before_ml > 0 else (1.0 if after_ml else 0.0)
    if abs(delta) < stable_pct_points or abs(relative) < stable_relative:
        return "stable"
    return "progressed" if delta > 0 else "improved"


def summarize_progression(
    before: CtQuantification,
    after: CtQuantification,
    *,
    stable_pct_points: float = STABLE_PCT_POINTS,
    stable_relative: float = STABLE_RELATIVE,
) -> CtProgression:
    """Per-zone and overall change between two quantified scans of one subject."""
    a = before.summary.set_index(["lung", "zone"])
    b = after.summary.set_index(["lung", "zone"])
    if not a.index.equals(b.index):
        raise DataError("the two scans do not have the same lungs and zones")
    rows = []
    for key in a.index:
        ra, rb = a.loc[key], b.loc[key]
        rows.append(
            {
                "lung": key[0],
                "zone": key[1],
                "lesion_ml_before": ra["lesion_ml"],
                "lesion_ml_after": rb["lesion_ml"],
                "lesion_change_ml": rb["lesion_ml"] - ra["lesion_ml"],
                "involvement_before_pct": ra["involvement_pct"],
                "involvement_after_pct": rb["involvement_pct"],
                "involvement_change_pct_points": rb["involvement_pct"] - ra["involvement_pct"],
                "score_change": int(rb["score"] - ra["score"]),
                "status": classify_change(
                    ra["involvement_pct"],
                    rb["involvement_pct"],
                    ra["lesion_ml"],
                    rb["lesion_ml"],
                    stable_pct_points=stable_pct_points,
                    stable_relative=stable_relative,
                ),
            }
        )
    summary = pd.DataFrame(rows)
    status = classify_change(
        before.involvement_pct,
        after.involvement_pct,
        before.lesion_ml,
        after.lesion_ml,
        stable_pct_points=stable_pct_points,
        stable_relative=stable_relative,
    )
    caveats = (
        f"stable when |Δ involvement| < {stable_pct_points} % points or |relative Δ volume| < "
        f"{stable_relative:.0%}",
    )
    return CtProgression(
        summary=summary,
        status=status,
        lesion_change_ml=after.lesion_ml - before.lesion_ml,
        involvement_change_pct_points=after.involvement_pct - before.involvement_pct,
        score_change=after.score - before.score,
        method=f"{before.method} / {after.method}",
        caveats=caveats,
    )


def derive_ct_trajectory(frame: pd.DataFrame, *, baseline_day: int = 0) -> pd.DataFrame:
    """A copy of a per-scan frame (subject_id, study_day, lesion_ml, involvement_pct, score)
    with change from each subject's baseline scan (last scan on or before ``baseline_day``,
    else the first) and the status of that change."""
    needed = {"subject_id", "study_day", "lesion_ml", "involvement_pct", "score"}
    missing = needed - set(frame.columns)
    if missing:
        raise DataError(f"CT trajectory frame lacks column(s): {sorted(missing)}")
    out = frame.sort_values(["subject_id", "study_day"]).copy()
    parts = []
    for _, scans in out.groupby("subject_id", sort=False):
        early = scans[scans["study_day"] <= baseline_day]
        base = early.iloc[-1] if len(early) else scans.iloc[0]
        scans = scans.copy()
        scans["baseline_day"] = base["study_day"]
        scans["lesion_change_ml"] = scans["lesion_ml"] - base["lesion_ml"]
        scans["involvement_change_pct_points"] = scans["involvement_pct"] - base["involvement_pct"]
        scans["score_change"] = scans["score"] - base["score"]
        scans["status"] = [
            "baseline"
            if day == base["study_day"]
            else classify_change(base["involvement_pct"], pct, base["lesion_ml"], ml)
            for day, pct, ml in zip(
                scans["study_day"], scans["involvement_pct"], scans["lesion_ml"], strict=True
            )
        ]
        parts.append(scans)
    return pd.concat(parts) if parts else out


__all__ = [
    "CtProgression",
    "classify_change",
    "derive_ct_trajectory",
    "summarize_progression",
]
