"""Sensitivity of the external comparison: E-values and re-analyses under other choices.

E-values (VanderWeele & Ding, Ann Intern Med 2017;167:268-274): the minimum strength of
association, on the risk-ratio scale, that an unmeasured confounder would need with both the
treatment and the outcome, above the measured covariates, to explain away an estimate.
``E = RR + sqrt(RR × (RR − 1))`` for RR ≥ 1 (RR < 1: use 1/RR). Odds and hazard ratios are first
turned into approximate risk ratios (rare outcome, < 15 %: as they are; common: OR → sqrt(OR),
HR → (1 − 0.5^sqrt(HR)) / (1 − 0.5^sqrt(1/HR))); a standardised mean difference d into
RR ≈ exp(0.91 d) with the interval exp(0.91 d ± 1.78 SE). The E-value of the interval is that of
the limit closer to 1, or 1 when the interval includes 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from celltrial.errors import CelltrialError
from celltrial.external.matching import MatchingResult, summarize_matching
from celltrial.external.spec import TargetTrialSpec

KINDS = ("RR", "OR", "HR", "SMD")


def compute_e_value_rr(rr: float) -> float:
    """E-value of a risk ratio (either direction); 1 at RR = 1, NaN for non-positive input."""
    if not np.isfinite(rr) or rr <= 0:
        return float("nan")
    rr = rr if rr >= 1 else 1.0 / rr
    return float(rr + np.sqrt(rr * (rr - 1.0)))


def _to_rr(value: float, kind: str, rare: bool) -> float:
    if not np.isfinite(value):
        return float("nan")
    if kind == "RR" or (kind in ("OR", "HR") and rare):
        return value
    if kind == "OR":
        return float(np.sqrt(value))
    if kind == "HR":
        return float((1 - 0.5 ** np.sqrt(value)) / (1 - 0.5 ** np.sqrt(1.0 / value)))
    return float(np.exp(0.91 * value))  # SMD


@dataclass(frozen=True)
class EValue:
    estimate: float
    kind: str
    rr: float
    point: float
    ci_limit: float


def compute_e_value(
    estimate: float,
    *,
    kind: str = "RR",
    ci: tuple[float, float] | None = None,
    rare: bool = True,
    se: float | None = None,
) -> EValue:
    """E-value of ``estimate`` (and of its interval) on the scale ``kind`` (RR, OR, HR, SMD).

    For SMD give ``se`` (the interval is exp(0.91 d ± 1.78 SE)) or ``ci`` on the d scale.
    ``rare`` says whether the outcome is rare (< 15 %) for OR and HR.
    """
    if kind not in KINDS:
        raise CelltrialError(f"E-value kind must be one of {', '.join(KINDS)}, got {kind!r}")
    rr = _to_rr(estimate, kind, rare)
    if kind == "SMD" and se is not None:
        limits = (
            float(np.exp(0.91 * estimate - 1.78 * se)),
            float(np.exp(0.91 * estimate + 1.78 * se)),
        )
    elif ci is not None:
        limits = (_to_rr(ci[0], kind, rare), _to_rr(ci[1], kind, rare))
    else:
        limits = None
    ci_limit = float("nan")
    if limits is not None and np.isfinite(rr):
        low, high = min(limits), max(limits)
        inside = low <= 1.0 <= high
        ci_limit = 1.0 if inside else compute_e_value_rr(low if rr > 1 else high)
    return EValue(
        estimate=float(estimate), kind=kind, rr=rr, point=compute_e_value_rr(rr), ci_limit=ci_limit
    )


def compute_smd_and_se(treated: np.ndarray, controls: np.ndarray) -> tuple[float, float]:
    """Cohen's d (pooled SD) and its large-sample SE sqrt(1/n1 + 1/n2 + d² / (2(n1 + n2)))."""
    t, c = np.asarray(treated, float), np.asarray(controls, float)
    n1, n2 = len(t), len(c)
    if n1 < 2 or n2 < 2:
        return float("nan"), float("nan")
    pooled = np.sqrt(((n1 - 1) * t.var(ddof=1) + (n2 - 1) * c.var(ddof=1)) / (n1 + n2 - 2))
    if pooled == 0:
        return float("nan"), float("nan")
    d = float((t.mean() - c.mean()) / pooled)
    return d, float(np.sqrt(1 / n1 + 1 / n2 + d * d / (2 * (n1 + n2))))


