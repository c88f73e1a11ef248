"""The whole external comparison in one call: eligibility, matching, balance, outcomes and
sensitivity, from the study's own frames and one external cohort's frames."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from celltrial.errors import CelltrialError
from celltrial.external.balance import BalanceResult, summarize_balance
from celltrial.external.compare import (
    CHANGE_METHOD,
    ArmModelResult,
    MortalityResult,
    _log_fold,
    derive_aligned_observations,
    derive_nominal_days,
    derive_survival_times,
    summarize_arm_model,
    summarize_changes,
    summarize_mortality,
)
from celltrial.external.eligibility import (
    EligibilityResult,
    derive_control_landmarks,
    derive_treated_eligibility,
    summarize_eligibility,
)
from celltrial.external.intervals import compute_log_ratio_interval
from celltrial.external.matching import MatchingResult, summarize_matching
from celltrial.external.normalisation import (
    NormalisationResult,
    derive_normalisation_times,
    summarize_normalisation,
)
from celltrial.external.sensitivity import (
    LandmarkResult,
    SensitivityResult,
    compute_e_value,
    summarize_landmark_alignment,
    summarize_sensitivity,
)
from celltrial.external.spec import TargetTrialSpec
from celltrial.frames import lookup


@dataclass(frozen=True, eq=False)
class ExternalComparison:
    """Treated subjects vs matched external controls (``summary``: the main estimates)."""

    summary: pd.DataFrame
    cohort: str
    spec: TargetTrialSpec
    eligibility_treated: EligibilityResult
    eligibility_external: EligibilityResult
    baseline: pd.DataFrame
    matching: MatchingResult
    balance: BalanceResult
    aligned: pd.DataFrame
    availability: pd.DataFrame
    models: dict[str, ArmModelResult]
    changes: pd.DataFrame
    mortality: MortalityResult
    normalisation: NormalisationResult
    e_values: pd.DataFrame
    sensitivity: SensitivityResult | None
    n: int
    method: str
    caveats: tuple[str, ...]
    #: The main estimates matched also on days since admission (aligned landmarks).
    landmark: LandmarkResult | None = None


def _records_end(subjects: pd.DataFrame, observations: pd.DataFrame) -> pd.Series:
    last = (
        pd.to_datetime(observations["time"], utc=True)
        .groupby(observations["subject_id"].astype(str))
        .max()
    )
    return lookup(subjects["subject_id"].astype(str), last)


def _distinct_codes(
    treated: pd.DataFrame, subjects: pd.DataFrame, observations: pd.DataFrame, cohort: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The external frames with their codes qualified by the cohort (``tongji:1``) when any
    external code is also a treated subject's: codes are per cohort, and the comparison keys
    both arms by subject code."""
    ids = subjects["subject_id"].astype(str)
    if not ids.isin(set(treated["subject_id"].astype(str))).any():
        return subjects, observations

    def qualified(codes: pd.Series) -> pd.Series:
        return cohort + ":" + codes.astype(str)

    return (
        subjects.assign(subject_id=qualified(subjects["subject_id"])),
        observations.assign(subject_id=qualified(observations["subject_id"])),
    )


def _key_day(spec: TargetTrialSpec) -> int:
    days = sorted(spec.outcomes.change_days)
    return min(days, key=lambda d: (abs(d - 7), d))


class _Estimator:
    """Main estimates for any matching (used by the main analysis and the sensitivity runs)."""

    def __init__(self, aligned_all: pd.DataFrame, outcome_rows: pd.DataFrame):
        self.aligned_all = aligned_all
        self.outcome_rows = outcome_rows

    def nominal(self, matching: MatchingResult, spec: TargetTrialSpec) -> pd.DataFrame:
        ids = set(matching.matched["subject_id"])
        aligned = self.aligned_all[self.aligned_all["subject_id"].isin(ids)]
        return derive_nominal_days(aligned, spec.outcomes.change_days)

    def mortality(self, matching: MatchingResult, spec: TargetTrialSpec) -> MortalityResult:
        weights = matching.matched.set_index("subject_id")["weight"]
        rows = self.outcome_rows[self.outcome_rows["subject_id"].isin(weights.index)]
        return summarize_mortality(derive_survival_times(rows, spec=spec), weights, spec=spec)

    def __call__(self, matching: MatchingResult, spec: TargetTrialSpec) -> pd.DataFrame:
        weights = matching.matched.set_index("subject_id")["weight"]
        mortality = self.mortality(matching, spec)
        rows = [
            {
                "estimate": f"{spec.outcomes.mortality_days:g}-day mortality risk difference",
                "value": mortality.risk_difference,
                "ci_low": mortality.rd_ci[0],
                "ci_high": mortality.rd_ci[1],
                "p_value": np.nan,
                "interval": mortality.rd_interval,
            },
            {
                "estimate": f"{spec.outcomes.mortality_days:g}-day mortality risk ratio",
                "value": mortality.risk_ratio,
                "ci_low": mortality.rr_ci[0],
                "ci_high": mortality.rr_ci[1],
                "p_value": np.nan,
                "interval": mortality.rr_interval,
            },
        ]
        day = _key_day(spec)
        one_day = spec.outcomes.model_copy(
            update={"change_days": {day: spec.outcomes.change_days[day]}}
        )
        changes = summarize_changes(
            self.nominal(matching, spec),
            weights,
            spec=spec.model_copy(update={"outcomes": one_day}),
        )
        for change in changes.itertuples():
            rows.append(
                {
                    "estimate": f"{change.marker} day {change.day}: ratio of fold changes",
                    "value": change.ratio,
                    "ci_low": change.ci_low,
                    "ci_high": change.ci_high,
                    "p_value": change.p_value,
                    "interval": change.interval,
                }
            )
        return pd.DataFrame(rows)


