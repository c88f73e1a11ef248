"""Matching eligible external controls to treated subjects.

Exact matching on the requested strata (sex, age band), then greedy nearest-neighbour matching on
a Mahalanobis distance over the matching variables (log baseline markers, age…) or on the logit
of a logistic propensity score; 1:k, with or without replacement, within a caliper. Treated
subjects without an acceptable control are listed with the reason, never silently dropped.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from celltrial.errors import DataError
from celltrial.external.spec import TargetTrialSpec
from celltrial.frames import check_columns

PAIR_COLUMNS = ("treated_id", "control_id", "match_rank", "distance")


def compute_mahalanobis(treated: np.ndarray, controls: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """(n_treated, n_controls) Mahalanobis distances ``sqrt((x − y)' S⁻¹ (x − y))``."""
    treated = np.atleast_2d(np.asarray(treated, float))
    controls = np.atleast_2d(np.asarray(controls, float))
    inverse = np.linalg.pinv(np.atleast_2d(cov))
    # whiten once: ||L'(x − y)|| with L L' = S⁻¹ (eigendecomposition: S⁻¹ may be semi-definite)
    values, vectors = np.linalg.eigh((inverse + inverse.T) / 2.0)
    root = vectors * np.sqrt(np.clip(values, 0.0, None))
    a, b = treated @ root, controls @ root
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.clip(squared, 0.0, None))


def compute_pooled_covariance(treated: np.ndarray, controls: np.ndarray) -> np.ndarray:
    """Pooled within-arm covariance ((n_t−1)S_t + (n_c−1)S_c) / (n_t + n_c − 2)."""
    parts, dfs = [], []
    for x in (np.atleast_2d(treated), np.atleast_2d(controls)):
        if len(x) >= 2:
            parts.append(np.atleast_2d(np.cov(x, rowvar=False)) * (len(x) - 1))
            dfs.append(len(x) - 1)
    if not dfs:
        raise DataError("matching needs at least two subjects in one arm to estimate a covariance")
    return sum(parts) / sum(dfs)


def compute_matches(
    distance: np.ndarray, *, ratio: int, replace: bool, caliper: float | None = None
) -> pd.DataFrame:
    """Greedy nearest-neighbour matching on a (n_treated, n_controls) distance matrix.

    ``inf`` marks forbidden pairs (other exact-match stratum). Treated subjects are served
    hardest first (largest distance to their nearest allowed control; ties by index), one control
    per round for ``ratio`` rounds; without replacement a control is used once. Pairs beyond
    ``caliper`` are never made. Ties among controls go to the lower index. Returns the columns
    treated_index, control_index, match_rank (1..ratio) and distance.
    """
    distance = np.array(distance, dtype=float, copy=True)
    if caliper is not None:
        distance[distance > caliper] = np.inf
    n_t, n_c = distance.shape
    nearest = distance.min(axis=1) if n_c else np.full(n_t, np.inf)
    # hardest first; treated without any allowed control go last (they get nothing anyway)
    key = np.where(np.isfinite(nearest), nearest, -np.inf)
    order = sorted(range(n_t), key=lambda i: (-key[i], i))
    used = np.zeros(n_c, dtype=bool)
    rows: list[tuple[int, int, int, float]] = []
    if replace:
        for i in order:
            allowed = np.flatnonzero(np.isfinite(distance[i]))
            ranked = allowed[np.lexsort((allowed, distance[i, allowed]))][:ratio]
            rows += [(i, int(j), r + 1, float(distance[i, j])) for r, j in enumerate(ranked)]
    else:
        for rank in range(1, ratio + 1):
            for i in order:
                if rank > 1 and sum(1 for row in rows if row[0] == i) < rank - 1:
                    continue  # fell short in an earlier round
                candidates = np.where(used, np.inf, distance[i])
                if not n_c or not np.isfinite(candidates).any():
                    continue
                j = int(np.argmin(candidates))  # first index among ties
                used[j] = True
                rows.append((i, j, rank, float(distance[i, j])))
    frame = pd.DataFrame(rows, columns=["treated_index", "control_index", "match_rank", "distance"])
    return frame.sort_values(["treated_index", "match_rank"], kind="stable").reset_index(drop=True)


@dataclass(frozen=True, eq=False)
class MatchingResult:
    """Matched sets: ``summary`` has one row per treated–control pair (:data:`PAIR_COLUMNS`).

    ``matched`` holds the baseline rows of every matched subject once, with ``weight`` (1 for
    treated; for a control the sum over its treated of 1 / that treated's number of controls) and
    ``n_uses`` (how many treated it serves). ``unmatched`` lists treated subjects without a
    control and why.
    """

    summary: pd.DataFrame
    matched: pd.DataFrame
    unmatched: pd.DataFrame
    distance_name: str
    ratio: int
    replace: bool
    caliper: float | None
    n_treated: int
    n_matched_treated: int
    n_controls_eligible: int
    n_controls_matched: int
    method: str
    caveats: tuple[str, ...]

    @property
    def n(self) -> int:
        return self.n_matched_treated + self.n_controls_matched


