"""WHO clinical progression scale: each category from its definition, and the outcomes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from celltrial.efficacy.clinical_status import derive_who_scale, summarize_clinical_status
from tests.efficacy.handmade import T0


def _status(**columns: object) -> pd.DataFrame:
    frame = pd.DataFrame({"subject_id": "S1", "time": T0, "study_day": 0, **columns}, index=[0])
    return frame


@pytest.mark.parametrize(
    ("support", "extra", "score"),
    [
        # 4 hospitalised, no oxygen therapy
        ("none", {"hospitalised": True}, 4),
        ("room air", {"hospitalised": True}, 4),
        # 5 oxygen by mask or nasal prongs
        ("nasal cannula", {}, 5),
        ("Face mask", {}, 5),
        # 6 high-flow or non-invasive ventilation
        ("high-flow nasal oxygen", {}, 6),
        ("non-invasive ventilation", {}, 6),
        # 7 intubated, P/F ≥ 150 or S/F ≥ 200 (edges: 150 and 200 belong to 7)
        ("invasive ventilation", {"pf_ratio": 150.0}, 7),
        ("invasive ventilation", {"sf_ratio": 200.0}, 7),
        # 8 intubated, P/F < 150 (S/F < 200) or vasopressors
        ("invasive ventilation", {"pf_ratio": 149.9}, 8),
        ("invasive ventilation", {"sf_ratio": 199.0}, 8),
        ("invasive ventilation", {"pf_ratio": 250.0, "vasopressors": True}, 8),
        # P/F wins over S/F when both are known
        ("invasive ventilation", {"pf_ratio": 160.0, "sf_ratio": 150.0}, 7),
        # 9 intubated, P/F < 150 and vasopressors, dialysis or ECMO
        ("invasive ventilation", {"pf_ratio": 120.0, "vasopressors": True}, 9),
        ("invasive ventilation", {"pf_ratio": 120.0, "dialysis": True}, 9),
        ("invasive ventilation", {"pf_ratio": 120.0, "ecmo": True}, 9),
        ("invasive ventilation and vasopressors", {"sf_ratio": 120.0}, 9),
        ("ECMO", {}, 9),
        # dialysis without severe hypoxaemia does not make 9
        ("invasive ventilation", {"pf_ratio": 200.0, "dialysis": True}, 7),
        # 10 dead
        ("dead", {}, 10),
        # 0-3 outside hospital, from symptoms, assistance and infection
        ("none", {"hospitalised": False, "symptomatic": True, "assistance": True}, 3),
        ("none", {"hospitalised": False, "symptomatic": True, "assistance": False}, 2),
        ("none", {"hospitalised": False, "symptomatic": False, "infected": True}, 1),
        ("none", {"hospitalised": False, "infected": False}, 0),
    ],
)
def test_each_category_follows_its_definition(support: str, extra: dict, score: int) -> None:
    frame = derive_who_scale(_status(oxygen_support=support, **extra))
    assert frame.loc[0, "who_derived"] == score
    assert frame.loc[0, "who"] == score
    assert frame.loc[0, "who_source"] == "derived"


def test_unknown_oxygenation_on_ventilator_gives_a_lower_bound() -> None:
    frame = derive_who_scale(_status(oxygen_support="invasive ventilation", who_scale=8))
    assert frame.loc[0, "who_derived"] == 7
    assert "at least 7" in frame.loc[0, "who_rule"]
    assert not frame.loc[0, "who_conflict"]  # recorded 8 ≥ lower bound 7
    assert frame.loc[0, "who"] == 8 and frame.loc[0, "who_source"] == "recorded"


def test_recorded_score_that_contradicts_the_data_is_flagged() -> None:
    frame = derive_who_scale(_status(oxygen_support="nasal cannula", who_scale=7))
    assert frame.loc[0, "who_conflict"]


def test_not_derivable_without_hospital_status() -> None:
    frame = derive_who_scale(_status(oxygen_support="none"))
    assert np.isnan(frame.loc[0, "who_derived"]) and frame.loc[0, "who_source"] == "missing"


def test_subjects_give_death_and_discharge() -> None:
    times = [T0, T0 + pd.Timedelta(days=5), T0 + pd.Timedelta(days=9)]
    status = pd.DataFrame(
        {"subject_id": ["S1", "S1", "S2"], "time": times, "oxygen_support": ["none"] * 3}
    )
    subjects = pd.DataFrame(
        {
            "subject_id": ["S1", "S2"],
            "discharged": [T0 + pd.Timedelta(days=2), pd.NaT],
            "died": [pd.NaT, T0 + pd.Timedelta(days=8)],
        }
    )
    frame = derive_who_scale(status, subjects=subjects)
    assert frame["who_derived"].tolist()[0] == 4  # in hospital, no oxygen
    assert np.isnan(frame["who_derived"].tolist()[1])  # after discharge: symptoms unknown
    assert frame["who_derived"].tolist()[2] == 10  # after death


def test_sf_from_the_oxygenation_frame_nearest_in_time() -> None:
    status = _status(oxygen_support="invasive ventilation")
    oxygenation = pd.DataFrame(
        {
            "subject_id": ["S1", "S1"],
            "time": [T0 - pd.Timedelta(minutes=30), T0 + pd.Timedelta(minutes=200)],
            "sf_ratio": [150.0, 300.0],
            "sf_valid": [True, True],
            "pf_ratio": [np.nan, np.nan],
        }
    )
    frame = derive_who_scale(status, oxygenation=oxygenation)
    assert frame.loc[0, "sf_ratio"] == 150.0 and frame.loc[0, "who_derived"] == 8


def _course(subject: str, scores: list[int], first_day: int = -1) -> pd.DataFrame:
    days = list(range(first_day, first_day + len(scores)))
    return pd.DataFrame({"subject_id": subject, "study_day": days, "who": scores})


def test_outcomes_improvement_discharge_death_and_censoring() -> None:
    status = pd.concat(
        [
            _course("A", [6, 6, 5, 4, 4]),  # improves by 2 on day 2; discharged day 3
            _course("B", [7, 7, 8, 9, 10]),  # dies on day 3
            _course("C", [6, 6, 6, 5]),  # never improves by 2; last seen day 2
        ],
        ignore_index=True,
    )
    day0 = T0
    subjects = pd.DataFrame(
        {
            "subject_id": ["A", "B", "C"],
            "first_infusion": [day0] * 3,
            "discharged": [day0 + pd.Timedelta(days=3), pd.NaT, pd.NaT],
            "died": [pd.NaT, day0 + pd.Timedelta(days=3), pd.NaT],
        }
    )
    result = summarize_clinical_status(status, subjects=subjects, horizon_days=28)
    table = result.summary.set_index("subject_id")
    assert table.loc["A", "baseline_who"] == 6 and table.loc["A", "improved_day"] == 2
    assert table.loc["A", "improvement_time"] == 2 and table.loc["A", "improvement_event"]
    assert table.loc["B", "outcome"] == "died" and table.loc["B", "death_time"] == 3
    # death is the worst outcome: censored at the horizon for improvement and discharge
    assert table.loc["B", "improvement_time"] == 28 and not table.loc["B", "improvement_event"]
    assert table.loc["C", "improvement_time"] == 2 and not table.loc["C", "improvement_event"]
    assert table.loc["C", "outcome"] == "in hospital at last follow-up"
    assert table.loc["A", "discharge_time"] == 3 and table.loc["A", "discharge_event"]
    km = result.time_to_event["improvement"]
    assert km.n_events == 1 and km.survival_at(2) == pytest.approx(2 / 3)
    counts = dict(zip(result.outcomes["outcome"], result.outcomes["n"], strict=True))
    assert counts == {"discharged alive": 1, "died": 1, "in hospital at last follow-up": 1}
