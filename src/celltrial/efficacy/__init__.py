"""Efficacy statistics: biomarker summaries, change from baseline, paired tests and mixed models.

Every function is pure: it takes observation frames (see :mod:`celltrial.frames`) or arrays and
returns new frames or frozen result objects with their method, assumptions and caveats. Names are
imported on first use (:mod:`celltrial.lazy`).
"""

from celltrial.lazy import lazy_exports

_WHERE = {
    "AucSummary": "auc",
    "MixedModelResult": "mixed",
    "NormalisationSummary": "normalisation",
    "PairedChangeSummary": "changes",
    "PairedComparison": "paired",
    "PairedTTest": "paired",
    "VISIT_COLUMNS": "visits",
    "VisitSummary": "biomarkers",
    "compare_paired": "paired",
    "compute_auc": "auc",
    "compute_holm": "multiplicity",
    "derive_baseline": "baseline",
    "derive_change_from_baseline": "baseline",
    "derive_nominal_visits": "visits",
    "multiplicity_caveat": "multiplicity",
    "summarize_auc": "auc",
    "summarize_mixed_model": "mixed",
    "summarize_paired_changes": "changes",
    "summarize_time_to_normal": "normalisation",
    "summarize_visits": "biomarkers",
}

__getattr__, __dir__ = lazy_exports(__name__, _WHERE, globals())

__all__ = [
    "VISIT_COLUMNS",
    "AucSummary",
    "MixedModelResult",
    "NormalisationSummary",
    "PairedChangeSummary",
    "PairedComparison",
    "PairedTTest",
    "VisitSummary",
    "compare_paired",
    "compute_auc",
    "compute_holm",
    "derive_baseline",
    "derive_change_from_baseline",
    "derive_nominal_visits",
    "multiplicity_caveat",
    "summarize_auc",
    "summarize_mixed_model",
    "summarize_paired_changes",
    "summarize_time_to_normal",
    "summarize_visits",
]
