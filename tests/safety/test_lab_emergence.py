"""Treatment-emergent lab toxicities, and abnormalities that were there before treatment.

Hand-made graded frames (grades as :func:`derive_lab_grades` gives them); the expected counts are
worked out by hand from the rule in ``conventions.yaml``: a value after the first infusion is a
toxicity when its grade is worse than the subject's baseline grade (the last graded value at or
before the first infusion; 0 when there is none).
"""

from __future__ import annotations

import pandas as pd
import pytest

from celltrial.safety.conventions import GradingConventions, load_grading_conventions
from celltrial.safety.tables import (
    derive_first_infusion_flag,
    derive_lab_emergence,
    list_lab_baseline_abnormalities,
    list_lab_toxicities,
    summarize_ae_overview,
    summarize_lab_shifts,
)

T0 = pd.Timestamp("2020-02-10T08:00", tz="UTC")
LYMPH = "Lymphocyte count decreased"
EMERGENT = "Treatment-emergent laboratory toxicity of grade ≥ 3 (worse than baseline)"
PRESENT = (
    "Laboratory abnormality of grade ≥ 3 present before treatment, no worse since (not counted)"
)

# subject, hours from T0, lymphocyte grade (the low side; the high side has no grade)
ROWS = [
    # S1: lymphopenic at baseline (grade 3), six unchanged counts, then one grade 4
    ("S1", -30, 2),
    ("S1", -2, 3),  # the last graded value before the first infusion: baseline grade 3
    ("S1", 24, 3),
    ("S1", 72, 3),
    ("S1", 144, 3),
    ("S1", 216, 3),
    ("S1", 288, 3),
    ("S1", 336, 3),
    ("S1", 480, 4),  # worse than baseline: a toxicity
    # S2: no value before the first infusion: baseline grade taken as 0
    ("S2", 48, 3),
    ("S2", 96, 0),
    # S3: grade 1 at baseline, a grade 2 after (emergent, below grade 3), a grade 3 value at
    # the very time of the first infusion (still baseline: not after it)
    ("S3", -5, 1),
    ("S3", 0, 3),
    ("S3", 50, 3),  # 3 after a baseline grade of 3 (the value at T0): not emergent
    ("S3", 60, 2),
]


