"""Safety: CTCAE v5.0 lab grading (criteria as data), fever and vital-sign signals around infusions.

Public API:

- :func:`grade_lab` / :func:`explain_grade` — one value of one CTCAE term;
- :func:`compute_lab_grades` — an array of values of one term;
- :func:`derive_lab_grades` — the observation frame, low and high side of every test;
- :func:`load_ctcae_criteria` — the shipped criteria (``criteria/ctcae_v5.csv``);
- :func:`load_grading_conventions` — the grading conventions (``criteria/conventions.yaml``:
  version, missing baselines, values before the first infusion, readings, treatment-emergent);
- :func:`derive_lab_emergence` — which graded values are treatment-emergent lab toxicities;
- :func:`grade_fever` / :func:`derive_fever_grades` — CTCAE "Fever" from temperatures over time;
- :func:`derive_infusion_signals` with :class:`InfusionSignalThresholds` — vital-sign changes in
  the reaction window after each infusion.
"""

from celltrial.lazy import lazy_exports

_WHERE = {
    "CriteriaTable": "criteria",
    "GradeExplanation": "grading",
    "InfusionSignalThresholds": "signals",
    "compute_lab_grades": "grading",
    "derive_fever_grades": "fever",
    "derive_infusion_signals": "signals",
    "derive_lab_emergence": "tables",
    "derive_lab_grades": "grading",
    "explain_grade": "grading",
    "grade_fever": "fever",
    "grade_lab": "grading",
    "load_ctcae_criteria": "criteria",
    "load_grading_conventions": "conventions",
}

__getattr__, __dir__ = lazy_exports(__name__, _WHERE, globals())

__all__ = [
    "CriteriaTable",
    "GradeExplanation",
    "InfusionSignalThresholds",
    "compute_lab_grades",
    "derive_fever_grades",
    "derive_infusion_signals",
    "derive_lab_emergence",
    "derive_lab_grades",
    "explain_grade",
    "grade_fever",
    "grade_lab",
    "load_ctcae_criteria",
    "load_grading_conventions",
]
