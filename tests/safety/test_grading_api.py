"""explain_grade, qualifiers, compute_lab_grades and the criteria file itself."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from celltrial.errors import CelltrialError, UnitError
from celltrial.safety import (
    compute_lab_grades,
    explain_grade,
    grade_lab,
    load_ctcae_criteria,
)
from celltrial.safety.criteria import read_criteria

ALT = "Alanine aminotransferase increased"


def test_explain_names_the_rule_and_the_ctcae_text() -> None:
    e = explain_grade(ALT, 130.0, "U/L", uln=40.0, baseline_abnormal=False)
    assert e.grade == 2 and e.reason is None
    assert "3 × ULN" in e.rule and ">3.0 - 5.0 x ULN if baseline was normal" in e.rule
    assert e.version == "5.0" and e.ctcae_term == ALT and not e.lab_part_only


def test_explain_baseline_abnormal_rule() -> None:
    e = explain_grade(ALT, 150.0, "U/L", uln=40.0, baseline=100.0)
    assert e.grade == 1 and "1.5 × baseline (baseline abnormal)" in e.rule


@pytest.mark.parametrize(
    ("term", "value", "unit", "kw", "reason"),
    [
        ("Anemia", 105.0, "g/L", {}, "LLN missing"),
        ("CPK increased", 300.0, "U/L", {}, "ULN missing"),
        (ALT, 200.0, "U/L", {"uln": 40.0, "baseline_abnormal": True}, "baseline missing"),
        ("INR increased", 2.2, "1", {"anticoagulated": True}, "baseline missing"),
        (ALT, 130.0, "mg/dL", {"uln": 40.0}, "unit not convertible"),
        ("Hyperglycemia", 20.0, "mmol/L", {}, "no numeric criteria"),
        ("Anemia", float("nan"), "g/L", {"lln": 120.0}, "value missing"),
    ],
)
def test_not_gradable_reasons(term: str, value: float, unit: str, kw: dict, reason: str) -> None:
    e = explain_grade(term, value, unit, **kw)
    assert e.grade is None and reason in e.reason


def test_lab_part_only_flags_clinical_parts() -> None:
    anemia = explain_grade("Anemia", 75.0, "g/L", lln=120.0)
    assert anemia.grade == 3 and anemia.lab_part_only and "transfusion" in anemia.clinical_part
    assert not explain_grade("Anemia", 95.0, "g/L", lln=120.0).lab_part_only
    lipase = explain_grade("Lipase increased", 200.0, "U/L", uln=60.0)
    assert lipase.grade == 2 and lipase.lab_part_only and "symptoms" in lipase.clinical_part


def test_creatinine_without_baseline_says_what_was_skipped() -> None:
    e = explain_grade("Creatinine increased", 2.0, "mg/dL", uln=1.2)
    assert e.grade == 2
    assert any("baseline not given" in note for note in e.notes)


def test_uncorrected_calcium_carries_its_caveat() -> None:
    e = explain_grade("Hypocalcemia (total calcium, uncorrected)", 1.9, "mmol/L", lln=2.1)
    assert e.grade == 2 and e.ctcae_term == "Hypocalcemia"
    assert any("albumin-corrected" in note for note in e.notes)


@pytest.mark.parametrize(
    ("term", "value", "qualifier", "kw", "expected"),
    [
        ("Lymphocyte count decreased", 0.1, "<", {"lln": 1.1}, 4),  # worse side, already top
        ("Lymphocyte count decreased", 0.6, "<", {"lln": 1.1}, None),  # could be grade 3 or 4
        ("Lymphocyte count decreased", 3.0, ">", {"lln": 1.1}, 0),  # better side of normal
        ("Lymphocyte count decreased", 1.0, ">", {"lln": 1.1}, None),  # 1 or 0
        (ALT, 1000.0, ">", {"uln": 40.0, "baseline_abnormal": False}, 4),
        (ALT, 200.0, ">", {"uln": 40.0, "baseline_abnormal": False}, None),
        (ALT, 30.0, "<", {"uln": 40.0, "baseline_abnormal": False}, 0),
        (ALT, 100.0, "<", {"uln": 40.0, "baseline_abnormal": False}, None),
    ],
)
def test_values_at_reporting_limits(
    term: str, value: float, qualifier: str, kw: dict, expected: int | None
) -> None:
    assert (
        grade_lab(term, value, "10^9/L" if "Lymph" in term else "U/L", qualifier=qualifier, **kw)
        == expected
    )


def test_unknown_term_raises_naming_the_known_ones() -> None:
    with pytest.raises(CelltrialError, match="D-dimer"):
        grade_lab("D-dimer increased", 5.0, "mg/L")


def test_term_lookup_is_case_insensitive() -> None:
    assert grade_lab("anemia", 75.0, "g/L", lln=120.0) == 3


def test_compute_lab_grades_arrays() -> None:
    values = np.array([30.0, 130.0, np.nan, 900.0, 100.0])
    uln = np.array([40.0, 40.0, 40.0, 40.0, np.nan])
    grades = compute_lab_grades(ALT, values, "U/L", uln=uln, baseline_abnormal=np.zeros(5))
    assert [None if g is pd.NA else int(g) for g in grades] == [0, 2, None, 4, None]
    with pytest.raises(UnitError):
        compute_lab_grades(ALT, values, "mg/dL", uln=uln)


def test_compute_matches_grade_lab_on_random_values() -> None:
    """The vectorised path and the one-value path are one engine; check them on random data."""
    rng = np.random.default_rng(11)
    n = 400
    values = rng.uniform(0, 300, n)
    uln = np.where(rng.random(n) < 0.1, np.nan, 40.0)
    base = np.where(rng.random(n) < 0.3, np.nan, rng.uniform(10, 120, n))
    grades = compute_lab_grades(ALT, values, "U/L", uln=uln, baseline=base)
    for i in range(n):
        one = grade_lab(
            ALT,
            values[i],
            "U/L",
            uln=None if np.isnan(uln[i]) else uln[i],
            baseline=None if np.isnan(base[i]) else base[i],
        )
        assert (None if grades.isna()[i] else int(grades[i])) == one


def test_criteria_file_is_complete_and_versioned() -> None:
    table = load_ctcae_criteria()
    assert table.version == "5.0" and table.source.endswith("ctcae_v5.csv")
    required = {
        "Anemia",
        "Hemoglobin increased",
        "Lymphocyte count decreased",
        "Lymphocyte count increased",
        "Neutrophil count decreased",
        "White blood cell decreased",
        "Leukocytosis",
        "Platelet count decreased",
        "CD4 lymphocytes decreased",
        ALT,
        "Aspartate aminotransferase increased",
        "Alkaline phosphatase increased",
        "GGT increased",
        "Blood bilirubin increased",
        "Creatinine increased",
        "CPK increased",
        "Lipase increased",
        "Serum amylase increased",
        "Blood lactate dehydrogenase increased",
        "Activated partial thromboplastin time prolonged",
        "INR increased",
        "Fibrinogen decreased",
        "Hypoalbuminemia",
        "Hypokalemia",
        "Hyperkalemia",
        "Hyponatremia",
        "Hypernatremia",
        "Hypocalcemia",
        "Hypercalcemia",
        "Hypocalcemia (ionized)",
        "Hypercalcemia (ionized)",
        "Hypomagnesemia",
        "Hypermagnesemia",
        "Hypoglycemia",
        "Hypertriglyceridemia",
        "Cholesterol high",
        "Hyperuricemia",
        "Acidosis",
        "Alkalosis",
        "Fever",
    }
    assert required <= set(table.terms)
    for test in ("DDIMER", "CRP", "IL6", "CD19", "CD1656"):
        assert table.for_test(test, "low") is None and table.for_test(test, "high") is None
    with pytest.raises(CelltrialError, match="version"):
        load_ctcae_criteria("9.0")


HEADER = (
    "version,term,ctcae_term,test,direction,grade,absolute,x_uln,x_lln,plus_uln,x_baseline,"
    "pct_change,baseline_rule,range_missing,baseline_missing,valence,clinical_part,ctcae_text,note"
)


def test_another_version_is_just_another_file() -> None:
    text = HEADER + "\n6.0,Anemia,Anemia,HGB,low,2,<90 g/L,,,,,,,,,,,made-up v6 text,\n"
    table = read_criteria(text, source="v6.csv")
    assert table.version == "6.0"
    assert grade_lab("Anemia", 89.0, "g/L", criteria=table) == 2
    assert grade_lab("Anemia", 95.0, "g/L", criteria=table) == 0


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("5.0,Anemia,Anemia,HGB,low,2,>90 g/L,,,,,,,,,,,t,", "does not fit a low term"),
        ("5.0,Anemia,Anemia,NOPE,low,2,<90 g/L,,,,,,,,,,,t,", "unknown test"),
        ("5.0,Anemia,Anemia,HGB,low,7,<90 g/L,,,,,,,,,,,t,", "grade must be 1-4"),
        ("5.0,Anemia,Anemia,HGB,low,1,,,<1.0,,,,,,,,,t,", "range_missing"),
        ("5.0,Anemia,Anemia,HGB,low,1,,,,,,,,,,,,t,", "clinical_part"),
        ("5.0,Anemia,Anemia,HGB,low,2,<ninety g/L,,,,,,,,,,,t,", "cannot read threshold"),
    ],
)
def test_bad_criteria_rows_are_refused_with_their_line(row: str, message: str) -> None:
    with pytest.raises(CelltrialError, match=message) as err:
        read_criteria(HEADER + "\n" + row + "\n", source="bad.csv")
    assert "bad.csv" in str(err.value)