def _exact_allowed(treated: pd.DataFrame, controls: pd.DataFrame, columns) -> np.ndarray:
    allowed = np.ones((len(treated), len(controls)), dtype=bool)
    for column in columns:
        t = treated[column].astype(object).to_numpy()
        c = controls[column].astype(object).to_numpy()
        same = t[:, None] == c[None, :]
        known = pd.notna(t)[:, None] & pd.notna(c)[None, :]
        allowed &= same & known
    return allowed


def _propensity(
    treated: np.ndarray, controls: np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Logit of a logistic propensity score for each arm (statsmodels), with caveats."""
    import statsmodels.api as sm

    x = np.vstack([treated, controls])
    y = np.r_[np.ones(len(treated)), np.zeros(len(controls))]
    exog = sm.add_constant(x, has_constant="add")
    caveats = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fit = sm.Logit(y, exog).fit(disp=0, maxiter=200)
            linear = exog @ np.asarray(fit.params)
        except Exception as exc:
            caveats.append(f"propensity model failed ({type(exc).__name__}: {exc})")
            return np.array([]), np.array([]), caveats
    if any("separation" in str(w.message).lower() for w in caught) or not np.all(
        np.isfinite(linear)
    ):
        caveats.append("propensity model shows (quasi-)separation: scores are unreliable")
    if len(treated) < 10 * x.shape[1]:
        caveats.append(
            f"propensity model with {len(treated)} treated subjects and {x.shape[1]} variables: "
            "fewer than 10 treated per variable, the score is poorly estimated"
        )
    return linear[: len(treated)], linear[len(treated) :], caveats


def summarize_matching(
    baseline: pd.DataFrame,
    *,
    spec: TargetTrialSpec,
    ratio: int | None = None,
    replace: bool | None = None,
    caliper: float | None = ...,  # type: ignore[assignment]
    method: str | None = None,
    exclude_treated: tuple[str, ...] = (),
    variables: tuple[str, ...] | list[str] | None = None,
) -> MatchingResult:
    """Match eligible controls to eligible treated subjects of ``baseline`` (both arms' rows).

    ``baseline`` is the concatenation of :func:`derive_treated_eligibility` and
    :func:`derive_control_landmarks` frames; only ``eligible`` rows take part. Options default to
    ``spec.matching``; ``caliper=None`` means no caliper. ``exclude_treated`` leaves treated
    subjects out (leave-one-out sensitivity); ``variables`` replaces the matching variables
    (e.g. adding days since admission).
    """
    check_columns(baseline, ("subject_id", "arm", "eligible"), what="baseline")
    m = spec.matching
    ratio = m.ratio if ratio is None else int(ratio)
    replace = m.replace if replace is None else bool(replace)
    caliper = m.caliper if caliper is ... else caliper
    method = method or m.method
    variables = list(m.variables if variables is None else dict.fromkeys(variables))
    exact = ["sex" if e == "sex" else "age_band" for e in m.exact]
    check_columns(baseline, [*variables, *exact], what="baseline")
    rows = baseline[baseline["eligible"].astype(bool)]
    treated = rows[(rows["arm"] == "treated") & ~rows["subject_id"].isin(exclude_treated)]
    controls_all = rows[rows["arm"] == "external"]
    complete_t = treated[variables].notna().all(axis=1).to_numpy()
    complete_c = controls_all[variables].notna().all(axis=1).to_numpy()
    controls = controls_all[complete_c].reset_index(drop=True)
    usable = treated[complete_t].reset_index(drop=True)
    caveats: list[str] = []
    if (~complete_c).sum():
        caveats.append(
            f"{int((~complete_c).sum())} eligible control(s) lack a matching variable "
            f"({', '.join(variables)}) at time zero and could not be matched"
        )
    xt = usable[variables].to_numpy(float)
    xc = controls[variables].to_numpy(float)
    distance_name = "Mahalanobis distance"
    distance = None
    if method == "propensity" and len(usable) and len(controls):
        lt, lc, notes = _propensity(xt, xc)
        caveats += notes
        if len(lt):
            spread = np.r_[lt, lc] if len(lt) < 2 else None
            sd = (
                float(np.std(spread, ddof=1))
                if spread is not None
                else float(np.sqrt((np.var(lt, ddof=1) + np.var(lc, ddof=1)) / 2.0))
            )
            distance = np.abs(lt[:, None] - lc[None, :]) / sd
            distance_name = "difference in logit propensity (pooled SDs)"
        else:
            caveats.append("fell back to Mahalanobis matching")
    if distance is None:
        if len(usable) and len(controls) > 1:
            distance = compute_mahalanobis(xt, xc, compute_pooled_covariance(xt, xc))
        else:
            distance = np.full((len(usable), len(controls)), np.inf)
    allowed = _exact_allowed(usable, controls, exact)
    distance = np.where(allowed, distance, np.inf)
    pairs = compute_matches(distance, ratio=ratio, replace=replace, caliper=caliper)

    summary = pd.DataFrame(
        {
            "treated_id": usable["subject_id"].to_numpy()[pairs["treated_index"].to_numpy(int)],
            "control_id": controls["subject_id"].to_numpy()[pairs["control_index"].to_numpy(int)],
            "match_rank": pairs["match_rank"].to_numpy(int),
            "distance": pairs["distance"].to_numpy(float),
        }
    )
    unmatched = _unmatched(
        treated, complete_t, usable, distance, allowed, pairs, caliper, variables
    )
    per_treated = summary.groupby("treated_id")["control_id"].transform("size")
    weights = (1.0 / per_treated).groupby(summary["control_id"]).sum()
    uses = summary.groupby("control_id").size()
    matched_t = usable[usable["subject_id"].isin(summary["treated_id"])].assign(
        weight=1.0, n_uses=1
    )
    matched_c = controls[controls["subject_id"].isin(weights.index)].copy()
    matched_c["weight"] = matched_c["subject_id"].map(weights).to_numpy(float)
    matched_c["n_uses"] = matched_c["subject_id"].map(uses).to_numpy(int)
    matched = pd.concat([matched_t, matched_c], ignore_index=True)
    short = summary.groupby("treated_id").size()
    if (short < ratio).any():
        caveats.append(
            f"{int((short < ratio).sum())} treated subject(s) got fewer than {ratio} controls"
        )
    if len(unmatched):
        caveats.append(
            f"{len(unmatched)} of {len(treated)} eligible treated subject(s) have no acceptable "
            "control and are left out of the comparison: " + ", ".join(unmatched["treated_id"])
        )
    if replace and (uses > 1).any():
        caveats.append(
            f"{int((uses > 1).sum())} control(s) serve several treated subjects (matching with "
            "replacement): they are weighted, and intervals that ignore the reuse are too narrow"
        )
    method_text = (
        f"1:{ratio} greedy nearest-neighbour matching {'with' if replace else 'without'} "
        f"replacement on the {distance_name} over {', '.join(variables)}"
        + (
            " (pooled within-arm covariance)"
            if distance_name.startswith("Mahalanobis")
            else " (logistic regression, statsmodels)"
        )
        + (f", exact on {', '.join(m.exact)}" if exact else "")
        + (f", caliper {caliper:g}" if caliper is not None else ", no caliper")
        + "; hardest-to-match treated subject first"
    )
    return MatchingResult(
        summary=summary,
        matched=matched,
        unmatched=unmatched,
        distance_name=distance_name,
        ratio=ratio,
        replace=replace,
        caliper=caliper,
        n_treated=len(treated),
        n_matched_treated=int(summary["treated_id"].nunique()),
        n_controls_eligible=len(controls_all),
        n_controls_matched=int(summary["control_id"].nunique()),
        method=method_text,
        caveats=tuple(caveats),
    )


def _unmatched(
    treated: pd.DataFrame,
    complete: np.ndarray,
    usable: pd.DataFrame,
    distance: np.ndarray,
    allowed: np.ndarray,
    pairs: pd.DataFrame,
    caliper: float | None,
    variables: list[str],
) -> pd.DataFrame:
    rows = []
    for code in treated.loc[~complete, "subject_id"]:
        row = treated[treated["subject_id"] == code].iloc[0]
        missing = [v for v in variables if pd.isna(row[v])]
        rows.append({"treated_id": code, "reason": f"missing {', '.join(missing)} at time zero"})
    got = set(pairs["treated_index"])
    for i, code in enumerate(usable["subject_id"]):
        if i in got:
            continue
        if not allowed[i].any():
            reason = "no eligible control in the same exact-match stratum"
        else:
            nearest = float(np.min(distance[i][allowed[i]]))
            if caliper is not None and nearest > caliper:
                reason = f"nearest control at {nearest:.2f} is beyond the caliper {caliper:g}"
            else:
                reason = "every control within the caliper was already used"
        rows.append({"treated_id": code, "reason": reason})
    return pd.DataFrame(rows, columns=["treated_id", "reason"])
