"""Outcomes of treated subjects vs matched external controls, aligned to each one's time zero.

- marker trajectories: every value from time zero to the end of the trajectory window, on days
  since time zero (nominal day = hours / 24 rounded); a linear mixed model on log values with
  arm × nominal day (baseline = day 0) gives the ratio of fold changes, treated vs controls;
- change from baseline at the pre-specified days (one value per subject in each day's window,
  the closest to the nominal day): ratio of geometric mean fold changes with a Welch t interval on
  the log scale (controls weighted; :mod:`celltrial.external.intervals`);
- mortality to the horizon (28 days): Kaplan–Meier per arm (lifelines; controls weighted by their
  matching weights), risk difference with Newcombe's hybrid score interval and risk ratio with
  Koopman's score interval (both valid with zero cells), and each arm's crude risk with an exact
  (Clopper–Pearson) interval.

Percentile-bootstrap intervals are not used: with 2–5 subjects per arm they cover 65–89 % instead
of 95 % (``benchmarks/bench_external_coverage.py``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from celltrial.external.balance import compute_weighted_median
from celltrial.external.intervals import (
    KOOPMAN_METHOD,
    NEWCOMBE_METHOD,
    WELCH_METHOD,
    compute_kish_n,
    compute_koopman_ratio,
    compute_log_ratio_interval,
    compute_newcombe_difference,
)
from celltrial.external.spec import TargetTrialSpec
from celltrial.frames import check_columns, lookup

DAY = pd.Timedelta(days=1)


# ---- alignment --------------------------------------------------------------------------------
def derive_aligned_observations(
    observations: pd.DataFrame,
    cohort: pd.DataFrame,
    *,
    spec: TargetTrialSpec,
    arm: str,
    markers: list[str] | None = None,
) -> pd.DataFrame:
    """Values of ``markers`` of the subjects in ``cohort`` on days since their time zero.

    ``cohort``: one row per subject with subject_id, time_zero and the baseline value columns of
    :mod:`~celltrial.external.eligibility` (named by marker). The baseline value becomes the
    day-0 row (``is_baseline``); every value after time zero up to the end of the trajectory
    window follows with ``hours`` and nominal ``day``. Returns columns subject_id, arm, marker,
    test, time, hours, day, value, is_baseline.
    """
    check_columns(cohort, ("subject_id", "time_zero"), what="cohort")
    markers = list(markers or spec.outcomes.trajectory_markers)
    last_day = spec.outcomes.trajectory_days[1]
    zero = cohort.set_index("subject_id")["time_zero"]
    parts = []
    for marker in markers:
        test = spec.test_of(marker, arm)
        rows = observations[
            (observations["test"] == test)
            & observations["subject_id"].isin(zero.index)
            & observations["value"].notna()
        ]
        t0 = pd.to_datetime(lookup(rows["subject_id"], zero), utc=True)
        times = pd.to_datetime(rows["time"], utc=True)
        hours = (times - t0) / pd.Timedelta(hours=1)
        keep = (hours > 0) & (hours <= (last_day + 0.5) * 24)
        post = pd.DataFrame(
            {
                "subject_id": rows["subject_id"].to_numpy(),
                "arm": arm,
                "marker": marker,
                "test": test,
                "time": times.array,  # (not to_numpy(): one Timestamp object per value)
                "hours": hours.to_numpy(float),
                "value": pd.to_numeric(rows["value"], errors="coerce").to_numpy(float),
                "is_baseline": False,
            }
        )[keep.to_numpy()]
        if marker in cohort.columns:
            base = cohort[cohort[marker].notna()]
            base_time = (
                pd.to_datetime(base[f"{marker}_time"], utc=True)
                if f"{marker}_time" in base.columns
                else pd.to_datetime(base["time_zero"], utc=True)
            )
            pre = pd.DataFrame(
                {
                    "subject_id": base["subject_id"].to_numpy(),
                    "arm": arm,
                    "marker": marker,
                    "test": test,
                    "time": base_time.array,
                    "hours": (
                        (base_time - pd.to_datetime(base["time_zero"], utc=True))
                        / pd.Timedelta(hours=1)
                    ).to_numpy(float),
                    "value": base[marker].to_numpy(float),
                    "is_baseline": True,
                }
            )
            parts.append(pre)
        parts.append(post)
    if not parts:
        return pd.DataFrame(
            columns=[
                "subject_id",
                "arm",
                "marker",
                "test",
                "time",
                "hours",
                "day",
                "value",
                "is_baseline",
            ]
        )
    out = pd.concat(parts, ignore_index=True)
    out["day"] = np.where(out["is_baseline"], 0, np.round(out["hours"].to_numpy(float) / 24.0))
    out["day"] = out["day"].astype(int)
    return out.sort_values(["marker", "arm", "subject_id", "hours"], kind="stable").reset_index(
        drop=True
    )


def derive_nominal_days(aligned: pd.DataFrame, days: dict[int, int]) -> pd.DataFrame:
    """Baseline rows (day 0) plus, per subject × marker × nominal day, the one value in the day's
    window (``day ± days[day]`` on the rounded ``day``) closest in hours to the nominal day
    (ties: the earlier). Adds ``nominal_day``; a value serves only the first window it is in.

    Windows use the rounded day so that a morning draw on study day 6 (5.8 days after a 10:00
    infusion) counts as day 6, as the study's visit schedule means it."""
    base = aligned[aligned["is_baseline"]].assign(nominal_day=0)
    post = aligned[~aligned["is_baseline"]]
    picked, taken = [], pd.Series(False, index=post.index)
    exact = post["hours"] / 24.0
    for day, half in sorted(days.items()):
        inside = (post["day"] >= day - half) & (post["day"] <= day + half) & ~taken
        rows = post[inside].assign(
            nominal_day=int(day), _gap=(exact[inside] - day).abs().to_numpy()
        )
        rows = rows.sort_values(["_gap", "hours"], kind="stable").drop_duplicates(
            ["subject_id", "arm", "marker"], keep="first"
        )
        taken.loc[rows.index] = True
        picked.append(rows.drop(columns="_gap"))
    return pd.concat([base, *picked], ignore_index=True)


