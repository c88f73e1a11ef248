"""Outcomes of treated subjects vs matched external controls, aligned to each one's time zero.

- marker trajectories: every value from time zero to the end of the trajectory window, on days
  since time zero (nominal day = hours / 24 rounded); a linear mixed model on log values with
  arm × nominal day (baseline = day 0) gives the ratio of fold changes, treated vs controls;
- change from baseline at the pre-specified days (one value per subject in each day's window,
  the closest to the nominal day), with a stratified bootstrap interval for the ratio of geometric
  mean fold changes;
- mortality to the horizon (28 days): Kaplan–Meier per arm (controls weighted by their matching
  weights), risk difference and risk ratio at the horizon with stratified bootstrap intervals,
  and each arm's crude risk with an exact (Clopper–Pearson) interval.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from celltrial.efficacy.survival import compute_kaplan_meier
from celltrial.external.balance import compute_weighted_median
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
        hours = (pd.to_datetime(rows["time"], utc=True) - t0) / pd.Timedelta(hours=1)
        keep = (hours > 0) & (hours <= (last_day + 0.5) * 24)
        post = pd.DataFrame(
            {
                "subject_id": rows["subject_id"].to_numpy(),
                "arm": arm,
                "marker": marker,
                "test": test,
                "time": pd.to_datetime(rows["time"], utc=True).to_numpy(),
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
                    "time": base_time.to_numpy(),
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
    fold changes (treated / controls, controls weighted) with a stratified bootstrap interval."""
    boot = spec.outcomes.bootstrap
    rng = np.random.default_rng(boot.seed)
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
                "median_fold_treated": float(np.exp(np.median(t))) if len(t) else np.nan,
                "median_fold_control": float(np.exp(compute_weighted_median(c, w)))
                if len(c)
                else np.nan,
                "ratio": np.nan,
                "ci_low": np.nan,
                "ci_high": np.nan,
            }
            if len(t) and len(c):
                row["ratio"] = float(np.exp(t.mean() - np.average(c, weights=w)))
                if len(t) > 1 and len(c) > 1:
                    i_t = rng.integers(0, len(t), size=(boot.resamples, len(t)))
                    i_c = rng.integers(0, len(c), size=(boot.resamples, len(c)))
                    diffs = t[i_t].mean(1) - (c[i_c] * w[i_c]).sum(1) / w[i_c].sum(1)
                    alpha = (1 - confidence) / 2
                    row["ci_low"], row["ci_high"] = np.exp(np.quantile(diffs, [alpha, 1 - alpha]))
            rows.append(row)
    return pd.DataFrame(rows)


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
    """Weighted product-limit estimate: time, n_at_risk, n_events (weighted), survival.

    Events come before censorings at tied times. Equal unit weights give the ordinary
    Kaplan–Meier curve (:func:`celltrial.efficacy.survival.compute_kaplan_meier`).
    """
    t = np.asarray(durations, float)
    e = np.asarray(events, bool)
    w = np.ones_like(t) if weights is None else np.asarray(weights, float)
    times = np.unique(t)
    at_risk = np.array([w[t >= x].sum() for x in times])
    deaths = np.array([w[(t == x) & e].sum() for x in times])
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(at_risk > 0, 1.0 - deaths / at_risk, 1.0)
    return pd.DataFrame(
        {"time": times, "n_at_risk": at_risk, "n_events": deaths, "survival": np.cumprod(factor)}
    )


def _risk_at(durations, events, weights, horizon: float) -> float:
    """1 − S(horizon) of the weighted product-limit curve, in O(n log n).

    Sorted by time with events before censorings at ties, the product over event rows of
    (1 − w_i / R_i), R_i the weight still at risk from row i on, telescopes within tied times
    to the Kaplan–Meier factor 1 − d / n.
    """
    t = np.asarray(durations, float)
    e = np.asarray(events, bool)
    w = np.asarray(weights, float)
    order = np.lexsort((~e, t))
    t, e, w = t[order], e[order], w[order]
    at_risk = np.cumsum(w[::-1])[::-1]
    use = e & (t <= horizon) & (at_risk > 0)
    return float(1.0 - np.prod(1.0 - w[use] / at_risk[use]))


