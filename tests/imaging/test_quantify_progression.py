"""Scores, quantification bookkeeping, progression and trajectories."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from celltrial.errors import DataError
from celltrial.imaging.lungs import compute_zones
from celltrial.imaging.progression import (
    classify_change,
    derive_ct_trajectory,
    summarize_progression,
)
from celltrial.imaging.quantify import compute_zone_score, summarize_ct


@pytest.mark.parametrize(
    ("pct", "score"),
    [
        (0, 0),
        (0.49, 0),
        (0.5, 1),
        (4.99, 1),
        (5, 2),
        (25, 3),
        (49.9, 3),
        (50, 4),
        (75, 5),
        (100, 5),
    ],
)
def test_zone_score_boundaries(pct, score):
    assert compute_zone_score(pct) == score


def _scan(lesion_rows: int):
    lungs = np.zeros((9, 10, 10), np.uint8)
    lungs[:, :, :5] = 1
    lungs[:, :, 5:] = 2
    lesions = np.zeros_like(lungs)
    lesions[:lesion_rows, :, :5] = 1  # lower third(s) of the right lung: ground-glass
    lesions[:lesion_rows, :2, :5] = 2
    hu = np.full(lungs.shape, -850, np.int16)
    return summarize_ct(hu, lungs, lesions, spacing=(1.0, 1.0, 1.0))


def test_zones_are_thirds_upper_first():
    lungs = np.ones((9, 2, 2), np.uint8)
    zones = compute_zones(lungs)
    assert zones[8, 0, 0] == 1 and zones[4, 0, 0] == 2 and zones[0, 0, 0] == 3


def test_quantification_volumes_and_score():
    q = _scan(3)
    assert q.lung_ml == pytest.approx(0.9)
    assert q.ground_glass_ml == pytest.approx(0.12)
    assert q.consolidation_ml == pytest.approx(0.03)
    right_lower = q.summary.query("lung == 'right' and zone == 'lower'").iloc[0]
    assert right_lower["involvement_pct"] == pytest.approx(100.0)
    assert q.score == 5
    assert q.well_aerated_pct == pytest.approx(100.0)
    assert q.to_dict()["zones"]["right_lower"]["score"] == 5


def test_progression_per_zone_and_overall():
    before, after = _scan(3), _scan(6)
    change = summarize_progression(before, after)
    assert change.status == "progressed"
    assert change.score_change == 5
    assert summarize_progression(after, before).status == "improved"
    assert summarize_progression(before, before).status == "stable"


def test_classify_change_thresholds():
    # defaults: stable below 2 percentage points or below 25 % relative change
    assert classify_change(10, 11.9, 100, 119) == "stable"
    assert classify_change(10, 12, 100, 120) == "stable"  # 20 % relative
    assert classify_change(10, 12.6, 100, 126) == "progressed"
    assert classify_change(4.9, 0.2, 220, 9) == "improved"
    assert classify_change(10, 16, 100, 160) == "progressed"
    assert classify_change(10, 16, 100, 160, stable_pct_points=10) == "stable"


def test_trajectory_against_baseline():
    frame = pd.DataFrame(
        {
            "subject_id": ["A"] * 3,
            "study_day": [-1, 7, 14],
            "lesion_ml": [200.0, 120.0, 40.0],
            "involvement_pct": [20.0, 12.0, 4.0],
            "score": [10, 8, 4],
        }
    )
    out = derive_ct_trajectory(frame)
    assert list(out["status"]) == ["baseline", "improved", "improved"]
    assert "status" not in frame
    with pytest.raises(DataError):
        derive_ct_trajectory(frame.drop(columns="score"))
