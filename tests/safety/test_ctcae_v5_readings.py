"""Readings of CTCAE v5.0 terms whose text is easy to misread, checked against the text itself.

Text as in the NCI CTCAE v5.0 term list (Nov 27, 2017), copied from its machine-readable
transcriptions (ehrforce/ctcae-extractor-transformer ``src/CTCAE/ctcae.db.ts``, which keeps the
sheet's "change" column, and pharmaverse/admiral ``data-raw/adlb_grading/ncictcaev5.json``).
Expected grades are read off the quoted text, never computed by celltrial.
"""

from __future__ import annotations

import pandas as pd
import pytest

from celltrial.safety import derive_lab_grades, explain_grade, grade_lab, load_ctcae_criteria

NA = "Hyponatremia"


def test_ldh_has_grade_1_only() -> None:
    """Blood lactate dehydrogenase increased: G1 ">ULN"; G2-G5 "-" (a term added in v5.0)."""
    term = load_ctcae_criteria().term("Blood lactate dehydrogenase increased")
    assert [r.grade for r in term.grades] == [1]
    assert grade_lab(term.term, 250.0, "U/L", uln=250.0) == 0
    assert grade_lab(term.term, 251.0, "U/L", uln=250.0) == 1
    assert grade_lab(term.term, 100 * 250.0, "U/L", uln=250.0) == 1


@pytest.mark.parametrize(
    ("value", "grade", "lab_part_only"),
    [
        # G1 "<LLN - 130 mmol/L"
        (134.9, 1, False),
        (130.0, 1, False),
        # G2 "125-129 mmol/L and asymptomatic": below 130 (no gap between 129 and 130)
        (129.99, 2, True),
        (129.5, 2, True),
        (129.0, 2, True),
        (125.0, 2, True),
        # G3 "125-129 mmol/L symptomatic; 120-124 mmol/L regardless of symptoms"
        (124.99, 3, False),
        (124.5, 3, False),
        (120.0, 3, False),
        # G4 "<120 mmol/L; life-threatening consequences"
        (119.99, 4, True),
    ],
)
def test_hyponatremia_lab_part(value: float, grade: int, lab_part_only: bool) -> None:
    """A value alone grades 125-129 mmol/L as 2 and says grade 3 needs symptoms."""
    e = explain_grade(NA, value, "mmol/L", lln=135.0)
    assert e.grade == grade
    assert e.lab_part_only is lab_part_only
    if grade == 2:
        assert "symptomatic" in e.clinical_part


def test_hemoglobin_increased_is_above_uln_not_baseline() -> None:
    """v5.0: "Increase in >0 - 2 g/dL", ">2 - 4 g/dL", ">4 g/dL"; definition "above normal".

    v4.03 added "above ULN or above baseline if baseline is above ULN"; v5.0 dropped it, so a
    baseline above ULN does not move the reference (ULN 17.5 g/dL, baseline 19.0, value 20.0:
    2.5 g/dL above ULN is grade 2, though only 1.0 above the baseline).
    """
    term = "Hemoglobin increased"
    texts = [r.ctcae_text for r in load_ctcae_criteria().term(term).grades]
    assert texts == ["Increase in >0 - 2 g/dL", "Increase in >2 - 4 g/dL", "Increase in >4 g/dL"]
    assert grade_lab(term, 20.0, "g/dL", uln=17.5, baseline=19.0) == 2
    assert grade_lab(term, 200.0, "g/L", uln=175.0, baseline=190.0) == 2
    obs = pd.DataFrame(
        {
            "subject_id": ["S1"],
            "test": ["HGB"],
            "value": [200.0],
            "unit": ["g/L"],
            "ref_low": [115.0],
            "ref_high": [175.0],
        }
    )
    base = pd.DataFrame({"subject_id": ["S1"], "test": ["HGB"], "baseline": [190.0]})
    assert derive_lab_grades(obs, baselines=base)["grade_high"].tolist() == [2]


FIB = "Fibrinogen decreased"


@pytest.mark.parametrize(
    ("value", "lln", "baseline", "grade"),
    [
        # baseline normal (not below LLN 2.0 g/L): G1 "<1.0 - 0.75 x LLN", G2 "<0.75 - 0.5 x LLN",
        # G3 "<0.5 - 0.25 x LLN", G4 "<0.25 x LLN; ... absolute value <50 mg/dL"
        (2.0, 2.0, 3.0, 0),
        (1.99, 2.0, 3.0, 1),
        (1.5, 2.0, 3.0, 1),
        (1.49, 2.0, 3.0, 2),
        (1.0, 2.0, 3.0, 2),
        (0.99, 2.0, 3.0, 3),
        (0.5, 2.0, 3.0, 3),
        (0.49, 2.0, 3.0, 4),
        # baseline abnormal (3.2, below LLN 4.0): "if abnormal, <25% decrease from baseline"
        # (G1), "25 - <50%" (G2), "50 - <75%" (G3), "75% decrease" (G4)
        (3.2, 4.0, 3.2, 0),
        (3.19, 4.0, 3.2, 1),
        (2.41, 4.0, 3.2, 1),
        (2.4, 4.0, 3.2, 2),
        (1.61, 4.0, 3.2, 2),
        (1.6, 4.0, 3.2, 3),
        (0.81, 4.0, 3.2, 3),
        (0.8, 4.0, 3.2, 4),
        (3.3, 4.0, 3.2, 0),  # above an abnormal baseline: no decrease, though below LLN
        (0.41, 2.0, 1.6, 4),  # a 74 % decrease, but 41 mg/dL: "absolute value <50 mg/dL"
    ],
)
def test_fibrinogen_decreased(value: float, lln: float, baseline: float, grade: int) -> None:
    assert grade_lab(FIB, value, "g/L", lln=lln, baseline=baseline) == grade


def test_fibrinogen_absolute_floor_in_mg_dl() -> None:
    """G4 "absolute value <50 mg/dL" holds whatever the LLN or baseline says."""
    assert grade_lab(FIB, 49.9, "mg/dL", lln=60.0, baseline=55.0) == 4
    assert grade_lab(FIB, 49.9, "mg/dL") == 4
    assert grade_lab(FIB, 50.0, "mg/dL") is None  # no LLN: grades 1-3 cannot be told


def test_inr_clinical_parts() -> None:
    """INR increased: G1 "...; monitoring only indicated", G2 "...; dose adjustment indicated",
    G3 ">2.5; >2.5 x baseline if on anticoagulation; bleeding" — a value alone grades the lab
    part; bleeding makes any value grade 3."""
    g1 = explain_grade("INR increased", 1.3, "1")
    assert g1.grade == 1 and g1.lab_part_only and "bleeding" in g1.clinical_part
    g3 = explain_grade("INR increased", 3.0, "1")
    assert g3.grade == 3 and not g3.lab_part_only
    assert "bleeding" in load_ctcae_criteria().term("INR increased").grades[-1].ctcae_text