def compute_clopper_pearson(events: int, n: int, *, confidence: float = 0.95):
    """Exact binomial (Clopper–Pearson) interval of a proportion."""
    alpha = 1 - confidence
    low = 0.0 if events == 0 else float(stats.beta.ppf(alpha / 2, events, n - events + 1))
    high = 1.0 if events == n else float(stats.beta.ppf(1 - alpha / 2, events + 1, n - events))
    return low, high


@dataclass(frozen=True, eq=False)
class MortalityResult:
    """Mortality to the horizon by arm: ``summary`` one row per arm; KM ``curves`` per arm."""

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


def summarize_mortality(
    times: pd.DataFrame,
    weights: pd.Series,
    *,
    spec: TargetTrialSpec,
    confidence: float = 0.95,
) -> MortalityResult:
    """Kaplan–Meier risk of death by the horizon per arm, risk difference and ratio."""
    horizon = spec.outcomes.mortality_days
    boot = spec.outcomes.bootstrap
    arms = {}
    for arm in ("treated", "external"):
        rows = times[times["arm"] == arm]
        w = (
            np.ones(len(rows))
            if arm == "treated"
            else rows["subject_id"].map(weights).fillna(1.0).to_numpy(float)
        )
        arms[arm] = (rows["duration"].to_numpy(float), rows["event"].to_numpy(bool), w)
    curves, summary = {}, []
    for arm, (d, e, w) in arms.items():
        if len(d):
            table = (
                compute_kaplan_meier(d, e, confidence=confidence)
                if arm == "treated"
                else compute_weighted_kaplan_meier(d, e, w)
            )
        else:
            table = pd.DataFrame(columns=["time", "n_at_risk", "n_events", "survival"])
        curves[arm] = table
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
                "deaths": deaths,
                "censored_before_horizon": int((~known).sum()),
                "km_risk": _risk_at(d, e, w, horizon) if len(d) else np.nan,
                "crude_risk": deaths / n_known if n_known else np.nan,
                "crude_ci_low": low,
                "crude_ci_high": high,
            }
        )
    summary = pd.DataFrame(summary)
    risk = summary.set_index("arm")["km_risk"]
    rd = float(risk["treated"] - risk["external"])
    rr = float(risk["treated"] / risk["external"]) if risk["external"] > 0 else np.nan
    rng = np.random.default_rng(boot.seed)
    draws_rd, draws_rr = [], []
    (dt, et, wt), (dc, ec, wc) = arms["treated"], arms["external"]
    if len(dt) > 1 and len(dc) > 1:
        for _ in range(boot.resamples):
            it = rng.integers(0, len(dt), len(dt))
            ic = rng.integers(0, len(dc), len(dc))
            r_t = _risk_at(dt[it], et[it], wt[it], horizon)
            r_c = _risk_at(dc[ic], ec[ic], wc[ic], horizon)
            draws_rd.append(r_t - r_c)
            draws_rr.append(r_t / r_c if r_c > 0 else np.nan)
    alpha = (1 - confidence) / 2
    rd_ci = tuple(np.quantile(draws_rd, [alpha, 1 - alpha])) if draws_rd else (np.nan, np.nan)
    finite_rr = np.asarray(draws_rr, float)
    finite_rr = finite_rr[np.isfinite(finite_rr)]
    rr_ci = (
        tuple(np.quantile(finite_rr, [alpha, 1 - alpha])) if finite_rr.size else (np.nan, np.nan)
    )
    caveats = []
    n_t = len(dt)
    if n_t < 10:
        caveats.append(
            f"{n_t} treated subjects: the treated risk moves by {100 / max(n_t, 1):.0f} points "
            "per death; the bootstrap interval cannot show the uncertainty of a 0 % or 100 % "
            "treated risk (see the exact interval of each arm's crude risk)"
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
            f"{horizon:g}-day mortality from time zero: Kaplan–Meier per arm (matched controls "
            "weighted by their matching weights), risk = 1 − S(horizon); risk difference and "
            f"ratio with stratified percentile bootstrap intervals ({boot.resamples} resamples, "
            f"seed {boot.seed}); crude risks with exact Clopper–Pearson intervals"
        ),
        caveats=tuple(caveats),
    )
