"""Covariate balance before and after matching: SMD, variance ratios and a love plot.

Standardised mean difference (Austin 2009): ``(mean_t − mean_c) / sqrt((s²_t + s²_c) / 2)``,
``p(1 − p)`` as the variance of a 0/1 variable. The denominator is computed once, on the samples
before matching, and kept for the matched samples, so a change in SMD is a change in the means and
not in the yardstick. Matched controls carry their matching weights (weighted means, medians and
variances with the reliability-weights correction). Variance ratio: s²_t / s²_c (continuous only).
Target (Austin 2009, Stat Med 28:3083): |SMD| < 0.1 **and** a variance ratio between 0.5 and 2
(continuous variables; a 0/1 variable has no variance ratio and is judged on its SMD). The
thresholds are data (``balance.smd_below`` and ``balance.variance_ratio`` in the target-trial
specification).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from celltrial.external.matching import MatchingResult
from celltrial.frames import check_columns
from celltrial.report.figures import PALETTE

SMD_TARGET = 0.1
VARIANCE_RATIO_RANGE = (0.5, 2.0)

LABELS = {
    "age": "Age (years)",
    "male": "Male sex",
    "days_since_admission": "Days since admission",
}


def variable_label(name: str) -> str:
    if name in LABELS:
        return LABELS[name]
    if name.startswith("log_"):
        return f"log {name[4:]}"
    return name


def _is_binary(values: np.ndarray) -> bool:
    finite = values[np.isfinite(values)]
    return finite.size > 0 and bool(np.isin(finite, (0.0, 1.0)).all())


def compute_weighted_mean_var(values: np.ndarray, weights: np.ndarray | None = None):
    """Weighted mean and variance (reliability weights; equal weights give ddof = 1)."""
    x = np.asarray(values, float)
    w = np.ones_like(x) if weights is None else np.asarray(weights, float)
    keep = np.isfinite(x) & (w > 0)
    x, w = x[keep], w[keep]
    if x.size == 0:
        return float("nan"), float("nan")
    total = w.sum()
    mean = float((w * x).sum() / total)
    denominator = total - (w * w).sum() / total
    var = float((w * (x - mean) ** 2).sum() / denominator) if denominator > 0 else float("nan")
    return mean, var


def compute_weighted_median(values: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Median of weighted values (the midpoint where the cumulative weight crosses one half)."""
    x = np.asarray(values, float)
    w = np.ones_like(x) if weights is None else np.asarray(weights, float)
    keep = np.isfinite(x) & (w > 0)
    x, w = x[keep], w[keep]
    if x.size == 0:
        return float("nan")
    order = np.argsort(x, kind="stable")
    x, w = x[order], w[order]
    cumulative = np.cumsum(w) / w.sum()
    low = x[np.searchsorted(cumulative, 0.5 - 1e-12)]
    high = x[np.searchsorted(cumulative, 0.5 + 1e-12)]
    return float((low + high) / 2.0)


def compute_smd(
    treated: np.ndarray,
    controls: np.ndarray,
    *,
    control_weights: np.ndarray | None = None,
    scale: float | None = None,
) -> float:
    """Standardised mean difference; ``scale`` (the SD yardstick) defaults to the pooled SD."""
    t, c = np.asarray(treated, float), np.asarray(controls, float)
    mean_t = compute_weighted_mean_var(t)[0]
    mean_c = compute_weighted_mean_var(c, control_weights)[0]
    if scale is None:
        scale = compute_smd_scale(t, c)
    return float((mean_t - mean_c) / scale) if scale and np.isfinite(scale) else float("nan")


def compute_smd_scale(treated: np.ndarray, controls: np.ndarray) -> float:
    """sqrt((s²_t + s²_c) / 2), with p(1 − p) for 0/1 variables."""
    t, c = np.asarray(treated, float), np.asarray(controls, float)
    if _is_binary(np.r_[t, c]):
        p_t, p_c = np.nanmean(t), np.nanmean(c)
        return float(np.sqrt((p_t * (1 - p_t) + p_c * (1 - p_c)) / 2.0))
    var_t = compute_weighted_mean_var(t)[1]
    var_c = compute_weighted_mean_var(c)[1]
    return float(np.sqrt((var_t + var_c) / 2.0))


