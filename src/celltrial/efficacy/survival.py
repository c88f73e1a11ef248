"""Kaplan–Meier (product-limit) estimates of time to an event, with right censoring, and log-rank.

The curve, its pointwise interval (log(−log), "exponential Greenwood", as R's
``survival::survfit(conf.type = "log-log")``), the median's Brookmeyer–Crowley interval and the
log-rank test come from lifelines (``KaplanMeierFitter``, ``median_survival_times``,
``logrank_test``). Events at a time come before censorings at that time.

The median is the smallest time with S(t) ≤ 0.5, decided in exact arithmetic: S(t) is a product
of fractions (n − d)/n, and a curve that reaches 0.5 exactly can be 0.5000000000000001 in floats
(lifelines' own curve too: 24 subjects with one event a day give S(12) = 0.5 exactly; 6, 8, 14, 18
or 20 such subjects give a float just above 0.5). Reading the float would move the median one event
time late; the integer counts decide instead.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from lifelines import KaplanMeierFitter
from lifelines.statistics import logrank_test
from lifelines.utils import median_survival_times
from numpy.typing import ArrayLike

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


def _fit(durations: ArrayLike, events: ArrayLike, confidence: float) -> KaplanMeierFitter:
    t = np.asarray(durations, dtype=float)
    e = np.asarray(events, dtype=bool)
    if t.shape != e.shape or t.ndim != 1:
        raise DataError(f"durations and events must be 1-D of equal length: {t.shape}, {e.shape}")
    if np.isnan(t).any() or (t < 0).any():
        raise DataError("durations must be non-negative numbers (no missing values)")
    fitter = KaplanMeierFitter(alpha=1.0 - confidence)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fitter.fit(t, event_observed=e)


def _table(fitter: KaplanMeierFitter) -> pd.DataFrame:
    """Product-limit table (:data:`KM_COLUMNS`) from a fitted lifelines estimator."""
    events = fitter.event_table
    events = events[events["removed"] > 0]
    times = events.index.to_numpy(float)
    n_at_risk = events["at_risk"].to_numpy(int)
    n_events = events["observed"].to_numpy(int)
    survival = fitter.survival_function_.iloc[:, 0].reindex(times).to_numpy(float)
    bounds = fitter.confidence_interval_survival_function_.reindex(times)
    low = bounds.iloc[:, 0].to_numpy(float)
    high = bounds.iloc[:, 1].to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(
            n_at_risk > n_events, n_events / (n_at_risk * (n_at_risk - n_events)), np.inf
        )
        se = survival * np.sqrt(np.cumsum(terms))
    se = np.where(np.isfinite(se), se, np.nan)
    # the log(−log) interval is not defined where S is 0 or 1 (lifelines puts 0–0 and 1–1)
    undefined = (survival <= 0) | (survival >= 1)
    return pd.DataFrame(
        {
            "time": times,
            "n_at_risk": n_at_risk,
            "n_events": n_events,
            "n_censored": events["censored"].to_numpy(int),
            "survival": survival,
            "se": se,
            "ci_low": np.where(undefined, np.nan, low),
            "ci_high": np.where(undefined, np.nan, high),
        }
    )


def compute_kaplan_meier(
    durations: ArrayLike, events: ArrayLike, *, confidence: float = 0.95
) -> pd.DataFrame:
    """Product-limit table (columns :data:`KM_COLUMNS`) of ``durations`` with event flags.

    ``events`` is 1/True for an observed event, 0/False for a censored time. Curve and pointwise
    log(−log) interval from lifelines' ``KaplanMeierFitter`` (NaN where S is 0 or 1); ``se`` is
    Greenwood's standard error of S.
    """
    confidence = check_confidence(confidence)
    return _table(_fit(durations, events, confidence))


#: Floats closer to 0.5 than this are decided by the exact product (far wider than rounding
#: error, far narrower than any difference that matters).
_NEAR_HALF = 1e-9


def compute_median_time(table: pd.DataFrame) -> tuple[float, float, float]:
    """Median time to event and its interval from a :func:`compute_kaplan_meier` table.

    Median: the smallest time with S(t) ≤ 0.5 (lifelines' and R's convention), S compared in exact
    arithmetic from the integer counts where its float lies within 1e-9 of 0.5. Interval
    (Brookmeyer & Crowley, lifelines' ``median_survival_times`` on the pointwise bounds): from the
    first time the lower bound falls to ≤ 0.5 to the first time the upper bound does (NaN when it
    never does: the bound is not reached). Returns (median, low, high).
    """
    if table.empty:
        return (float("nan"),) * 3  # type: ignore[return-value]
    survival = table["survival"].to_numpy(float)
    index = pd.Index(table["time"].to_numpy(float))
    below = survival <= 0.5
    near = np.flatnonzero(np.abs(survival - 0.5) <= _NEAR_HALF)
    if near.size:
        at_risk = table["n_at_risk"].to_numpy(int)
        died = table["n_events"].to_numpy(int)
        for i in near:  # at most a few rows (one plateau): exact 2·∏(n − d) ≤ ∏n
            numerator = math.prod(int(x) for x in at_risk[: i + 1] - died[: i + 1])
            below[i] = 2 * numerator <= math.prod(int(x) for x in at_risk[: i + 1])
    hit = np.flatnonzero(below)
    median = float(index[hit[0]]) if hit.size else float("nan")

    def reached(bound: pd.Series) -> float:
        # S = 0 has the bound 0 (lifelines' value there); otherwise NaN means "no bound": 1
        filled = bound.where(table["survival"] > 0, 0.0).fillna(1.0)
        value = float(
            median_survival_times(pd.Series(filled.to_numpy(float), index=index)).squeeze()
        )
        return value if np.isfinite(value) else float("nan")

    return median, reached(table["ci_low"]), reached(table["ci_high"])


def compute_log_rank(
    durations_a: ArrayLike,
    events_a: ArrayLike,
    durations_b: ArrayLike,
    events_b: ArrayLike,
) -> tuple[float, float]:
    """Two-group log-rank test (lifelines ``logrank_test``): (chi-square statistic, p)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lifelines' pandas deprecation warnings
        result = logrank_test(
            np.asarray(durations_a, dtype=float),
            np.asarray(durations_b, dtype=float),
            event_observed_A=np.asarray(events_a, dtype=bool),
            event_observed_B=np.asarray(events_b, dtype=bool),
        )
    return float(result.test_statistic), float(result.p_value)


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
            "Kaplan–Meier product-limit estimate (lifelines; events before censorings at tied "
            "times), pointwise log(−log) interval, median = smallest time with S(t) ≤ 0.5 "
            "(exact arithmetic) with the Brookmeyer–Crowley interval"
        ),
        caveats=tuple(caveats),
    )
