"""derive_lab_grades over the observation frame: both sides, reasons, baselines, no mutation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from celltrial.errors import DataError
from celltrial.frames import OBSERVATION_COLUMNS
from celltrial.safety import derive_lab_grades, grade_lab

ALT = "Alanine aminotransferase increased"

# subject, test, value, unit, LLN, ULN, qualifier
ROWS = [
    ("S1", "ALT", 130.0, "U/L", 0.0, 40.0, ""),  # baseline 30 (normal): 3.25 x ULN → 2
    ("S1", "ALT", 30.0, "U/L", 0.0, 40.0, ""),  # normal → 0
    ("S2", "ALT", 200.0, "U/L", 0.0, 40.0, ""),  # baseline 100 (abnormal): 2 x baseline → 1
    ("S3", "ALT", 200.0, "U/L", 0.0, 40.0, ""),  # no baseline: taken as normal, 5 x ULN → 2
    ("S1", "HGB", 95.0, "g/L", 115.0, 175.0, ""),  # anemia 2 / hemoglobin increased 0
    ("S1", "HGB", 9.5, "g/dL", 11.5, 17.5, ""),  # same in g/dL
    ("S2", "K", 2.9, "mmol/L", 3.5, 5.3, ""),  # hypokalemia 3 / hyperkalemia 0
    ("S2", "CREAT", 300.0, "umol/L", 45.0, 104.0, ""),  # baseline 80: >3 x baseline → 3
    ("S3", "CREAT", 300.0, "umol/L", 45.0, 104.0, ""),  # no baseline: 2.9 x ULN → 2
    ("S1", "LYM", 0.1, "10^9/L", 1.1, 3.2, "<"),  # <0.1: grade 4 is certain
    ("S1", "LYM", 0.9, "10^9/L", np.nan, np.nan, ""),  # no range: LLN missing
    ("S1", "DDIMER", 5.0, "mg/L", 0.0, 0.5, ""),  # no CTCAE term
    ("S1", "CRP", 80.0, "mg/L", 0.0, 10.0, ""),  # no CTCAE term
    ("S1", "PLAT", np.nan, "10^9/L", 125.0, 350.0, ""),  # value missing
    ("S1", "ALT", 130.0, "mg/dL", 0.0, 40.0, ""),  # nonsense unit
]
EXPECTED = [  # grade_low, term_low, reason_low, grade_high, term_high, reason_high
    (None, None, None, 2, ALT, None),
    (None, None, None, 0, ALT, None),
    (None, None, None, 1, ALT, None),
    (None, None, None, 2, ALT, None),
    (2, "Anemia", None, 0, "Hemoglobin increased", None),
    (2, "Anemia", None, 0, "Hemoglobin increased", None),
    (3, "Hypokalemia", None, 0, "Hyperkalemia", None),
    (None, None, None, 3, "Creatinine increased", None),
    (None, None, None, 2, "Creatinine increased", None),
    (4, "Lymphocyte count decreased", None, 0, "Lymphocyte count increased", None),
    (None, "Lymphocyte count decreased", "LLN missing", 0, "Lymphocyte count increased", None),
    (None, None, None, None, None, None),
    (None, None, None, None, None, None),
    (None, "Platelet count decreased", "value missing", None, None, None),
    (None, None, None, None, ALT, "unit not convertible"),
]


def observations() -> pd.DataFrame:
    frame = pd.DataFrame(
        ROWS, columns=["subject_id", "test", "value", "unit", "ref_low", "ref_high", "qualifier"]
    )
    frame["time"] = pd.Timestamp("2020-02-10T08:00", tz="UTC")
    for column in OBSERVATION_COLUMNS:
        if column not in frame:
            frame[column] = ""
    return frame.loc[:, list(OBSERVATION_COLUMNS)]


BASELINES = pd.DataFrame(
    {
        "subject_id": ["S1", "S2", "S2"],
        "test": ["ALT", "ALT", "CREAT"],
        "baseline": [30.0, 100.0, 80.0],
        "ref_low": [0.0, 0.0, 45.0],
        "ref_high": [40.0, 40.0, 104.0],
    }
)


def _plain(x: object) -> object:
    return None if x is None or x is pd.NA or (isinstance(x, float) and np.isnan(x)) else x


def _check(graded: pd.DataFrame) -> None:
    for i, expected in enumerate(EXPECTED):
        row = graded.iloc[i]
        got = [
            _plain(row[c])
            for c in (
                "grade_low",
                "term_low",
                "reason_low",
                "grade_high",
                "term_high",
                "reason_high",
            )
        ]
        for position in (2, 5):
            if expected[position] is not None and got[position] is not None:
                assert expected[position] in got[position], (i, got)
                got[position] = expected[position]
        assert tuple(got) == expected, (i, ROWS[i], got)


def test_grades_both_sides_with_reasons() -> None:
    graded = derive_lab_grades(observations(), baselines=BASELINES)
    _check(graded)
    # only S3's ALT was graded on an assumed baseline (creatinine has no baseline status)
    assert graded["assumed_normal_baseline_high"].tolist() == [i == 3 for i in range(len(ROWS))]
    assert not graded["assumed_normal_baseline_low"].any()


def test_never_mutates_its_input_and_returns_a_new_frame() -> None:
    obs = observations()
    before = obs.copy(deep=True)
    base_before = BASELINES.copy(deep=True)
    graded = derive_lab_grades(obs, baselines=BASELINES)
    pd.testing.assert_frame_equal(obs, before)
    pd.testing.assert_frame_equal(BASELINES, base_before)
    assert graded is not obs and list(graded.columns[: len(obs.columns)]) == list(obs.columns)
    assert str(graded["grade_low"].dtype) == "Int8" and str(graded["grade_high"].dtype) == "Int8"


def test_categorical_and_text_columns_give_the_same_grades() -> None:
    obs = observations()
    categorical = obs.astype({"test": "category", "unit": "category", "subject_id": "category"})
    a = derive_lab_grades(obs, baselines=BASELINES)
    b = derive_lab_grades(categorical, baselines=BASELINES)
    for column in ("grade_low", "grade_high", "term_low", "term_high", "reason_low"):
        assert a[column].astype(object).tolist() == b[column].astype(object).tolist()


def test_row_order_does_not_matter() -> None:
    obs = observations()
    shuffled = obs.sample(frac=1.0, random_state=3)
    graded = derive_lab_grades(shuffled, baselines=BASELINES).loc[obs.index]
    _check(graded)


def test_frame_agrees_with_grade_lab_on_random_rows() -> None:
    rng = np.random.default_rng(5)
    n = 300
    tests = rng.choice(["ALT", "K", "HGB", "NEUT", "FIBRINO"], n)
    spec = {
        "ALT": (0.0, 40.0, 45.0),
        "K": (3.5, 5.3, 4.2),
        "HGB": (115.0, 175.0, 120.0),
        "NEUT": (1.8, 6.3, 3.0),
        "FIBRINO": (2.0, 4.0, 2.5),
    }
    units = {"ALT": "U/L", "K": "mmol/L", "HGB": "g/L", "NEUT": "10^9/L", "FIBRINO": "g/L"}
    lln = np.array([spec[t][0] for t in tests])
    uln = np.array([spec[t][1] for t in tests])
    value = np.array([spec[t][2] for t in tests]) * rng.lognormal(0, 0.6, n)
    lln[rng.random(n) < 0.1] = np.nan
    obs = pd.DataFrame(
        {
            "subject_id": [f"S{i % 7}" for i in range(n)],
            "test": tests,
            "value": value,
            "unit": [units[t] for t in tests],
            "ref_low": lln,
            "ref_high": uln,
        }
    )
    baselines = pd.DataFrame(
        {
            "subject_id": [f"S{i}" for i in range(5)],
            "test": ["ALT", "ALT", "FIBRINO", "FIBRINO", "ALT"],
            "baseline": [30.0, 90.0, 1.5, 3.0, 41.0],
        }
    )
    graded = derive_lab_grades(obs, baselines=baselines)
    lookup = {(s, t): b for s, t, b in baselines.itertuples(index=False)}
    for i in range(n):
        row = obs.iloc[i]
        for side in ("low", "high"):
            term = graded[f"term_{side}"].iloc[i]
            if pd.isna(term):
                continue
            expected = grade_lab(
                term,
                row["value"],
                row["unit"],
                lln=None if np.isnan(row["ref_low"]) else row["ref_low"],
                uln=None if np.isnan(row["ref_high"]) else row["ref_high"],
                baseline=lookup.get((row["subject_id"], row["test"])),
            )
            got = graded[f"grade_{side}"].iloc[i]
            assert (None if got is pd.NA else int(got)) == expected, (i, term)


def test_baselines_must_be_one_per_subject_and_test() -> None:
    doubled = pd.concat([BASELINES, BASELINES.iloc[:1]])
    with pytest.raises(DataError, match="several rows"):
        derive_lab_grades(observations(), baselines=doubled)


def test_missing_columns_are_named() -> None:
    with pytest.raises(DataError, match="ref_high"):
        derive_lab_grades(observations().drop(columns=["ref_high"]))


def test_empty_frame() -> None:
    graded = derive_lab_grades(observations().iloc[:0])
    assert len(graded) == 0 and "grade_low" in graded


def test_anticoagulated_subjects_grade_inr_on_baseline() -> None:
    obs = pd.DataFrame(
        {
            "subject_id": ["S1", "S2"],
            "test": ["INR", "INR"],
            "value": [2.6, 2.6],
            "unit": ["1", "1"],
            "ref_low": [0.8, 0.8],
            "ref_high": [1.2, 1.2],
        }
    )
    baselines = pd.DataFrame(
        {
            "subject_id": ["S1", "S2"],
            "test": ["INR", "INR"],
            "baseline": [2.0, 1.0],
            "anticoagulated": [True, False],
        }
    )
    graded = derive_lab_grades(obs, baselines=baselines)
    # S1 on anticoagulation: 1.3 x baseline → 1; S2 not: >2.5 → 3
    assert graded["grade_high"].tolist() == [1, 3]


def test_baselines_of_subjects_with_large_codes_are_their_own() -> None:
    """Subject codes × tests beyond int16 (the study frame's categorical codes are int16 from
    128 subjects on) must still find each subject's own baseline, never another's."""
    subjects = [f"S{i:05d}" for i in range(5000)]
    tests = ["ALT", "CREAT", "K", "HGB", "PLAT", "NEUT", "LYM", "SODIUM", "ALB", "CK"]
    obs = pd.DataFrame(
        {
            "subject_id": pd.Categorical(["S04999", "S04998"], categories=subjects),
            "test": pd.Categorical(["ALT", "ALT"], categories=tests),
            "value": [150.0, 150.0],
            "unit": ["U/L", "U/L"],
            "ref_low": [0.0, 0.0],
            "ref_high": [40.0, 40.0],
        }
    )
    assert obs["subject_id"].cat.codes.dtype == np.int16
    baselines = pd.DataFrame(
        {
            "subject_id": ["S04999", "S04998", "S00001"],
            "test": ["ALT", "ALT", "ALT"],
            "baseline": [100.0, 30.0, 10.0],  # abnormal, normal, and a decoy
            "ref_low": [0.0, 0.0, 0.0],
            "ref_high": [40.0, 40.0, 40.0],
        }
    )
    graded = derive_lab_grades(obs, baselines=baselines)
    # S04999: abnormal baseline 100, 1.5 × baseline → 1; S04998: normal, 3.75 × ULN → 2
    expected = [
        grade_lab(ALT, 150.0, "U/L", uln=40.0, baseline=100.0),
        grade_lab(ALT, 150.0, "U/L", uln=40.0, baseline=30.0),
    ]
    assert expected == [1, 2]
    assert [_plain(g) for g in graded["grade_high"]] == expected


def test_a_row_without_a_subject_has_no_baseline() -> None:
    """A missing baseline is taken as normal (conventions.yaml): ALT 130 U/L, ULN 40 is
    3.25 x ULN, grade 2 ("> 3.0 - 5.0 x ULN if baseline was normal"), flagged; S1's row with its
    normal baseline of 30 is graded alike but not flagged."""
    frame = pd.DataFrame(
        {
            "subject_id": [None, "S1"],
            "test": ["ALT", "ALT"],
            "value": [130.0, 130.0],
            "unit": ["U/L", "U/L"],
            "ref_low": [0.0, 0.0],
            "ref_high": [40.0, 40.0],
        }
    )
    for subjects in (frame, frame.astype({"subject_id": "category"})):
        graded = derive_lab_grades(subjects, baselines=BASELINES)
        assert graded["grade_high"].tolist() == [2, 2]
        assert graded["assumed_normal_baseline_high"].tolist() == [True, False]
