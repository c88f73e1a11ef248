"""The grading conventions of ``criteria/conventions.yaml``: each pinned at its boundaries.

Expected grades are worked out by hand from the CTCAE v5.0 text quoted beside them, or copied as
facts from pharmaverse admiral's CTCAE v5 test table for "Fibrinogen decreased"
(``tests/testthat/test-derive_var_atoxgr.R``, ``exp_fib``), never computed by celltrial.
"""

from __future__ import annotations

from importlib.resources import files

import pandas as pd
import pytest
import yaml

from celltrial.errors import CelltrialError
from celltrial.safety import derive_lab_grades, explain_grade, grade_lab, load_ctcae_criteria
from celltrial.safety.conventions import (
    GradingConventions,
    load_grading_conventions,
    read_grading_conventions,
)
from celltrial.safety.criteria import read_criteria

ALT = "Alanine aminotransferase increased"
AST = "Aspartate aminotransferase increased"
FIB = "Fibrinogen decreased"


def _shipped_yaml() -> dict:
    text = files("celltrial.safety").joinpath("criteria", "conventions.yaml").read_text("utf-8")
    return yaml.safe_load(text)


def _criteria_with(**changes: object):
    """The shipped criteria under conventions changed as given (nested keys with '.')."""
    data = _shipped_yaml()
    for dotted, value in changes.items():
        *path, last = dotted.split(".")
        target = data
        for key in path:
            target = target[key]
        target[last] = value
    conventions = GradingConventions.model_validate(data)
    text = files("celltrial.safety").joinpath("criteria", "ctcae_v5.csv").read_text("utf-8")
    return read_criteria(text, source="ctcae_v5.csv", conventions=conventions)


# --- the version and the file itself -----------------------------------------------------------


def test_the_criteria_version_is_data() -> None:
    conventions = load_grading_conventions()
    assert conventions.ctcae_version == "5.0"
    table = load_ctcae_criteria()
    assert table.version == conventions.ctcae_version
    assert table.conventions == conventions


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("baseline:\n  missing: assume_normal_please", "missing"),
        ("treatment_emergent:\n  rule: worse\n  missing_baseline_grade: 0", "rule"),
        ("treatment_emergent:\n  rule: worse_than_baseline\n  missing_baseline_grade: 5", "grade"),
        ("readings:\n  Fibrinogen decreased: if_low", "Fibrinogen"),
    ],
)
def test_bad_conventions_are_refused(change: str, message: str) -> None:
    data = _shipped_yaml()
    data.update(yaml.safe_load(change))
    with pytest.raises(CelltrialError, match=message):
        read_grading_conventions(yaml.safe_dump(data), source="conventions.yaml")


def test_every_rule_must_say_how_values_before_the_first_infusion_are_graded() -> None:
    data = _shipped_yaml()
    del data["baseline"]["before_first_infusion"]["either"]
    with pytest.raises(CelltrialError, match="either"):
        read_grading_conventions(yaml.safe_dump(data), source="conventions.yaml")


def test_a_reading_must_name_a_term_with_a_baseline_rule_to_read() -> None:
    with pytest.raises(CelltrialError, match="no baseline rule"):
        _criteria_with(readings={"Anemia": "if_value_abnormal"})


# --- item 2: every lab-based CTCAE v5.0 term is graded or said why not ------------------------

#: The lab-based terms of CTCAE v5.0 (NCI, Nov 27 2017) in the three classes the issue names,
#: as printed in its term list: terms defined as "a finding based on laboratory test results"
#: or by laboratory values (ECG, lung-function, weight, BMI and urine-volume terms are not).
CTCAE_V5_LAB_TERMS = {
    # Investigations
    "Activated partial thromboplastin time prolonged",
    ALT,
    "Alkaline phosphatase increased",
    AST,
    "Blood antidiuretic hormone abnormal",
    "Blood bicarbonate decreased",
    "Blood bilirubin increased",
    "Blood corticotrophin decreased",
    "Blood gonadotrophin abnormal",
    "Blood lactate dehydrogenase increased",
    "Blood prolactin abnormal",
    "Cardiac troponin I increased",
    "Cardiac troponin T increased",
    "CD4 lymphocytes decreased",
    "Cholesterol high",
    "CPK increased",
    "Creatinine increased",
    FIB,
    "GGT increased",
    "Growth hormone abnormal",
    "Haptoglobin decreased",
    "Hemoglobin increased",
    "INR increased",
    "Lipase increased",
    "Lymphocyte count decreased",
    "Lymphocyte count increased",
    "Neutrophil count decreased",
    "Pancreatic enzymes decreased",
    "Platelet count decreased",
    "Serum amylase increased",
    "Thyroid stimulating hormone increased",
    "Urine output decreased",
    "White blood cell decreased",
    # Metabolism and nutrition disorders
    "Acidosis",
    "Alkalosis",
    "Hypercalcemia",
    "Hyperglycemia",
    "Hyperkalemia",
    "Hyperlipidemia",
    "Hypermagnesemia",
    "Hypernatremia",
    "Hyperphosphatemia",
    "Hypertriglyceridemia",
    "Hyperuricemia",
    "Hypoalbuminemia",
    "Hypocalcemia",
    "Hypoglycemia",
    "Hypokalemia",
    "Hypomagnesemia",
    "Hyponatremia",
    "Hypophosphatemia",
    "Iron overload",
    "Tumor lysis syndrome",
    # Blood and lymphatic system disorders
    "Anemia",
    "Bone marrow hypocellular",
    "Disseminated intravascular coagulation",
    "Eosinophilia",
    "Febrile neutropenia",
    "Hemolysis",
    "Hemolytic uremic syndrome",
    "Leukocytosis",
    "Methemoglobinemia",
    "Thrombotic thrombocytopenic purpura",
}