def compute_variance_ratio(
    treated: np.ndarray, controls: np.ndarray, *, control_weights: np.ndarray | None = None
) -> float:
    """s²_treated / s²_controls (NaN for 0/1 variables or a zero control variance)."""
    t, c = np.asarray(treated, float), np.asarray(controls, float)
    if _is_binary(np.r_[t, c]):
        return float("nan")
    var_t = compute_weighted_mean_var(t)[1]
    var_c = compute_weighted_mean_var(c, control_weights)[1]
    return float(var_t / var_c) if var_c and np.isfinite(var_c) else float("nan")


def meets_balance_target(
    smd: float,
    variance_ratio: float,
    *,
    smd_below: float = SMD_TARGET,
    ratio_range: tuple[float, float] = VARIANCE_RATIO_RANGE,
) -> bool:
    """|SMD| < ``smd_below`` and the variance ratio within ``ratio_range`` (edges included);
    a variance ratio that is not defined (0/1 variables) is not judged."""
    if not np.isfinite(smd) or abs(smd) >= smd_below:
        return False
    if not np.isfinite(variance_ratio):
        return True
    low, high = ratio_range
    return bool(low <= variance_ratio <= high)


def balance_rule_text(
    smd_below: float = SMD_TARGET, ratio_range: tuple[float, float] = VARIANCE_RATIO_RANGE
) -> str:
    """The balance target in words."""
    return (
        f"|SMD| < {smd_below:g} and variance ratio {ratio_range[0]:g}–{ratio_range[1]:g} "
        "(0/1 variables: SMD only; Austin 2009)"
    )


@dataclass(frozen=True, eq=False)
class BalanceResult:
    """One row per variable × sample ("before" / "after" matching) in ``summary``."""

    summary: pd.DataFrame
    variables: tuple[str, ...]
    balanced: bool
    n_treated_before: int
    n_controls_before: int
    n_treated_after: int
    n_controls_after: int
    method: str
    caveats: tuple[str, ...]
    #: The balance target in words, and its SMD threshold.
    rule: str = ""
    smd_below: float = SMD_TARGET

    @property
    def n(self) -> int:
        return self.n_treated_after + self.n_controls_after


