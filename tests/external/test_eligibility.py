"""Eligibility rules at their edges; the landmark never looks at later data or outcomes."""

import numpy as np
import pandas as pd
import pytest

from celltrial.external.eligibility import (
    derive_control_landmarks,
    derive_treated_eligibility,
    derive_window_values,
    summarize_eligibility,
)
from celltrial.external.spec import load_target_trial
from tests.external.handmade import hours, observations, subjects

SPEC = load_target_trial()  # LYM < 0.8, CRP > 40 (HSCRP in controls), 18 <= age <= 85, 72 h


def _treated(lym: float, crp: float, age: float = 60.0) -> pd.DataFrame:
    subj = subjects([{"subject_id": "T1", "age": age, "first_infusion": hours(100)}])
    obs = observations([("T1", 90, "LYM", lym), ("T1", 90, "CRP", crp), ("T1", 90, "NEUT", 5)])
    return derive_treated_eligibility(subj, obs, spec=SPEC)


@pytest.mark.parametrize(
    ("lym", "crp", "age", "eligible"),
    [
        (0.79, 41, 60, True),
        (0.8, 41, 60, False),  # LYM < 0.8 is strict
        (0.79, 40, 60, False),  # CRP > 40 is strict
        (0.79, 40.1, 60, True),
        (0.79, 41, 18, True),  # age >= 18 keeps 18
        (0.79, 41, 17.9, False),
        (0.79, 41, 85, True),  # age <= 85 keeps 85
        (0.79, 41, 85.1, False),
    ],
)
def test_each_rule_at_its_edge(lym, crp, age, eligible):
    row = _treated(lym, crp, age).iloc[0]
    assert bool(row["eligible"]) is eligible
    assert (row["reason"] == "") is eligible


def test_window_edges_are_half_open():
    zero = pd.DataFrame(
        {"subject_id": ["A", "A", "A"], "time_zero": [hours(72), hours(72.01), hours(0)]}
    )
    obs = observations([("A", 0, "LYM", 0.5)])
    found = derive_window_values(obs, zero, test="LYM", window=pd.Timedelta(hours=72))
    # at exactly T0 - 72 h: in; just after 72 h: out; at T0 itself: out
    assert found["value"].tolist()[0] == 0.5
    assert np.isnan(found["value"].tolist()[1])
    assert np.isnan(found["value"].tolist()[2])


def test_treated_value_at_the_infusion_time_is_not_baseline():
    subj = subjects([{"subject_id": "T1", "first_infusion": hours(100)}])
    obs = observations([("T1", 90, "LYM", 1.5), ("T1", 100, "LYM", 0.5), ("T1", 90, "CRP", 80)])
    row = derive_treated_eligibility(subj, obs, spec=SPEC).iloc[0]
    assert row["LYM"] == 1.5 and not row["eligible"]


def test_treated_crp_rule_reads_crp_not_hscrp():
    subj = subjects([{"subject_id": "T1", "first_infusion": hours(100)}])
    obs = observations([("T1", 90, "LYM", 0.5), ("T1", 90, "HSCRP", 80)])
    row = derive_treated_eligibility(subj, obs, spec=SPEC).iloc[0]
    assert not row["eligible"] and "CRP > 40" in row["reason"]


def _controls(extra=(), **subject):
    subj = subjects([{"subject_id": "C1", "discharged": hours(500)} | subject])
    rows = [("C1", 30, "LYM", 0.9), ("C1", 30, "HSCRP", 60), ("C1", 50, "LYM", 0.6)]
    return subj, observations([*rows, *extra])


def test_landmark_is_the_first_day_every_rule_is_met():
    subj, obs = _controls()
    row = derive_control_landmarks(subj, obs, spec=SPEC).iloc[0]
    # landmarks at admission + 24 h steps: 24 h (no values yet), 48 h (LYM 0.9: no), 72 h (0.6)
    assert row["eligible"] and row["landmark"] == 3
    assert row["time_zero"] == hours(72)
    assert row["LYM"] == 0.6 and row["CRP"] == 60


def test_landmark_does_not_depend_on_later_data_or_outcome():
    subj, obs = _controls()
    first = derive_control_landmarks(subj, obs, spec=SPEC).iloc[0]
    later = [("C1", 80, "LYM", 5.0), ("C1", 90, "HSCRP", 1.0), ("C1", 200, "LYM", 0.1)]
    subj_died = subj.assign(died=pd.to_datetime([hours(120)], utc=True))
    again = derive_control_landmarks(subj_died, pd.concat([obs, observations(later)]), spec=SPEC)
    again = again.iloc[0]
    assert again["time_zero"] == first["time_zero"]
    assert again["LYM"] == first["LYM"] and again["CRP"] == first["CRP"]
    # truncating everything after time zero changes nothing either
    before = obs[obs["time"] < first["time_zero"]]
    cut = derive_control_landmarks(subj, before, spec=SPEC).iloc[0]
    assert cut["time_zero"] == first["time_zero"]


def test_records_end_at_the_last_observation_without_discharge_or_death():
    subj, obs = _controls(discharged=pd.NaT)  # records end at 50 h: landmarks 0-2 only
    row = derive_control_landmarks(subj, obs, spec=SPEC).iloc[0]
    assert not row["eligible"]


def test_no_landmark_after_discharge_or_death():
    subj, obs = _controls(discharged=hours(72))  # discharged at the would-be landmark
    row = derive_control_landmarks(subj, obs, spec=SPEC).iloc[0]
    assert not row["eligible"] and pd.isna(row["time_zero"])
    assert "never met" in row["reason"]
    subj, obs = _controls(died=hours(0), discharged=pd.NaT)  # no landmark while alive
    row = derive_control_landmarks(subj, obs, spec=SPEC).iloc[0]
    assert row["reason"] == "left hospital or died before the first landmark"


def test_controls_use_hscrp_never_crp():
    subj = subjects([{"subject_id": "C1", "discharged": hours(500)}])
    obs = observations([("C1", 30, "LYM", 0.5), ("C1", 30, "CRP", 60)])
    row = derive_control_landmarks(subj, obs, spec=SPEC).iloc[0]
    assert not row["eligible"] and row["reason"] == "never met: CRP > 40"


def test_attrition_counts():
    subj = subjects(
        [
            {"subject_id": "C1", "discharged": hours(500)},
            {"subject_id": "C2", "age": 90, "discharged": hours(500)},
        ]
    )
    obs = observations([("C1", 30, "LYM", 0.5), ("C1", 30, "HSCRP", 60)])
    frame = derive_control_landmarks(subj, obs, spec=SPEC)
    result = summarize_eligibility(frame, spec=SPEC)
    assert result.n == 2 and result.n_eligible == 1
    assert dict(zip(result.summary["status"], result.summary["n"], strict=True)) == {
        "eligible": 1,
        "never met: age <= 85": 1,
    }
    assert any("hs-CRP" in c for c in result.caveats)