# ---- mixed model -----------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class ArmModelResult:
    """log(value) ~ arm × nominal day + (1 | subject) for one marker (``summary``: one row/day).

    ``ratio`` is the ratio of fold changes from baseline, treated vs controls, at each day:
    exp(arm × day interaction); ``fold_treated``/``fold_control`` each arm's geometric-mean fold
    change from the model.
    """

    summary: pd.DataFrame
    marker: str
    fitted: bool
    n_treated: int
    n_control: int
    n_observations: int
    df: float
    method: str
    caveats: tuple[str, ...]

    @property
    def n(self) -> int:
        return self.n_treated + self.n_control


def summarize_arm_model(
    nominal: pd.DataFrame, *, marker: str, confidence: float = 0.95, reused: bool = False
) -> ArmModelResult:
    """Fit the arm × day mixed model on :func:`derive_nominal_days` rows of ``marker``.

    ``reused``: some controls serve several treated subjects (matching with replacement); the
    model counts them once, which the caveats say."""
    from statsmodels.regression.mixed_linear_model import MixedLM

    rows = nominal[(nominal["marker"] == marker) & (nominal["value"] > 0)].copy()
    n_t = int(rows.loc[rows["arm"] == "treated", "subject_id"].nunique())
    n_c = int(rows.loc[rows["arm"] == "external", "subject_id"].nunique())
    method = (
        "linear mixed model on natural-log values (statsmodels MixedLM, REML): nominal day "
        "(baseline = day 0, reference), arm and arm × day fixed effects, random intercept per "
        "subject; ratio of fold changes = exp(arm × day); Wald t intervals with between-within "
        "degrees of freedom"
    )
    empty = pd.DataFrame(
        columns=[
            "day",
            "n_treated",
            "n_control",
            "fold_treated",
            "fold_control",
            "ratio",
            "ci_low",
            "ci_high",
            "p_value",
        ]
    )
    both = rows.groupby("nominal_day")["arm"].nunique()
    days = sorted(int(d) for d in both.index if d != 0 and both[d] == 2)
    dropped = sorted(int(d) for d in both.index if d != 0 and both[d] < 2)
    rows = rows[rows["nominal_day"].isin([0, *days])]
    if n_t < 1 or n_c < 2 or not days:
        return ArmModelResult(
            empty,
            marker,
            False,
            n_t,
            n_c,
            len(rows),
            float("nan"),
            method,
            ("model not fitted: too few subjects or no post-baseline values",),
        )
    treated = (rows["arm"] == "treated").to_numpy(float)
    columns, names = [np.ones(len(rows)), treated], ["const", "arm"]
    for d in days:
        at = (rows["nominal_day"] == d).to_numpy(float)
        columns += [at, at * treated]
        names += [f"day{d}", f"arm:day{d}"]
    exog = np.column_stack(columns)
    groups = pd.factorize(rows["arm"] + "|" + rows["subject_id"].astype(str))[0]
    caveats: list[str] = []
    if dropped:
        caveats.append(
            f"day(s) {', '.join(map(str, dropped))} have values in one arm only and are left out"
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fit = MixedLM(np.log(rows["value"].to_numpy(float)), exog, groups=groups).fit(reml=True)
        except (np.linalg.LinAlgError, ValueError) as exc:
            return ArmModelResult(
                empty,
                marker,
                False,
                n_t,
                n_c,
                len(rows),
                float("nan"),
                method,
                (f"model not fitted: {exc}",),
            )
    for item in caught:
        caveats.append(f"model fitting warning: {item.message}")
    n_subjects = len(np.unique(groups))
    df = float(max(len(rows) - n_subjects - (exog.shape[1] - 2), 1))
    q = float(stats.t.ppf(0.5 + confidence / 2.0, df))
    params = pd.Series(np.asarray(fit.fe_params), index=names)
    se = pd.Series(np.asarray(fit.bse_fe), index=names)
    out = []
    for d in days:
        day_term, inter = f"day{d}", f"arm:day{d}"
        at = rows[rows["nominal_day"] == d]
        row = {
            "day": int(d),
            "n_treated": int((at["arm"] == "treated").sum()),
            "n_control": int((at["arm"] == "external").sum()),
            "fold_control": float(np.exp(params.get(day_term, np.nan))),
            "fold_treated": float(np.exp(params.get(day_term, np.nan) + params.get(inter, np.nan))),
        }
        if inter in params:
            b, s = params[inter], se[inter]
            row |= {
                "ratio": float(np.exp(b)),
                "ci_low": float(np.exp(b - q * s)),
                "ci_high": float(np.exp(b + q * s)),
                "p_value": float(2 * stats.t.sf(abs(b / s), df)) if s > 0 else float("nan"),
            }
        else:
            row |= {"ratio": np.nan, "ci_low": np.nan, "ci_high": np.nan, "p_value": np.nan}
        out.append(row)
    if n_t < 10:
        caveats.append(
            f"only {n_t} treated subjects: the treated fold changes rest on very few values"
        )
    if reused:
        caveats.append(
            "controls reused by matching with replacement enter once (the model is unweighted)"
        )
    return ArmModelResult(
        pd.DataFrame(out),
        marker,
        True,
        n_t,
        n_c,
        len(rows),
        df,
        method,
        tuple(dict.fromkeys(caveats)),
    )


# ---- change from baseline ---------------------------------------------------------------------
def _log_fold(nominal: pd.DataFrame, marker: str, day: int) -> pd.DataFrame:
    rows = nominal[nominal["marker"] == marker]
    base = rows[rows["nominal_day"] == 0].set_index(["arm", "subject_id"])["value"]
    at = rows[rows["nominal_day"] == day].set_index(["arm", "subject_id"])["value"]
    joined = pd.concat([base.rename("base"), at.rename("value")], axis=1, join="inner")
    joined = joined[(joined["base"] > 0) & (joined["value"] > 0)]
    joined["log_fold"] = np.log(joined["value"] / joined["base"])
    return joined.reset_index()


def summarize_changes(
    nominal: pd.DataFrame,
    weights: pd.Series,
    *,
    spec: TargetTrialSpec,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Per marker × pre-specified day: n and median fold change per arm, ratio of geometric mean
    fold changes (treated / controls, controls weighted) with a Welch t interval on the log scale
    (:func:`~celltrial.external.intervals.compute_log_ratio_interval`), its degrees of freedom
    and p-value, and the interval's name (``interval``)."""
    rows = []
    for marker in spec.outcomes.trajectory_markers:
        for day in sorted(spec.outcomes.change_days):
            folds = _log_fold(nominal, marker, day)
            t = folds.loc[folds["arm"] == "treated", "log_fold"].to_numpy(float)
            c_rows = folds[folds["arm"] == "external"]
            c = c_rows["log_fold"].to_numpy(float)
            w = c_rows["subject_id"].map(weights).fillna(1.0).to_numpy(float)
            row = {
                "marker": marker,
                "day": int(day),
                "n_treated": len(t),
                "n_control": len(c),
                "n_effective_control": compute_kish_n(w) if len(c) else 0.0,
                "median_fold_treated": float(np.exp(np.median(t))) if len(t) else np.nan,
                "median_fold_control": float(np.exp(compute_weighted_median(c, w)))
                if len(c)
                else np.nan,
                "ratio": np.nan,
                "ci_low": np.nan,
                "ci_high": np.nan,
                "df": np.nan,
                "p_value": np.nan,
                "interval": "not estimable: no values in one arm",
            }
            if len(t) and len(c):
                r = compute_log_ratio_interval(t, c, control_weights=w, confidence=confidence)
                row |= {"ratio": r.ratio, "ci_low": r.low, "ci_high": r.high}
                row |= {"df": r.df, "p_value": r.p_value}
                if np.isfinite(r.low):
                    row["interval"] = "Welch t, log scale"
                elif len(t) < 2:
                    row["interval"] = "not estimable: fewer than 2 treated subjects"
                elif r.n_effective <= 1.0 + 1e-9:
                    row["interval"] = "not estimable: fewer than 2 (effective) controls"
                else:
                    row["interval"] = "not estimable: no spread in either arm"
            rows.append(row)
    return pd.DataFrame(rows)


#: How :func:`summarize_changes` makes its interval (for methods sections).
CHANGE_METHOD = (
    f"ratio of geometric mean fold changes (treated / weighted controls) with a {WELCH_METHOD}"
)


# ---- mortality -------------------------------------------------------------------------------
def derive_survival_times(cohort: pd.DataFrame, *, spec: TargetTrialSpec) -> pd.DataFrame:
    """One row per subject: days from time zero to death (event) or censoring, to the horizon.

    Needs subject_id, arm, time_zero, died, discharged and ``records_end`` (last record; used
    when a subject has neither death nor discharge). Discharge censors, or with
    ``outcomes.discharge: alive`` counts as alive to the horizon.
    """
    check_columns(
        cohort,
        ("subject_id", "arm", "time_zero", "died", "discharged", "records_end"),
        what="cohort",
    )
    horizon = spec.outcomes.mortality_days
    t0 = pd.to_datetime(cohort["time_zero"], utc=True)
    died = (pd.to_datetime(cohort["died"], utc=True) - t0) / DAY
    discharged = (pd.to_datetime(cohort["discharged"], utc=True) - t0) / DAY
    records = (pd.to_datetime(cohort["records_end"], utc=True) - t0) / DAY
    event = died.notna() & (died <= horizon)
    if spec.outcomes.discharge == "alive":
        censor = np.where(discharged.notna(), horizon, records)
    else:
        censor = discharged.fillna(records)
    censor = np.minimum(pd.to_numeric(pd.Series(censor), errors="coerce").fillna(0.0), horizon)
    duration = np.where(event, died, censor)
    out = cohort[["subject_id", "arm"]].copy()
    out["duration"] = np.clip(np.asarray(duration, float), 0.0, horizon)
    out["event"] = event.to_numpy(bool)
    out["status"] = np.where(
        event,
        "died",
        np.where(
            np.asarray(censor) >= horizon,
            f"alive at day {horizon:g}",
            np.where(discharged.notna().to_numpy(), "censored at discharge", "records end"),
        ),
    )
    return out


def compute_weighted_kaplan_meier(
    durations: np.ndarray, events: np.ndarray, weights: np.ndarray | None = None
) -> pd.DataFrame:
    """Weighted Kaplan–Meier estimate (lifelines ``KaplanMeierFitter``): time, n_at_risk,
    n_events (weighted) and survival at each observed time.

    Events come before censorings at tied times (those censored at t are at risk at t). Equal
    unit weights give the ordinary Kaplan–Meier curve. lifelines' pointwise intervals are not
    kept: they ignore that matching weights are estimated.
    """
    t = np.asarray(durations, float)
    e = np.asarray(events, bool)
    w = np.ones_like(t) if weights is None else np.asarray(weights, float)
    if not t.size:
        return pd.DataFrame(columns=["time", "n_at_risk", "n_events", "survival"])
    fitter = _fit_kaplan_meier(t, e, w)
    table = fitter.event_table
    times = np.unique(t)
    at = table.reindex(times)
    survival = fitter.survival_function_.iloc[:, 0].reindex(times).to_numpy(float)
    return pd.DataFrame(
        {
            "time": times,
            "n_at_risk": at["at_risk"].to_numpy(float),
            "n_events": at["observed"].to_numpy(float),
            "survival": survival,
        }
    )


def _fit_kaplan_meier(t: np.ndarray, e: np.ndarray, w: np.ndarray):
    from lifelines import KaplanMeierFitter
    from lifelines.exceptions import StatisticalWarning

    with warnings.catch_warnings():
        # non-integer weights: lifelines warns that its variance is naive; it is not used
        warnings.simplefilter("ignore", StatisticalWarning)
        return KaplanMeierFitter().fit(t, event_observed=e, weights=w)


def compute_km_risk(durations, events, weights, horizon: float) -> float:
    """1 − S(horizon) of the (weighted) Kaplan–Meier curve (lifelines); NaN without subjects."""
    t = np.asarray(durations, float)
    if not t.size:
        return float("nan")
    table = compute_weighted_kaplan_meier(t, events, weights)
    return _risk_from_curve(table, horizon)


def _risk_from_curve(table: pd.DataFrame, horizon: float) -> float:
    before = table.loc[table["time"] <= horizon, "survival"]
    return float(1.0 - before.iloc[-1]) if len(before) else 0.0


def compute_effective_events(
    durations, events, weights, horizon: float, risk: float
) -> tuple[float, float]:
    """(events, n) to put a Kaplan–Meier risk into a two-proportion interval: ``n`` is Kish's
    effective number of subjects whose status at the horizon is known (an event by then, or
    followed to it), ``events = risk × n``. Without weights or censoring: the crude counts."""
    t = np.asarray(durations, float)
    e = np.asarray(events, bool)
    w = np.asarray(weights, float)
    known = (e & (t <= horizon)) | (t >= horizon)
    n = compute_kish_n(w[known])
    return (float(risk * n) if np.isfinite(risk) else float("nan")), n


def compute_clopper_pearson(events: int, n: int, *, confidence: float = 0.95):
    """Exact binomial (Clopper–Pearson) interval of a proportion."""
    alpha = 1 - confidence
    low = 0.0 if events == 0 else float(stats.beta.ppf(alpha / 2, events, n - events + 1))
    high = 1.0 if events == n else float(stats.beta.ppf(1 - alpha / 2, events + 1, n - events))
    return low, high


@dataclass(frozen=True, eq=False)
class MortalityResult:
    """Mortality to the horizon by arm: ``summary`` one row per arm; KM ``curves`` per arm.

    ``rd_interval`` / ``rr_interval`` name each interval, or say why it is not estimable."""

    summary: pd.DataFrame
    curves: dict[str, pd.DataFrame]
    times: pd.DataFrame
    horizon: float
    risk_difference: float
    rd_ci: tuple[float, float]
    risk_ratio: float
    rr_ci: tuple[float, float]
    n: int
    method: str
    caveats: tuple[str, ...]
    rd_interval: str = NEWCOMBE_METHOD
    rr_interval: str = KOOPMAN_METHOD


def summarize_mortality(
    times: pd.DataFrame,
    weights: pd.Series,
    *,
    spec: TargetTrialSpec,
    confidence: float = 0.95,
) -> MortalityResult:
    """Kaplan–Meier risk of death by the horizon per arm, risk difference (Newcombe hybrid score
    interval) and risk ratio (Koopman score interval) on effective counts
    (:func:`compute_effective_events`)."""
    horizon = spec.outcomes.mortality_days
    arms = {}
    for arm in ("treated", "external"):
        rows = times[times["arm"] == arm]
        w = (
            np.ones(len(rows))
            if arm == "treated"
            else rows["subject_id"].map(weights).fillna(1.0).to_numpy(float)
        )
        arms[arm] = (rows["duration"].to_numpy(float), rows["event"].to_numpy(bool), w)
    curves, summary, counts = {}, [], {}
    for arm, (d, e, w) in arms.items():
        table = compute_weighted_kaplan_meier(d, e, w)
        curves[arm] = table
        risk = _risk_from_curve(table, horizon) if len(d) else np.nan
        counts[arm] = compute_effective_events(d, e, w, horizon, risk)
        known = e | (d >= horizon)
        deaths, n_known = int(e.sum()), int(known.sum())
        low, high = (
            compute_clopper_pearson(deaths, n_known, confidence=confidence)
            if n_known
            else (np.nan, np.nan)
        )
        summary.append(
            {
                "arm": arm,
                "n": len(d),
                "weighted_n": float(w.sum()),
                "effective_n": counts[arm][1],
                "deaths": deaths,
                "censored_before_horizon": int((~known).sum()),
                "km_risk": risk,
                "crude_risk": deaths / n_known if n_known else np.nan,
                "crude_ci_low": low,
                "crude_ci_high": high,
            }
        )
    summary = pd.DataFrame(summary)
    risk = summary.set_index("arm")["km_risk"]
    rd = float(risk["treated"] - risk["external"])
    (x1, n1), (x2, n2) = counts["treated"], counts["external"]
    rd_ci = compute_newcombe_difference(x1, n1, x2, n2, confidence=confidence)
    rr_ci = compute_koopman_ratio(x1, n1, x2, n2, confidence=confidence)
    rd_interval, rr_interval = NEWCOMBE_METHOD, KOOPMAN_METHOD
    if not (n1 > 0 and n2 > 0):
        rd_interval = rr_interval = "not estimable: no subject with a known status in one arm"
        rr = float("nan")
    elif risk["external"] > 0:
        rr = float(risk["treated"] / risk["external"])
    elif risk["treated"] > 0:
        rr = float("nan")
        rr_interval = f"not estimable (no deaths among controls); {KOOPMAN_METHOD}: lower limit"
    else:
        rr = float("nan")
        rr_interval = "not estimable: no deaths in either arm"
    caveats = []
    n_t = len(arms["treated"][0])
    if n_t < 10:
        caveats.append(
            f"{n_t} treated subjects: the treated risk moves by {100 / max(n_t, 1):.0f} points "
            "per death; the risk difference and ratio intervals (score intervals, valid with "
            "zero cells) are correspondingly wide"
        )
    if (summary["censored_before_horizon"] > 0).any():
        caveats.append(
            "subjects censored before the horizon are not counted in the effective n of the "
            "risk difference and ratio intervals: those intervals are conservative"
        )
    if spec.outcomes.discharge == "censor":
        caveats.append(
            "discharge censors follow-up: patients discharged alive leave the risk set, which "
            "overstates mortality if discharged patients were at lower risk (they usually are); "
            "the sensitivity analysis counts discharged patients as alive to the horizon"
        )
    return MortalityResult(
        summary=summary,
        curves=curves,
        times=times,
        horizon=horizon,
        risk_difference=rd,
        rd_ci=(float(rd_ci[0]), float(rd_ci[1])),
        risk_ratio=rr,
        rr_ci=(float(rr_ci[0]), float(rr_ci[1])),
        n=len(times),
        method=(
            f"{horizon:g}-day mortality from time zero: Kaplan–Meier per arm (lifelines; matched "
            "controls weighted by their matching weights), risk = 1 − S(horizon); risk "
            f"difference with the {NEWCOMBE_METHOD} and risk ratio with the {KOOPMAN_METHOD}, "
            "both valid with zero cells, on effective counts (risk × Kish effective n of the "
            "subjects whose status at the horizon is known); crude risks with exact "
            "Clopper–Pearson intervals"
        ),
        caveats=tuple(caveats),
        rd_interval=rd_interval,
        rr_interval=rr_interval,
    )