def summarize_balance(
    baseline: pd.DataFrame,
    matching: MatchingResult,
    *,
    variables: tuple[str, ...] | list[str],
    smd_below: float = SMD_TARGET,
    ratio_range: tuple[float, float] = VARIANCE_RATIO_RANGE,
) -> BalanceResult:
    """Balance of ``variables`` between eligible arms (before) and matched sets (after), each
    judged by :func:`meets_balance_target` (``smd_below``, ``ratio_range``)."""
    rule = balance_rule_text(smd_below, ratio_range)
    check_columns(baseline, ("subject_id", "arm", "eligible", *variables), what="baseline")
    eligible = baseline[baseline["eligible"].astype(bool)]
    before_t = eligible[eligible["arm"] == "treated"]
    before_c = eligible[eligible["arm"] == "external"]
    matched = matching.matched
    after_t = matched[matched["arm"] == "treated"]
    after_c = matched[matched["arm"] == "external"]
    rows = []
    for name in variables:
        scale = compute_smd_scale(before_t[name].to_numpy(float), before_c[name].to_numpy(float))
        samples = (
            ("before", before_t, before_c, None),
            ("after", after_t, after_c, after_c["weight"].to_numpy(float)),
        )
        for sample, t_rows, c_rows, weights in samples:
            t = t_rows[name].to_numpy(float)
            c = c_rows[name].to_numpy(float)
            smd = compute_smd(t, c, control_weights=weights, scale=scale)
            ratio = compute_variance_ratio(t, c, control_weights=weights)
            c_weights = np.ones(len(c)) if weights is None else weights
            rows.append(
                {
                    "variable": name,
                    "sample": sample,
                    "n_treated": int(np.isfinite(t).sum()),
                    "n_control": int(np.isfinite(c).sum()),
                    "mean_treated": compute_weighted_mean_var(t)[0],
                    "mean_control": compute_weighted_mean_var(c, c_weights)[0],
                    "median_treated": compute_weighted_median(t),
                    "median_control": compute_weighted_median(c, c_weights),
                    "smd": smd,
                    "variance_ratio": ratio,
                    "meets_target": meets_balance_target(
                        smd, ratio, smd_below=smd_below, ratio_range=ratio_range
                    ),
                }
            )
    summary = pd.DataFrame(rows)
    after = summary[summary["sample"] == "after"]
    balanced = bool(len(after)) and bool(after["meets_target"].all())
    caveats = []
    if not balanced:
        failing = ", ".join(after.loc[~after["meets_target"], "variable"])
        caveats.append(
            f"balance target ({rule}) is NOT met after matching for: "
            f"{failing or 'all (no matched sets)'}"
        )
    if len(after_t) < 10:
        caveats.append(
            f"with {len(after_t)} treated subjects the SMDs and variance ratios are themselves "
            "very noisy: one subject can move an SMD by more than 0.3"
        )
    missing = after[after["n_treated"] < len(after_t)]
    if len(missing):
        caveats.append(
            "some variables are missing at time zero in matched subjects: "
            + ", ".join(missing["variable"])
        )
    return BalanceResult(
        summary=summary,
        variables=tuple(variables),
        balanced=balanced,
        n_treated_before=len(before_t),
        n_controls_before=len(before_c),
        n_treated_after=len(after_t),
        n_controls_after=len(after_c),
        method=(
            "standardised mean differences (denominator: pooled SD of the samples before "
            "matching, p(1 − p) for 0/1 variables) and variance ratios; matched controls "
            f"weighted by their matching weights; balance target: {rule}"
        ),
        caveats=tuple(caveats),
        rule=rule,
        smd_below=smd_below,
    )


def render_love_plot(balance: BalanceResult) -> Figure:
    """Love plot: SMD of each variable before (open) and after (filled) matching."""
    table = balance.summary
    names = list(balance.variables)
    figure = Figure(figsize=(6.4, 0.45 * len(names) + 1.4), layout="constrained")
    axes = figure.subplots()
    positions = np.arange(len(names))[::-1]
    for sample, style in (
        ("before", {"facecolors": "white", "edgecolors": PALETTE[1], "marker": "o"}),
        ("after", {"color": PALETTE[0], "marker": "D"}),
    ):
        rows = table[table["sample"] == sample].set_index("variable").reindex(names)
        axes.scatter(
            rows["smd"].to_numpy(float),
            positions,
            s=42,
            zorder=3,
            linewidths=1.5,
            label=f"{sample} matching",
            **style,
        )
    for x in (-balance.smd_below, balance.smd_below):
        axes.axvline(x, color="0.35", linestyle="--", linewidth=1)
    axes.axvline(0, color="black", linewidth=0.8)
    axes.set_yticks(positions, [variable_label(n) for n in names])
    axes.set_xlabel("Standardised mean difference (treated − controls)")
    limit = np.nanmax(np.abs(table["smd"].to_numpy(float))) if len(table) else 0.5
    limit = max(0.5, float(limit) * 1.1) if np.isfinite(limit) else 0.5
    axes.set_xlim(-limit, limit)
    axes.grid(axis="y", color="0.92")
    axes.legend(loc="lower right", fontsize=8, frameon=False)
    axes.set_title(
        f"Covariate balance ({balance.n_treated_after} treated, "
        f"{balance.n_controls_after} matched controls)",
        fontsize=10,
    )
    return figure
