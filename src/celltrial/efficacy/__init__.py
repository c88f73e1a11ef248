"""Efficacy statistics: biomarker summaries, change from baseline, paired tests and mixed models.

Every function is pure: it takes observation frames (see :mod:`celltrial.frames`) or arrays and
returns new frames or frozen result objects with their method, assumptions and caveats.
"""

from celltrial.efficacy.auc import AucSummary, compute_auc, summarize_auc
from celltrial.efficacy.baseline import derive_baseline, derive_change_from_baseline
from celltrial.efficacy.biomarkers import VisitSummary, summarize_visits
from celltrial.efficacy.changes import PairedChangeSummary, summarize_paired_changes
from celltrial.efficacy.mixed import MixedModelResult, summarize_mixed_model
from celltrial.efficacy.multiplicity import compute_holm, multiplicity_caveat
from celltrial.efficacy.normalisation import NormalisationSummary, summarize_time_to_normal
from celltrial.efficacy.paired import PairedComparison, PairedTTest, compare_paired
from celltrial.efficacy.visits import VISIT_COLUMNS, derive_nominal_visits

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