def summarize_external(
    treated_subjects: pd.DataFrame,
    treated_observations: pd.DataFrame,
    external_subjects: pd.DataFrame,
    external_observations: pd.DataFrame,
    *,
    spec: TargetTrialSpec,
    cohort: str = "external",
    sensitivity: bool = True,
) -> ExternalComparison:
    """Emulate the target trial of ``spec``: the study's treated subjects vs matched controls."""
    if "first_infusion" not in treated_subjects or treated_subjects["first_infusion"].isna().all():
        raise CelltrialError(
            "the study has no treated subject yet (no subject has an infusion): there is nothing "
            f"to compare the external cohort {cohort!r} with"
        )
    if external_subjects.empty:
        raise CelltrialError(
            f"the external cohort {cohort!r} holds no patients: nothing to compare"
        )
    external_subjects, external_observations = _distinct_codes(
        treated_subjects, external_subjects, external_observations, cohort
    )
    treated = derive_treated_eligibility(treated_subjects, treated_observations, spec=spec)
    controls = derive_control_landmarks(external_subjects, external_observations, spec=spec)
    elig_t = summarize_eligibility(treated, spec=spec)
    elig_c = summarize_eligibility(controls, spec=spec)
    caveats: list[str] = []
    if spec.treated_not_eligible == "keep" and (~treated["eligible"]).any():
        caveats.append(
            f"{int((~treated['eligible']).sum())} treated subject(s) do not meet the eligibility "
            "rules at their first infusion but are kept (treated_not_eligible: keep): the arms "
            "are then not defined by the same rules"
        )
        treated = treated.assign(eligible=treated["time_zero"].notna())
    elif (~treated["eligible"]).any():
        left = treated[~treated["eligible"]]
        caveats.append(
            f"{len(left)} of {len(treated)} treated subject(s) do not meet the target trial's "
            "eligibility at their first infusion and are left out: "
            + "; ".join(f"{r.subject_id} ({r.reason})" for r in left.itertuples())
        )
    if not treated["eligible"].any():
        raise CelltrialError(
            "no treated subject meets the target trial's eligibility rules at the first infusion "
            f"({'; '.join(spec.rule_text())}); nothing to compare"
        )
    baseline = pd.concat([treated, controls], ignore_index=True)
    matching = summarize_matching(baseline, spec=spec)
    balance = summarize_balance(
        baseline,
        matching,
        variables=spec.balance.variables,
        smd_below=spec.balance.smd_below,
        ratio_range=spec.balance.variance_ratio,
    )

    # outcomes, prepared for every eligible subject once (sensitivity re-uses them)
    eligible = baseline[baseline["eligible"]]
    t_rows, c_rows = eligible[eligible["arm"] == "treated"], eligible[eligible["arm"] == "external"]
    markers = list(
        dict.fromkeys([*spec.outcomes.trajectory_markers, spec.outcomes.normalisation.marker])
    )
    aligned_all = pd.concat(
        [
            derive_aligned_observations(
                treated_observations, t_rows, spec=spec, arm="treated", markers=markers
            ),
            derive_aligned_observations(
                external_observations, c_rows, spec=spec, arm="external", markers=markers
            ),
        ],
        ignore_index=True,
    )
    info = pd.concat(
        [
            treated_subjects.assign(
                subject_id=treated_subjects["subject_id"].astype(str),
                records_end=_records_end(treated_subjects, treated_observations).to_numpy(),
            ),
            external_subjects.assign(
                subject_id=external_subjects["subject_id"].astype(str),
                records_end=_records_end(external_subjects, external_observations).to_numpy(),
            ),
        ],
        ignore_index=True,
    )
    outcome_rows = eligible[["subject_id", "arm", "time_zero"]].merge(
        info[["subject_id", "died", "discharged", "records_end"]].drop_duplicates("subject_id"),
        on="subject_id",
        how="left",
    )
    estimator = _Estimator(aligned_all, outcome_rows)
    weights = matching.matched.set_index("subject_id")["weight"]
    matched_ids = set(matching.matched["subject_id"])
    aligned = aligned_all[aligned_all["subject_id"].isin(matched_ids)].reset_index(drop=True)
    nominal = derive_nominal_days(aligned, spec.outcomes.change_days)
    models = {
        marker: summarize_arm_model(
            nominal, marker=marker, reused=bool((matching.matched["n_uses"] > 1).any())
        )
        for marker in spec.outcomes.trajectory_markers
    }
    changes = summarize_changes(nominal, weights, spec=spec)
    mortality = estimator.mortality(matching, spec)
    normalisation = summarize_normalisation(
        derive_normalisation_times(
            aligned, outcome_rows[outcome_rows["subject_id"].isin(matched_ids)], spec=spec
        ),
        weights,
        spec=spec,
    )
    availability = (
        nominal.groupby(["marker", "nominal_day", "arm"])["subject_id"]
        .nunique()
        .unstack("arm", fill_value=0)
        .reindex(columns=["treated", "external"], fill_value=0)
        .reset_index()
        .rename(columns={"nominal_day": "day", "external": "controls"})
    )
    e_values = _e_values(mortality, nominal, weights, spec)
    summary = estimator(matching, spec)
    landmark = summarize_landmark_alignment(
        baseline, estimator, spec=spec, main=matching, main_summary=summary
    )
    sens = (
        summarize_sensitivity(baseline, estimator, spec=spec, main=matching)
        if sensitivity
        else None
    )
    caveats += list(spec.data_limits)
    caveats += spec.substitution_caveats()
    caveats += list(matching.caveats) + list(balance.caveats) + list(mortality.caveats)
    caveats += list(normalisation.caveats)
    limited = aligned[aligned["marker"] == "DDIMER"]
    if len(limited) and (limited["value"] >= 21.0).any():
        caveats.append(
            "D-dimer values at the assay's reporting ceiling (21 mg/L FEU) are analysed at the "
            "ceiling: high values are understated"
        )
    method = (
        f"target-trial emulation ({spec.name}) against external cohort {cohort!r}: "
        f"eligibility {'; '.join(spec.rule_text())}; treated time zero = first infusion; "
        "control time zero = first landmark meeting every rule on earlier data only; "
        f"{matching.method}; {balance.method}; change from baseline: {CHANGE_METHOD}; "
        f"{mortality.method}"
        + (f"; landmark alignment: {landmark.method}" if landmark is not None else "")
    )
    return ExternalComparison(
        summary=summary,
        cohort=cohort,
        spec=spec,
        eligibility_treated=elig_t,
        eligibility_external=elig_c,
        baseline=baseline,
        matching=matching,
        balance=balance,
        aligned=aligned,
        availability=availability,
        models=models,
        changes=changes,
        mortality=mortality,
        normalisation=normalisation,
        e_values=e_values,
        sensitivity=sens,
        n=matching.n,
        method=method,
        caveats=tuple(dict.fromkeys(caveats)),
        landmark=landmark,
    )