def test_every_lab_based_ctcae_v5_term_is_graded_or_said_why_not() -> None:
    table = load_ctcae_criteria()
    graded = {t.ctcae_term for t in table.terms.values()}
    not_graded = set(table.conventions.not_graded)
    assert not graded & not_graded
    missing = CTCAE_V5_LAB_TERMS - graded - not_graded
    assert not missing, f"lab-based CTCAE v5.0 terms neither graded nor explained: {missing}"
    assert not_graded <= CTCAE_V5_LAB_TERMS  # no made-up term
    assert all(len(reason) > 20 for reason in table.conventions.not_graded.values())


def test_haptoglobin_decreased_is_graded_where_it_raised_an_error() -> None:
    """The issue's example: "Haptoglobin decreased" (G1 <LLN) raised an error."""
    e = explain_grade("Haptoglobin decreased", 0.25, "g/L", lln=0.3)
    assert e.grade == 1 and e.ctcae_term == "Haptoglobin decreased"
    obs = pd.DataFrame(
        {
            "subject_id": ["S1", "S1"],
            "test": ["HAPTO", "HAPTO"],
            "value": [0.29, 0.31],
            "unit": ["g/L", "g/L"],
            "ref_low": [0.3, 0.3],
            "ref_high": [2.0, 2.0],
        }
    )
    graded = derive_lab_grades(obs)
    assert graded["grade_low"].tolist() == [1, 0]
    assert graded["term_low"].tolist() == ["Haptoglobin decreased"] * 2


def test_a_term_not_graded_says_why() -> None:
    with pytest.raises(CelltrialError, match="myocardial infarction"):
        grade_lab("Cardiac troponin I increased", 50.0, "ng/L", uln=34.0)


def test_new_tests_are_in_the_catalogue_with_loinc_and_ranges() -> None:
    from celltrial.catalogue import load_catalogue

    catalogue = load_catalogue()
    expected = {  # code: (LOINC, canonical unit) as published by LOINC
        "HAPTO": ("4542-7", "g/L"),
        "METHB": ("2614-6", "%"),
        "TSH": ("3016-3", "mIU/L"),
        "PHOS": ("14879-1", "mmol/L"),
    }
    for code, (loinc, unit) in expected.items():
        test = catalogue.get(code)
        assert (test.loinc, test.unit) == (loinc, unit)
        assert test.reference is not None and test.plausible is not None


# --- item 1: a missing baseline ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("term", "value", "unit", "kw", "grade"),
    [
        # ALT/AST G4 ">20.0 x ULN if baseline was normal": 25 x ULN without a baseline
        (ALT, 1000.0, "U/L", {"uln": 40.0}, 4),
        (AST, 800.1, "U/L", {"uln": 40.0}, 4),
        (AST, 800.0, "U/L", {"uln": 40.0}, 3),  # exactly 20 x ULN: ">5.0 - 20.0 x ULN"
        (ALT, 40.0, "U/L", {"uln": 40.0}, 0),
        # ALP G1 ">ULN - 2.5 x ULN if baseline was normal"
        ("Alkaline phosphatase increased", 130.1, "U/L", {"uln": 130.0}, 1),
        # bilirubin G2 ">1.5 - 3.0 x ULN if baseline was normal": 31.6 / 21 = 1.505
        ("Blood bilirubin increased", 31.6, "umol/L", {"uln": 21.0}, 2),
        # fibrinogen G3 "<0.5 - 0.25 x LLN" on a normal baseline
        (FIB, 0.99, "g/L", {"lln": 2.0}, 3),
    ],
)
def test_a_missing_baseline_is_taken_as_normal_and_flagged(
    term: str, value: float, unit: str, kw: dict, grade: int
) -> None:
    e = explain_grade(term, value, unit, **kw)
    assert e.grade == grade
    assert e.assumed_normal_baseline
    assert any("as if the baseline had been normal" in n for n in e.notes)


