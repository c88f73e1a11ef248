"""External control arm from real-world data: target-trial emulation, matching, comparison.

Pure functions over frames (see :mod:`celltrial.frames`); the study's own subjects are the
treated arm, an external cohort (``celltrial import … --cohort NAME``) supplies the controls, and
the two never mix in the study's tables.

Names are imported on first use (:mod:`celltrial.lazy`).
"""

from celltrial.lazy import lazy_exports

_WHERE = {
    "ArmModelResult": "compare",
    "BalanceResult": "balance",
    "EValue": "sensitivity",
    "EligibilityResult": "eligibility",
    "ExternalComparison": "analysis",
    "LandmarkResult": "sensitivity",
    "MatchingResult": "matching",
    "MortalityResult": "compare",
    "SensitivityResult": "sensitivity",
    "TargetTrialSpec": "spec",
    "compute_e_value": "sensitivity",
    "compute_koopman_ratio": "intervals",
    "compute_log_ratio_interval": "intervals",
    "compute_newcombe_difference": "intervals",
    "compute_matches": "matching",
    "compute_smd": "balance",
    "compute_variance_ratio": "balance",
    "compute_weighted_kaplan_meier": "compare",
    "derive_aligned_observations": "compare",
    "derive_control_landmarks": "eligibility",
    "derive_nominal_days": "compare",
    "derive_survival_times": "compare",
    "derive_treated_eligibility": "eligibility",
    "load_target_trial": "spec",
    "read_target_trial": "spec",
    "render_love_plot": "balance",
    "resolve_target_trial": "spec",
    "summarize_arm_model": "compare",
    "summarize_balance": "balance",
    "summarize_changes": "compare",
    "summarize_eligibility": "eligibility",
    "summarize_external": "analysis",
    "summarize_landmark_alignment": "sensitivity",
    "summarize_matching": "matching",
    "summarize_mortality": "compare",
    "summarize_sensitivity": "sensitivity",
}

__getattr__, __dir__ = lazy_exports(__name__, _WHERE, globals())

__all__ = [
    "ArmModelResult",
    "BalanceResult",
    "EValue",
    "EligibilityResult",
    "ExternalComparison",
    "LandmarkResult",
    "MatchingResult",
    "MortalityResult",
    "SensitivityResult",
    "TargetTrialSpec",
    "compute_e_value",
    "compute_koopman_ratio",
    "compute_log_ratio_interval",
    "compute_matches",
    "compute_newcombe_difference",
    "compute_smd",
    "compute_variance_ratio",
    "compute_weighted_kaplan_meier",
    "derive_aligned_observations",
    "derive_control_landmarks",
    "derive_nominal_days",
    "derive_survival_times",
    "derive_treated_eligibility",
    "load_target_trial",
    "read_target_trial",
    "render_love_plot",
    "resolve_target_trial",
    "summarize_arm_model",
    "summarize_balance",
    "summarize_changes",
    "summarize_eligibility",
    "summarize_external",
    "summarize_landmark_alignment",
    "summarize_matching",
    "summarize_mortality",
    "summarize_sensitivity",
]
