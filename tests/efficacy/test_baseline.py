"""Baseline = last value strictly before the first infusion, within the window."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from celltrial.efficacy import derive_baseline, derive_change_from_baseline
from celltrial.errors import CelltrialError, DataError

from .handmade import T0, observations

FIRST = pd.Series({"S1": T0})
WINDOW = 3.0


def baseline_of(offsets: list[pd.Timedelta], values: list[float] | None = None) -> pd.DataFrame:
    values = values or [float(i + 1) for i in range(len(offsets))]
    frame = observations(
        [{"time": T0 + off, "value": v} for off, v in zip(offsets, values, strict=True)]
    )
    return derive_baseline(frame, first_infusion=FIRST, window_days=WINDOW)


second = pd.Timedelta(seconds=1)
edge = -pd.Timedelta(days=WINDOW)


@pytest.mark.parametrize(
    ("offset", "is_baseline"),
    [
        (edge - second, False),  # just outside the window
        (edge, True),  # at the window edge: inside
        (edge + second, True),  # just inside
        (-second, True),  # just before the infusion
        (pd.Timedelta(0), False),  # at the infusion: not baseline
        (second, False),  # after the infusion
    ],
)
def test_window_edges(offset: pd.Timedelta, is_baseline: bool) -> None:
    result = baseline_of([offset])
    assert bool(result["is_baseline"].iloc[0]) is is_baseline
    assert (result["baseline"].iloc[0] == 1.0) if is_baseline else np.isnan(result["baseline"][0])


def test_last_non_missing_value_before_infusion_wins() -> None:
    hours = [-30, -5, -2, 1, 30]
    result = baseline_of([pd.Timedelta(hours=h) for h in hours], [10.0, 20.0, np.nan, 40.0, 50.0])
    assert list(result["is_baseline"]) == [False, True, False, False, False]
    assert (result["baseline"] == 20.0).all()
    assert (result["baseline_time"] == T0 - pd.Timedelta(hours=5)).all()


def test_same_time_tie_takes_last_row_and_tests_are_separate() -> None:
    frame = observations(
        [
            {"time": T0 - pd.Timedelta(hours=1), "value": 1.0},
            {"time": T0 - pd.Timedelta(hours=1), "value": 2.0},
            {"time": T0 - pd.Timedelta(hours=2), "value": 7.0, "test": "LYM"},
            {"subject_id": "S2", "time": T0 - pd.Timedelta(hours=1), "value": 9.0},
        ]
    )
    before = frame.copy()
    result = derive_baseline(frame, first_infusion=FIRST, window_days=WINDOW)
    assert list(result["is_baseline"]) == [False, True, True, False]
    assert list(result["baseline"].iloc[:3]) == [2.0, 2.0, 7.0]
    assert np.isnan(result["baseline"].iloc[3])  # S2 has no first infusion
    pd.testing.assert_frame_equal(frame, before)


def test_other_time_zones_compare_as_instants() -> None:
    first = pd.Series({"S1": T0.tz_convert("Asia/Shanghai")})
    frame = observations([{"time": T0 - second, "value": 5.0}])
    result = derive_baseline(frame, first_infusion=first, window_days=WINDOW)
    assert result["is_baseline"].iloc[0]


@pytest.mark.parametrize(
    ("first", "window", "error", "match"),
    [
        (pd.Series({"S1": T0.tz_localize(None)}), 3.0, DataError, "timezone-aware"),
        (pd.Series([T0, T0], index=["S1", "S1"]), 3.0, DataError, "appears twice"),
        (FIRST, 0.0, CelltrialError, "window_days"),
    ],
)
def test_bad_input(first: pd.Series, window: float, error: type, match: str) -> None:
    frame = observations([{"time": T0 - second}])
    with pytest.raises(error, match=match):
        derive_baseline(frame, first_infusion=first, window_days=window)


def test_naive_observation_times_rejected() -> None:
    frame = observations([{"time": pd.Timestamp("2020-02-10")}])
    with pytest.raises(DataError, match="timezone-aware"):
        derive_baseline(frame, first_infusion=FIRST, window_days=WINDOW)


def test_change_percentage_and_fold_change_after_baseline_only() -> None:
    result = derive_change_from_baseline(
        baseline_of([pd.Timedelta(hours=h) for h in (-10, -1, 24, 48)], [30.0, 40.0, 10.0, 50.0])
    )
    assert np.isnan(result["change"].iloc[:2]).all()  # before and at baseline
    assert list(result["change"].iloc[2:]) == [-30.0, 10.0]
    assert list(result["pct_change"].iloc[2:]) == [-75.0, 25.0]
    assert list(result["fold_change"].iloc[2:]) == [0.25, 1.25]


def test_zero_baseline_gives_no_percentage() -> None:
    result = derive_change_from_baseline(
        baseline_of([pd.Timedelta(hours=-1), pd.Timedelta(hours=1)], [0.0, 2.0])
    )
    assert result["change"].iloc[1] == 2.0
    assert np.isnan(result["pct_change"].iloc[1]) and np.isnan(result["fold_change"].iloc[1])


def test_change_needs_baseline_columns() -> None:
    with pytest.raises(DataError, match="derive_baseline"):
        derive_change_from_baseline(observations([{"value": 1.0}]))


def test_duplicate_index_labels_are_harmless() -> None:
    frame = observations(
        [{"time": T0 - pd.Timedelta(hours=h), "value": float(h)} for h in (5, 2, -3)]
    )
    frame.index = [1, 1, 0]
    result = derive_change_from_baseline(
        derive_baseline(frame, first_infusion=FIRST, window_days=WINDOW)
    )
    assert list(result["is_baseline"]) == [False, True, False]
    assert result["change"].iloc[2] == -3.0 - 2.0


def test_no_infusion_given_yet_means_no_baseline() -> None:
    """Screening labs imported before any infusion: no baseline, no change, no crash."""
    frame = observations([{"time": T0, "value": 3.0}])
    none_yet = pd.Series([], dtype="datetime64[ns, UTC]")
    result = derive_change_from_baseline(
        derive_baseline(frame, first_infusion=none_yet, window_days=WINDOW)
    )
    assert not result["is_baseline"].any() and result["baseline"].isna().all()
    assert result["baseline_time"].isna().all()


def test_selected_rows_are_the_baseline_rows() -> None:
    from celltrial.efficacy.baseline import select_baseline_rows

    offsets = [-pd.Timedelta(hours=h) for h in (30, 2, 2, 1)] + [pd.Timedelta(hours=1)]
    frame = observations([{"time": T0 + off, "value": 1.0} for off in offsets])
    chosen = select_baseline_rows(frame, first_infusion=FIRST, window_days=WINDOW)
    full = derive_baseline(frame, first_infusion=FIRST, window_days=WINDOW)
    assert chosen.tolist() == full["is_baseline"].tolist() == [False, False, False, True, False]