def test_the_other_convention_leaves_them_not_gradable() -> None:
    table = _criteria_with(**{"baseline.missing": "not_gradable"})
    assert grade_lab(ALT, 1000.0, "U/L", uln=40.0, criteria=table) is None
    assert grade_lab(ALT, 30.0, "U/L", uln=40.0, criteria=table) == 0  # no baseline lifts it
    e = explain_grade(ALT, 1000.0, "U/L", uln=40.0, baseline=30.0, criteria=table)
    assert e.grade == 4 and not e.assumed_normal_baseline


def test_a_known_baseline_is_never_flagged() -> None:
    assert not explain_grade(ALT, 100.0, "U/L", uln=40.0, baseline=30.0).assumed_normal_baseline
    assert not explain_grade(ALT, 100.0, "U/L", uln=40.0, baseline=50.0).assumed_normal_baseline
    assert not explain_grade("Anemia", 90.0, "g/L", lln=120.0).assumed_normal_baseline
    # creatinine grades on the ULN without a baseline: nothing is assumed about it
    assert not explain_grade("Creatinine increased", 2.0, "mg/dL", uln=1.2).assumed_normal_baseline


# --- item 1: values at or before the first infusion ----------------------------------------


@pytest.mark.parametrize(
    ("term", "value", "unit", "kw", "before", "after"),
    [
        # the example: a baseline AST of 2.9 x ULN, graded against itself it was 0;
        # against ULN ">ULN - 3.0 x ULN" it is 1
        (AST, 116.0, "U/L", {"uln": 40.0, "baseline": 116.0}, 1, 0),
        (AST, 120.1, "U/L", {"uln": 40.0, "baseline": 116.0}, 2, 0),  # >3.0 x ULN
        # GGT G3 ">5.0 - 20.0 x ULN": 5.5 x ULN before; 1.0 x its abnormal baseline after
        ("GGT increased", 330.0, "U/L", {"uln": 60.0, "baseline": 330.0}, 3, 0),
        # fibrinogen below LLN at baseline: "<0.5 - 0.25 x LLN" before; no decrease after
        (FIB, 0.9, "g/L", {"lln": 2.0, "baseline": 0.9}, 3, 0),
        # creatinine ">1.5 - 3.0 x baseline" is a change after treatment: 2.0 mg/dL with a later
        # baseline of 0.6 is 1.67 x ULN 1.2 (G2) before, 3.3 x baseline (G3) after
        ("Creatinine increased", 2.0, "mg/dL", {"uln": 1.2, "baseline": 0.6}, 2, 3),
    ],
)
def test_values_at_or_before_the_first_infusion_are_graded_against_the_limits(
    term: str, value: float, unit: str, kw: dict, before: int, after: int
) -> None:
    e = explain_grade(term, value, unit, before_first_infusion=True, **kw)
    assert e.grade == before and not e.assumed_normal_baseline
    assert grade_lab(term, value, unit, **kw) == after


def test_the_other_convention_grades_them_on_the_baseline() -> None:
    table = _criteria_with(**{"baseline.before_first_infusion.if_abnormal": "baseline"})
    assert grade_lab(AST, 116.0, "U/L", uln=40.0, baseline=116.0, criteria=table) == 0
    kw = {"uln": 40.0, "baseline": 116.0, "before_first_infusion": True, "criteria": table}
    assert grade_lab(AST, 116.0, "U/L", **kw) == 0


def test_before_the_first_infusion_nothing_is_assumed() -> None:
    e = explain_grade(ALT, 130.0, "U/L", uln=40.0, before_first_infusion=True)
    assert e.grade == 2 and not e.assumed_normal_baseline  # graded on ULN by rule


# --- the fibrinogen reading -------------------------------------------------------------------


def test_celltrials_fibrinogen_reading_is_the_baseline() -> None:
    conventions = load_grading_conventions()
    assert conventions.readings == {FIB: "if_abnormal"}
    assert load_ctcae_criteria().term(FIB).baseline_rule == "if_abnormal"


def test_the_two_readings_differ_where_the_yaml_says() -> None:
    """LLN 2.0 g/L, baseline 4.0, value 1.9 (a 52.5 % fall): the baseline was normal, so the LLN
    multiples grade it ("<1.0 - 0.75 x LLN": 0.95, grade 1); read as the value being abnormal,
    "50 - <75% decrease from baseline" makes it grade 3."""
    value_reading = _criteria_with(readings={FIB: "if_value_abnormal"})
    assert grade_lab(FIB, 1.9, "g/L", lln=2.0, baseline=4.0) == 1
    assert grade_lab(FIB, 1.9, "g/L", lln=2.0, baseline=4.0, criteria=value_reading) == 3