#: estimate(matching, spec) -> long frame: estimate, value, ci_low, ci_high
Estimator = Callable[[MatchingResult, TargetTrialSpec], pd.DataFrame]


@dataclass(frozen=True, eq=False)
class SensitivityResult:
    """Main estimates re-computed under each scenario (``summary``: long, one row per
    scenario × estimate)."""

    summary: pd.DataFrame
    scenarios: tuple[str, ...]
    n: int
    method: str
    caveats: tuple[str, ...]


def landmark_variables(spec: TargetTrialSpec) -> tuple[str, ...]:
    """The matching variables plus ``matching.sensitivity.add_variables`` (no repeats)."""
    m = spec.matching
    return tuple(dict.fromkeys([*m.variables, *m.sensitivity.add_variables]))


def landmark_scenario_name(spec: TargetTrialSpec) -> str:
    added = [v for v in spec.matching.sensitivity.add_variables if v not in spec.matching.variables]
    return "matched also on " + ", ".join(v.replace("_", " ") for v in added)


@dataclass(frozen=True, eq=False)
class LandmarkResult:
    """The main estimates with the landmarks aligned: matching also on
    ``matching.sensitivity.add_variables`` (days since admission). ``summary``: one row per
    estimate with the main analysis's value and interval beside this analysis's;
    ``timing``: days since admission (time zero) by arm in both matchings."""

    summary: pd.DataFrame
    timing: pd.DataFrame
    variables: tuple[str, ...]
    n_treated: int
    n_controls: int
    n: int
    method: str
    caveats: tuple[str, ...]


def _timing(matching: MatchingResult, name: str) -> list[dict]:
    rows = []
    matched = matching.matched
    for arm in ("treated", "external"):
        part = matched[matched["arm"] == arm]
        days = (
            part["days_since_admission"].to_numpy(float)
            if "days_since_admission" in part
            else np.array([])
        )
        known = np.isfinite(days)
        rows.append(
            {
                "matching": name,
                "arm": arm,
                "n": len(part),
                "n_known": int(known.sum()),
                "median_days_since_admission": float(np.median(days[known]))
                if known.any()
                else np.nan,
            }
        )
    return rows


def summarize_landmark_alignment(
    baseline: pd.DataFrame,
    estimate: Estimator,
    *,
    spec: TargetTrialSpec,
    main: MatchingResult,
    main_summary: pd.DataFrame,
) -> LandmarkResult | None:
    """Re-run the matching with ``add_variables`` and ``estimate`` on it; None when nothing is
    added."""
    variables = landmark_variables(spec)
    if variables == tuple(spec.matching.variables):
        return None
    matching = summarize_matching(baseline, spec=spec, variables=variables)
    aligned = estimate(matching, spec)
    summary = main_summary[["estimate", "value", "ci_low", "ci_high"]].rename(
        columns={"value": "main_value", "ci_low": "main_ci_low", "ci_high": "main_ci_high"}
    )
    summary = summary.merge(aligned, on="estimate", how="left")
    name = landmark_scenario_name(spec)
    timing = pd.DataFrame(_timing(main, "main") + _timing(matching, name))
    caveats = list(matching.caveats)
    lost = main.n_matched_treated - matching.n_matched_treated
    if lost > 0:
        caveats.append(
            f"{lost} treated subject(s) matched in the main analysis have no acceptable control "
            f"when matched also on {', '.join(variables[len(spec.matching.variables) :])}"
        )
    treated = baseline[(baseline["arm"] == "treated") & baseline["eligible"].astype(bool)]
    if "days_since_admission" in variables and (
        "days_since_admission" not in treated or treated["days_since_admission"].isna().all()
    ):
        caveats.append(
            "no treated subject has an admission time: days since admission cannot be matched"
        )
    return LandmarkResult(
        summary=summary,
        timing=timing,
        variables=variables,
        n_treated=matching.n_matched_treated,
        n_controls=matching.n_controls_matched,
        n=matching.n,
        method=(
            f"the main estimates with the matching repeated over {', '.join(variables)} "
            "(controls' time zero is a landmark about a day after admission, treated subjects' "
            "their first infusion, often days later: matching on days since admission compares "
            "patients at the same point of their hospital stay)"
        ),
        caveats=tuple(dict.fromkeys(caveats)),
    )


