"""Time to normalisation of a marker after time zero (e.g. lymphocytes back to ≥ 1.1 × 10^9/L),
treated vs matched controls: weighted Kaplan–Meier per arm (lifelines) and the difference in the
proportion normalised by the end of the trajectory window with Newcombe's hybrid score interval
(valid with zero cells; :mod:`celltrial.external.intervals`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from celltrial.external.compare import (
    _risk_from_curve,
    compute_effective_events,
    compute_weighted_kaplan_meier,
)
from celltrial.external.intervals import NEWCOMBE_METHOD, compute_newcombe_difference
from celltrial.external.spec import TargetTrialSpec

DAY_HOURS = 24.0


@dataclass(frozen=True, eq=False)
class NormalisationResult:
    """``summary``: one row per arm (n, normalised, proportion by the horizon, median days)."""

    summary: pd.DataFrame
    times: pd.DataFrame
    curves: dict[str, pd.DataFrame]
    marker: str
    threshold: float
    horizon: float
    difference: float
    difference_ci: tuple[float, float]
    n: int
    method: str
    caveats: tuple[str, ...]


def derive_normalisation_times(
    aligned: pd.DataFrame, outcome_rows: pd.DataFrame, *, spec: TargetTrialSpec
) -> pd.DataFrame:
    """Per subject: days from time zero to the first value ≥ threshold (event), else censored at
    the last value of the marker in the window, or earlier at death.

    ``aligned``: rows of :func:`~celltrial.external.compare.derive_aligned_observations`;
    ``outcome_rows``: subject_id, arm, time_zero, died. Subjects already at or above the
    threshold at baseline are not at risk and are left out (the eligibility rules usually
    exclude them).
    """
    rule = spec.outcomes.normalisation
    horizon = float(spec.outcomes.trajectory_days[1])
    rows = aligned[aligned["marker"] == rule.marker]
    out = []
    died = outcome_rows.set_index("subject_id")
    for subject, values in rows.groupby("subject_id", sort=True):
        base = values[values["is_baseline"]]
        if len(base) and float(base["value"].iloc[-1]) >= rule.at_least:
            continue
        post = values[~values["is_baseline"] & (values["hours"] <= horizon * DAY_HOURS)]
        post = post.sort_values("hours")
        hit = post[post["value"] >= rule.at_least]
        info = died.loc[subject]
        death_days = (
            (pd.Timestamp(info["died"]) - pd.Timestamp(info["time_zero"])) / pd.Timedelta(days=1)
            if pd.notna(info["died"])
            else np.inf
        )
        if len(hit) and hit["hours"].iloc[0] / DAY_HOURS <= death_days:
            duration, event, status = hit["hours"].iloc[0] / DAY_HOURS, True, "normalised"
        else:
            last = post["hours"].iloc[-1] / DAY_HOURS if len(post) else 0.0
            if death_days < last or (not len(post) and np.isfinite(death_days)):
                duration, status = min(death_days, horizon), "died before normalising"
            else:
                duration, status = last, "censored at last value"
            event = False
        out.append(
            {
                "subject_id": subject,
                "arm": values["arm"].iloc[0],
                "duration": float(min(max(duration, 0.0), horizon)),
                "event": bool(event),
                "status": status,
            }
        )
    return pd.DataFrame(out, columns=["subject_id", "arm", "duration", "event", "status"])


def summarize_normalisation(
    times: pd.DataFrame, weights: pd.Series, *, spec: TargetTrialSpec, confidence: float = 0.95
) -> NormalisationResult:
    """Proportion normalised by the window's end per arm (1 − KM survival), median time, and the
    treated − control difference with Newcombe's hybrid score interval on effective counts
    (:func:`~celltrial.external.compare.compute_effective_events`)."""
    rule = spec.outcomes.normalisation
    horizon = float(spec.outcomes.trajectory_days[1])
    curves, summary, counts = {}, [], {}
    n_treated = 0
    for arm in ("treated", "external"):
        rows = times[times["arm"] == arm]
        w = (
            np.ones(len(rows))
            if arm == "treated"
            else rows["subject_id"].map(weights).fillna(1.0).to_numpy(float)
        )
        d, e = rows["duration"].to_numpy(float), rows["event"].to_numpy(bool)
        if arm == "treated":
            n_treated = len(d)
        curve = compute_weighted_kaplan_meier(d, e, w)
        curves[arm] = curve
        share = _risk_from_curve(curve, horizon) if len(d) else np.nan
        counts[arm] = compute_effective_events(d, e, w, horizon, share)
        # S(t) ≤ 0.5, a float within rounding error of 0.5 counted as 0.5 (weights make an
        # exact product impractical; efficacy.survival decides unweighted curves exactly)
        below = curve[curve["survival"] <= 0.5 + 1e-9]
        summary.append(
            {
                "arm": arm,
                "n": len(d),
                "effective_n": counts[arm][1],
                "normalised": int(e.sum()),
                "proportion_by_horizon": share,
                "median_days": float(below["time"].iloc[0]) if len(below) else np.nan,
                "died_first": int((rows["status"] == "died before normalising").sum()),
            }
        )
    summary = pd.DataFrame(summary)
    share = summary.set_index("arm")["proportion_by_horizon"]
    difference = float(share.get("treated", np.nan) - share.get("external", np.nan))
    (x1, n1), (x2, n2) = counts["treated"], counts["external"]
    ci = compute_newcombe_difference(x1, n1, x2, n2, confidence=confidence)
    caveats = [
        "death before normalisation censors the subject (a competing event): the proportion "
        "normalised describes survivors' recovery and is not a cumulative incidence",
        "time is measured to the first draw at or above the threshold: with draws days apart "
        "the true time is earlier, and sparser draws in one arm delay its times",
    ]
    caveats.append(
        "subjects censored before the horizon (no value near its end) are not counted in the "
        "effective n of the interval: it is conservative when draws stop early"
    )
    if n_treated < 10:
        caveats.append(
            f"{n_treated} treated subjects: one subject moves the treated proportion by "
            f"{100 / max(n_treated, 1):.0f} points"
        )
    return NormalisationResult(
        summary=summary,
        times=times,
        curves=curves,
        marker=rule.marker,
        threshold=rule.at_least,
        horizon=horizon,
        difference=difference,
        difference_ci=(float(ci[0]), float(ci[1])),
        n=len(times),
        method=(
            f"time from time zero to the first {rule.marker} ≥ {rule.at_least:g} within "
            f"{horizon:g} days: Kaplan–Meier per arm (controls weighted by matching weights), "
            "censored at the last value or at death; difference in the proportion normalised by "
            f"day {horizon:g} with the {NEWCOMBE_METHOD} on effective counts (proportion × Kish "
            "effective n of the subjects whose status at the horizon is known)"
        ),
        caveats=tuple(caveats),
    )
