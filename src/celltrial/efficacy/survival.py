"""Kaplan–Meier (product-limit) estimates of time to an event, with right censoring.

A small, dependency-free estimator: the product-limit survival curve, Greenwood's variance, the
log(−log) ("exponential Greenwood") pointwise interval — the same interval lifelines and R's
``survival::survfit(conf.type = "log-log")`` give — and the median with the Brookmeyer–Crowley
interval read off the pointwise bounds. Events at a time come before censorings at that time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

from celltrial.efficacy.observations import check_confidence
from celltrial.errors import DataError

KM_COLUMNS: tuple[str, ...] = (
    "time",
    "n_at_risk",
    "n_events",
    "n_censored",
    "survival",
    "se",
    "ci_low",
    "ci_high",
)


@dataclass(frozen=True, eq=False)
class KaplanMeierResult:
    """Product-limit estimate: one row per distinct time (``summary``), median and counts.

    ``survival`` is P(no event by t); ``cumulative`` in ``summary`` is 1 − survival (the share
    who had the event by t, when there are no competing events). ``median`` is NaN when the
    curve never reaches 0.5; so are its bounds when the pointwise interval never does.
    """

    summary: pd.DataFrame
    endpoint: str
    n: int
    n_events: int
    n_censored: int
    median: float
    median_ci: tuple[float, float]
    confidence: float
    method: str
    caveats: tuple[str, ...]

    def survival_at(self, time: float) -> float:
        """S(t): the step function's value at ``time`` (1 before the first event)."""
        table = self.summary
        before = table[table["time"] <= time]
        return 1.0 if before.empty else float(before["survival"].iloc[-1])


def compute_kaplan_meier(
    durations: ArrayLike, events: ArrayLike, *, confidence: float = 0.95
) -> pd.DataFrame:
    """Product-limit table (columns :data:`KM_COLUMNS`) of ``durations`` with event flags.

    ``events`` is 1/True for an observed event, 0/False for a censored time. Greenwood's
    variance; pointwise interval on log(−log S) (NaN where S is 0 or 1 or no variance exists).
    """
    confidence = check_confidence(confidence)
    t = np.asarray(durations, dtype=float)
    e = np.asarray(events, dtype=bool)
    if t.shape != e.shape or t.ndim != 1:
        raise DataError(f"durations and events must be 1-D of equal length: {t.shape}, {e.shape}")
    if np.isnan(t).any() or (t < 0).any():
        raise DataError("durations must be non-negative numbers (no missing values)")
    times = np.unique(t)
    n_events = np.array([np.sum(e & (t == x)) for x in times], dtype=int)
    n_censored = np.array([np.sum(~e & (t == x)) for x in times], dtype=int)
    n_at_risk = np.array([np.sum(t >= x) for x in times], dtype=int)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = 1.0 - n_events / n_at_risk
        survival = np.cumprod(factor)
        terms = np.where(
            n_at_risk > n_events, n_events / (n_at_risk * (n_at_risk - n_events)), np.inf
        )
        greenwood = np.cumsum(terms)
        se = survival * np.sqrt(greenwood)
        z = float(stats.norm.ppf(0.5 + confidence / 2.0))
        # log(-log) interval: S^exp(±z·σ), σ = sqrt(Greenwood) / |log S|
        sigma = np.sqrt(greenwood) / np.abs(np.log(survival))
        defined = (survival > 0) & (survival < 1) & np.isfinite(sigma)
        low = np.where(defined, survival ** np.exp(z * sigma), np.nan)
        high = np.where(defined, survival ** np.exp(-z * sigma), np.nan)
    se = np.where(np.isfinite(se), se, np.nan)
    return pd.DataFrame(
        {
            "time": times,
            "n_at_risk": n_at_risk,
            "n_events": n_events,
            "n_censored": n_censored,
            "survival": survival,
            "se": se,
            "ci_low": low,
            "ci_high": high,
        }
    )


def compute_median_time(table: pd.DataFrame) -> tuple[float, float, float]:
    """Median time to event and its interval from a :func:`compute_kaplan_meier` table.

    Median: the first time with S(t) ≤ 0.5. Interval (Brookmeyer & Crowley, as lifelines and R):
    from the first time the lower pointwise bound falls to ≤ 0.5 to the first time the upper
    bound does (NaN when it never does: the bound is not reached). Returns (median, low, high).
    """

    def first(values: pd.Series) -> float:
        hit = table.loc[values.fillna(np.inf) <= 0.5, "time"]
        return float(hit.iloc[0]) if len(hit) else float("nan")

    upper = table["ci_high"].where(table["survival"] > 0, 0.0)
    lower = table["ci_low"].where(table["survival"] > 0, 0.0)
    return first(table["survival"]), first(lower), first(upper)


def summarize_time_to_event(
    frame: pd.DataFrame,
    *,
    endpoint: str,
    duration: str = "duration",
    event: str = "event",
    confidence: float = 0.95,
) -> KaplanMeierResult:
    """Kaplan–Meier estimate of ``endpoint`` from one row per subject (``duration``, ``event``)."""
    confidence = check_confidence(confidence)
    rows = frame[[duration, event]].dropna(subset=[duration])
    n_dropped = len(frame) - len(rows)
    durations = rows[duration].to_numpy(float)
    events = rows[event].fillna(False).to_numpy(bool)
    table = compute_kaplan_meier(durations, events, confidence=confidence)
    table["cumulative"] = 1.0 - table["survival"]
    median, median_low, median_high = compute_median_time(table)
    n, n_events = len(rows), int(events.sum())
    caveats = []
    if n_dropped:
        caveats.append(f"{n_dropped} subject(s) without a follow-up time were left out")
    if n < 10:
        caveats.append(
            f"only {n} subjects: each event moves the curve by ≥ {100 / max(n, 1):.0f} points "
            "and the intervals are wide; read it with the per-subject listing"
        )
    if np.isnan(median):
        caveats.append("the curve never falls to 0.5: the median is not reached")
    elif np.isnan(median_high):
        caveats.append("the median's upper bound is not reached")
    return KaplanMeierResult(
        summary=table,
        endpoint=endpoint,
        n=n,
        n_events=n_events,
        n_censored=n - n_events,
        median=median,
        median_ci=(median_low, median_high),
        confidence=confidence,
        method=(
            "Kaplan–Meier product-limit estimate (events before censorings at tied times), "
            "Greenwood variance, pointwise log(−log) interval, median with the "
            "Brookmeyer–Crowley interval"
        ),
        caveats=tuple(caveats),
    )