def summarize_sensitivity(
    baseline: pd.DataFrame,
    estimate: Estimator,
    *,
    spec: TargetTrialSpec,
    main: MatchingResult,
    leave_one_out: bool = True,
) -> SensitivityResult:
    """Re-run matching and ``estimate`` under a second caliper, a second ratio, the other
    replacement rule, the other handling of discharge, matching also on days since admission
    (landmark alignment), and leaving out each matched treated subject in turn."""
    m = spec.matching
    scenarios: list[tuple[str, dict, TargetTrialSpec]] = [("main analysis", {}, spec)]
    if landmark_variables(spec) != tuple(m.variables):
        scenarios.append(
            (landmark_scenario_name(spec), {"variables": landmark_variables(spec)}, spec)
        )
    second_caliper = m.sensitivity.caliper
    if second_caliper is not None and second_caliper != m.caliper:
        scenarios.append((f"caliper {second_caliper:g}", {"caliper": second_caliper}, spec))
    if m.sensitivity.ratio != m.ratio:
        scenarios.append((f"ratio 1:{m.sensitivity.ratio}", {"ratio": m.sensitivity.ratio}, spec))
    scenarios.append(
        (f"{'without' if m.replace else 'with'} replacement", {"replace": not m.replace}, spec)
    )
    other = "alive" if spec.outcomes.discharge == "censor" else "censor"
    changed = spec.model_copy(
        update={"outcomes": spec.outcomes.model_copy(update={"discharge": other})}
    )
    scenarios.append(
        (
            "discharged counted alive to the horizon"
            if other == "alive"
            else "discharge censors follow-up",
            {},
            changed,
        )
    )
    if leave_one_out:
        for code in sorted(main.summary["treated_id"].unique()):
            scenarios.append((f"without treated {code}", {"exclude_treated": (code,)}, spec))
    parts = []
    for name, options, scenario_spec in scenarios:
        matching = (
            main
            if name == "main analysis"
            else summarize_matching(baseline, spec=scenario_spec, **options)
        )
        frame = estimate(matching, scenario_spec).assign(
            scenario=name,
            n_treated=matching.n_matched_treated,
            n_controls=matching.n_controls_matched,
        )
        parts.append(frame)
    summary = pd.concat(parts, ignore_index=True)
    first = ["scenario", "n_treated", "n_controls"]
    summary = summary[first + [c for c in summary.columns if c not in first]]
    return SensitivityResult(
        summary=summary,
        scenarios=tuple(s[0] for s in scenarios),
        n=main.n,
        method=(
            "the matching and the main estimates repeated with days since admission added to the "
            "matching variables (landmark alignment), under a second caliper, a second matching "
            "ratio, the other replacement rule, the other handling of discharge, and leaving out "
            "each matched treated subject in turn (leave-one-treated-out)"
        ),
        caveats=(
            "sensitivity analyses show how much the estimates lean on single choices and single "
            "subjects; they cannot remove bias from confounders that were not measured",
        ),
    )