def _e_values(
    mortality: MortalityResult, nominal: pd.DataFrame, weights: pd.Series, spec: TargetTrialSpec
):
    """E-values of the mortality risk ratio (its Koopman interval) and of each change from
    baseline as a standardised mean difference of log fold changes: d = the weighted difference
    of means over the pooled SD, its interval the Welch interval over the same SD."""
    rows = []
    mortality_e = compute_e_value(mortality.risk_ratio, kind="RR", ci=mortality.rr_ci)
    rows.append(
        {
            "estimate": f"{spec.outcomes.mortality_days:g}-day mortality risk ratio",
            "scale": "RR",
            "value": mortality.risk_ratio,
            "e_value": mortality_e.point,
            "e_value_ci": mortality_e.ci_limit,
        }
    )
    for marker in spec.outcomes.trajectory_markers:
        for day in sorted(spec.outcomes.change_days):
            folds = _log_fold(nominal, marker, day)
            c_rows = folds[folds["arm"] == "external"]
            r = compute_log_ratio_interval(
                folds.loc[folds["arm"] == "treated", "log_fold"].to_numpy(float),
                c_rows["log_fold"].to_numpy(float),
                control_weights=c_rows["subject_id"].map(weights).fillna(1.0).to_numpy(float),
            )
            sd = float(np.sqrt((r.sd_treated**2 + r.sd_control**2) / 2.0))
            if not (np.isfinite(sd) and sd > 0 and np.isfinite(r.log_low)):
                continue
            d = r.log_difference / sd
            e = compute_e_value(d, kind="SMD", ci=(r.log_low / sd, r.log_high / sd))
            rows.append(
                {
                    "estimate": f"{marker} day {day}: log fold change (SMD)",
                    "scale": "SMD",
                    "value": d,
                    "e_value": e.point,
                    "e_value_ci": e.ci_limit,
                }
            )
    return pd.DataFrame(rows)
