"""Safety: CTCAE v5.0 lab grading (criteria as data), fever and vital-sign signals around infusions.

Public API:

- :func:`grade_lab` / :func:`explain_grade` — one value of one CTCAE term;
- :func:`compute_lab_grades` — an array of values of one term;
- :func:`derive_lab_grades` — the observation frame, low and high side of every test;
- :func:`load_ctcae_criteria` — the shipped criteria (``criteria/ctcae_v5.csv``);
- :func:`grade_fever` / :func:`derive_fever_grades` — CTCAE "Fever" from temperatures over time;
- :func:`derive_infusion_signals` with :class:`InfusionSignalThresholds` — vital-sign changes in
  the reaction window after each infusion.
"""

from celltrial.safety.criteria import CriteriaTable, load_ctcae_criteria
from celltrial.safety.fever import derive_fever_grades, grade_fever
from celltrial.safety.grading import (
    GradeExplanation,
    compute_lab_grades,
    derive_lab_grades,
    explain_grade,
    grade_lab,
)
from celltrial.safety.signals import InfusionSignalThresholds, derive_infusion_signals

__all__ = [
    "CriteriaTable",
    "GradeExplanation",
    "InfusionSignalThresholds",
    "compute_lab_grades",
    "derive_fever_grades",
    "derive_infusion_signals",
    "derive_lab_grades",
    "explain_grade",
    "grade_fever",
    "grade_lab",
    "load_ctcae_criteria",
]