def graded_frame() -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "subject_id": [r[0] for r in ROWS],
            "time": [T0 + pd.Timedelta(hours=r[1]) for r in ROWS],
            "test": "LYM",
            "value": [0.4] * len(ROWS),
            "unit": "10^9/L",
            "term_low": pd.Categorical([LYMPH] * len(ROWS)),
            "grade_low": pd.array([r[2] for r in ROWS], dtype="Int8"),
            "term_high": pd.Categorical(
                [None] * len(ROWS), categories=["Lymphocyte count increased"]
            ),
            "grade_high": pd.array([None] * len(ROWS), dtype="Int8"),
        }
    )
    frame["study_day"] = [int(h // 24) for _, h, _ in ROWS]
    first = pd.Series({"S1": T0, "S2": T0, "S3": T0})
    return derive_first_infusion_flag(frame, first)


def _conventions(rule: str) -> GradingConventions:
    shipped = load_grading_conventions()
    te = shipped.treatment_emergent.model_copy(update={"rule": rule})
    return shipped.model_copy(update={"treatment_emergent": te})


def test_emergence_compares_each_value_with_the_subjects_baseline_grade() -> None:
    flagged = derive_lab_emergence(graded_frame())
    baseline = [None if g is pd.NA else int(g) for g in flagged["baseline_grade_low"]]
    assert baseline == [3] * 9 + [None] * 2 + [3] * 4
    assert flagged["emergent_low"].tolist() == [
        *([False] * 8),
        True,  # S1 grade 4 after baseline 3
        True,  # S2 grade 3, no baseline (0)
        False,  # S2 grade 0
        False,  # S3 before
        False,  # S3 at the infusion time: not after it
        False,  # S3 grade 3 = baseline 3
        False,  # S3 grade 2 < 3
    ]
    assert not flagged["emergent_high"].any()  # no term on that side


def test_the_lymphopenic_patient_has_one_toxicity_not_seven() -> None:
    """The issue: unchanged counts of a lymphopenic patient showed as grade ≥ 3 toxicities."""
    frame = graded_frame()
    toxicities = list_lab_toxicities(frame)
    assert toxicities[["subject_id", "grade"]].values.tolist() == [["S1", 4], ["S2", 3]]
    assert [None if g is pd.NA else int(g) for g in toxicities["baseline_grade"]] == [3, None]
    present = list_lab_baseline_abnormalities(frame)
    assert present.to_dict("records") == [
        {
            "subject_id": "S1",
            "test": "LYM",
            "term": LYMPH,
            "baseline_grade": 3,
            "worst_grade": 3,
            "n_values": 6,
            "first_study_day": 1,
            "last_study_day": 14,
        },
        {
            "subject_id": "S3",
            "test": "LYM",
            "term": LYMPH,
            "baseline_grade": 3,
            "worst_grade": 3,
            "n_values": 1,
            "first_study_day": 2,
            "last_study_day": 2,
        },
    ]


def test_the_overview_counts_toxicities_and_shows_baseline_abnormalities_apart() -> None:
    events = pd.DataFrame(
        columns=["subject_id", "grade", "serious", "related", "infusion_related"]
    ).astype({"serious": bool, "related": bool, "infusion_related": bool})
    table = summarize_ae_overview(
        ["S1", "S2", "S3"], events, lab_grades=graded_frame(), window_hours=24
    ).set_index("category")
    assert table.loc[EMERGENT, ["subjects", "subject_ids", "events"]].tolist() == [2, "S1, S2", 2]
    assert table.loc[PRESENT, ["subjects", "subject_ids", "events"]].tolist() == [2, "S1, S3", 7]


def test_counting_every_value_after_the_first_infusion_is_the_other_convention() -> None:
    conventions = _conventions("any_after_first_infusion")
    frame = graded_frame()
    toxicities = list_lab_toxicities(frame, conventions=conventions)
    assert len(toxicities) == 9  # S1 7, S2 1, S3 1 (the value at T0 is not after it)
    assert list_lab_baseline_abnormalities(frame, conventions=conventions).empty
    events = pd.DataFrame(columns=["subject_id", "grade", "serious", "related", "infusion_related"])
    table = summarize_ae_overview(
        ["S1", "S2", "S3"],
        events.astype({"serious": bool, "related": bool, "infusion_related": bool}),
        lab_grades=frame,
        window_hours=24,
        conventions=conventions,
    )
    labels = table["category"].tolist()
    assert "Laboratory toxicity of grade ≥ 3 after the first infusion" in labels
    assert PRESENT not in labels


@pytest.mark.parametrize(("missing_grade", "emergent"), [(0, True), (3, False), (2, True)])
def test_the_baseline_grade_of_a_subject_without_one_is_data(
    missing_grade: int, emergent: bool
) -> None:
    shipped = load_grading_conventions()
    te = shipped.treatment_emergent.model_copy(update={"missing_baseline_grade": missing_grade})
    conventions = shipped.model_copy(update={"treatment_emergent": te})
    flagged = derive_lab_emergence(graded_frame(), conventions=conventions)
    s2_grade_3 = flagged.index[(flagged["subject_id"] == "S2") & (flagged["grade_low"] == 3)]
    assert flagged.loc[s2_grade_3, "emergent_low"].tolist() == [emergent]


def test_the_shift_table_still_shows_the_baseline_grade() -> None:
    shifts = summarize_lab_shifts(graded_frame())
    cells = {(r.baseline, r.worst): r.subjects for r in shifts.itertuples()}
    assert cells == {("3", "4"): 1, ("missing", "3"): 1, ("3", "3"): 1}
