"""Nominal visit assignment: window edges, overlaps, duplicates within a visit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from celltrial.efficacy import derive_nominal_visits
from celltrial.errors import DataError

from .handmade import T0, observations

VISITS = pd.DataFrame(
    {
        "visit": ["baseline", "day 3", "day 7"],
        "day": [0, 3, 7],
        "window_before": [1, 1, 2],
        "window_after": [0, 1, 2],
    }
)


def at_days(days: list[float]) -> pd.DataFrame:
    return observations(
        [
            {
                "subject_id": f"S{i}",
                "study_day": d,
                "time": T0 + pd.Timedelta(days=0 if np.isnan(d) else d),
            }
            for i, d in enumerate(days)
        ]
    )


@pytest.mark.parametrize(
    ("day", "visit"),
    [
        (4.0, "day 3"),  # upper edge of day 3 (window 3 ± 1)
        (4.99, None),  # just outside
        (5.0, "day 7"),  # at the lower edge
        (5.01, "day 7"),  # just inside
        (8.99, "day 7"),  # just inside the upper edge
        (9.0, "day 7"),  # at the upper edge
        (9.01, None),  # just outside
        (-1.0, "baseline"),  # baseline lower edge
        (-1.01, None),
        (0.0, "baseline"),  # baseline has no window after
        (0.5, None),
        (2.0, "day 3"),
        (1.99, None),
    ],
)
def test_window_edges_are_inclusive(day: float, visit: str | None) -> None:
    result = derive_nominal_visits(at_days([day]), VISITS)
    if visit is None:
        assert pd.isna(result["visit"].iloc[0]) and result["unscheduled"].iloc[0]
        assert pd.isna(result["window_visit"].iloc[0])
    else:
        assert result["visit"].iloc[0] == visit and not result["unscheduled"].iloc[0]
        assert result["visit_day"].iloc[0] == VISITS.set_index("visit").loc[visit, "day"]


def test_overlapping_windows_nearest_day_wins_ties_to_earlier() -> None:
    visits = pd.DataFrame(
        {"visit": ["A", "B"], "day": [4, 8], "window_before": [3, 3], "window_after": [3, 3]}
    )
    result = derive_nominal_visits(at_days([5, 6, 7]), visits)
    # day 5 → A (1 vs 3), day 6 → equidistant → the earlier visit A, day 7 → B
    assert list(result["visit"]) == ["A", "A", "B"]


def test_one_observation_per_subject_test_visit_the_rest_unscheduled() -> None:
    frame = observations(
        [
            {"study_day": 6, "time": T0 + pd.Timedelta(days=6, hours=2), "value": 1.0},
            {"study_day": 8, "time": T0 + pd.Timedelta(days=8), "value": 2.0},
            {"study_day": 6, "time": T0 + pd.Timedelta(days=6, hours=1), "value": 3.0},
            {"study_day": 7, "time": T0 + pd.Timedelta(days=7, hours=5), "value": np.nan},
            {"study_day": 6, "time": T0 + pd.Timedelta(days=6), "value": 4.0, "test": "LYM"},
        ]
    )
    result = derive_nominal_visits(frame, VISITS)
    # row 3 is on the nominal day but has no value; rows 0 and 2 tie at distance 1 and
    # row 1 too; the earliest time (row 2) wins; LYM is a separate test
    assert list(result["unscheduled"]) == [True, True, False, True, False]
    assert list(result["window_visit"]) == ["day 7"] * 5
    assert result.loc[2, "visit"] == "day 7" and pd.isna(result.loc[0, "visit"])
    assert len(result) == len(frame)  # nothing dropped


def test_closest_to_nominal_day_beats_earlier_time() -> None:
    frame = observations(
        [
            {"study_day": 5, "time": T0 + pd.Timedelta(days=5)},
            {"study_day": 7, "time": T0 + pd.Timedelta(days=7)},
        ]
    )
    assert list(derive_nominal_visits(frame, VISITS)["unscheduled"]) == [True, False]


def test_missing_study_day_is_unscheduled_and_input_not_mutated() -> None:
    frame = at_days([np.nan, 3.0])
    before = frame.copy()
    result = derive_nominal_visits(frame, VISITS)
    assert list(result["unscheduled"]) == [True, False]
    pd.testing.assert_frame_equal(frame, before)
    assert "visit" not in frame.columns


@pytest.mark.parametrize(
    ("visits", "match"),
    [
        (VISITS.drop(columns="window_after"), "window_after"),
        (VISITS.assign(visit=["a", "a", "b"]), "appear twice"),
        (VISITS.assign(window_before=[1, -1, 2]), "≥ 0"),
        (VISITS.assign(day=[0, np.nan, 7]), "finite number"),
    ],
)
def test_bad_visit_table_raises(visits: pd.DataFrame, match: str) -> None:
    with pytest.raises(DataError, match=match):
        derive_nominal_visits(at_days([1.0]), visits)


def test_duplicate_index_labels_are_harmless() -> None:
    frame = at_days([3.0, 3.0, 7.0]).assign(subject_id="S1")
    frame.index = [5, 5, 2]
    result = derive_nominal_visits(frame, VISITS)
    assert list(result.index) == [5, 5, 2]
    assert list(result["visit"]) == ["day 3", None, "day 7"]