# admiral exp_fib (CTCAE v5): AVAL, ANRLO, PCHG, expected grade (NA = None); unit g/L.
# Rows 25-26 (a "wrong" or missing unit) are left out: g/dL converts in celltrial.
ADMIRAL_FIBRINOGEN = [
    (0.49, None, None, 4),  # 3: <0.5 g/L (50 mg/dL) for grade 4, other criteria missing
    (0.49, 1.0, -51.0, 4),  # 4
    (0.5, 2.1, None, 4),  # 5: <0.25 x LLN
    (0.5, 2.1, -51.0, 4),  # 6
    (0.5, 1.1, -75.0, 4),  # 7: 75 % decrease
    (1.0, 2.1, None, 3),  # 8: <0.5 x LLN
    (1.0, 2.1, -49.0, 3),  # 9
    (1.0, 2.0, -50.0, 3),  # 10: 50 % decrease
    (1.5, 2.1, None, 2),  # 11: <0.75 x LLN
    (1.5, 2.1, -10.0, 2),  # 12
    (1.5, 1.6, -25.0, 2),  # 13: 25 % decrease
    (2.0, 2.1, None, 1),  # 14: <LLN
    (2.0, 2.1, 10.0, 1),  # 15
    (1.5, 1.5, 0.0, 0),  # 16: not below LLN, no decrease
    (1.5, 1.5, -1.0, 0),  # 17: a decrease, but the value is not abnormal
    (1.5, 1.5, None, 0),  # 18
    (1.0, None, -75.0, None),  # 19: LLN missing: abnormal or not is unknown
    (1.0, None, -50.0, None),  # 20
    (1.5, None, -25.0, None),  # 21
    (1.5, None, -1.0, None),  # 22
    (1.5, None, 10.0, None),  # 23
    (None, 1.5, 10.0, None),  # 24: value missing
]


def _baseline_for(value: float | None, pchg: float | None) -> float | None:
    """The baseline from which ``value`` is a change of ``pchg`` %."""
    if value is None or pchg is None:
        return None
    return value / (1.0 + pchg / 100.0)


@pytest.mark.parametrize(("value", "lln", "pchg", "grade"), ADMIRAL_FIBRINOGEN)
def test_the_value_reading_matches_admirals_table(
    value: float | None, lln: float | None, pchg: float | None, grade: int | None
) -> None:
    table = _criteria_with(readings={FIB: "if_value_abnormal"})
    got = grade_lab(
        FIB,
        float("nan") if value is None else value,
        "g/L",
        lln=lln,
        baseline=_baseline_for(value, pchg),
        criteria=table,
    )
    assert got == grade


def test_the_value_reading_grades_frames_as_values() -> None:
    """The frame grader hands the value reading to evaluate(); rows agree with grade_lab."""
    table = _criteria_with(readings={FIB: "if_value_abnormal"})
    rows, baselines = [], []
    for i, (value, lln, pchg, _) in enumerate(ADMIRAL_FIBRINOGEN):
        rows.append((f"S{i}", "FIBRINO", value, "g/L", lln, 4.0))
        base = _baseline_for(value, pchg)
        if base is not None:
            baselines.append({"subject_id": f"S{i}", "test": "FIBRINO", "baseline": base})
    obs = pd.DataFrame(rows, columns=["subject_id", "test", "value", "unit", "ref_low", "ref_high"])
    obs = obs.astype({"value": float, "ref_low": float})
    graded = derive_lab_grades(obs, criteria=table, baselines=pd.DataFrame(baselines))
    expected = [g for *_, g in ADMIRAL_FIBRINOGEN]
    got = [None if g is pd.NA else int(g) for g in graded["grade_low"]]
    assert got == expected
    # no baseline: the decrease is not evaluated, the row says the baseline was taken as normal
    no_base = [
        pchg is None and value is not None and g is not None
        for value, _, pchg, g in ADMIRAL_FIBRINOGEN
    ]
    assert graded["assumed_normal_baseline_low"].tolist() == no_base


def test_the_safety_tables_state_the_conventions_they_applied() -> None:
    shipped = load_grading_conventions().describe()
    assert "missing baseline taken as normal" in shipped
    assert "worse than the subject's baseline grade" in shipped
    assert "'if abnormal' read as an abnormal baseline" in shipped
    other = _criteria_with(**{"baseline.missing": "not_gradable"}).conventions.describe()
    assert "missing baseline taken as normal" not in other and "not gradable" in other
