"""Time to lymphocyte normalisation, treated vs matched controls, checked against hand-worked
Kaplan–Meier values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from celltrial.external.normalisation import derive_normalisation_times, summarize_normalisation
from celltrial.external.spec import load_target_trial

SPEC = load_target_trial()  # LYM >= 1.1 within 14 days
T0 = pd.Timestamp("2020-02-10 02:00", tz="UTC")


def rows(subject: str, arm: str, values: list[tuple[float, float]], base: float) -> list[dict]:
    """Aligned rows: a baseline value and (hours, value) pairs after time zero."""
    out = [
        {
            "subject_id": subject,
            "arm": arm,
            "marker": "LYM",
            "hours": -6.0,
            "value": base,
            "is_baseline": True,
        }
    ]
    out += [
        {
            "subject_id": subject,
            "arm": arm,
            "marker": "LYM",
            "hours": h,
            "value": v,
            "is_baseline": False,
        }
        for h, v in values
    ]
    return out


ALIGNED = pd.DataFrame(
    rows("T1", "treated", [(24, 0.7), (72, 1.1), (120, 1.3)], 0.5)  # normalises at day 3
    + rows("T2", "treated", [(48, 0.6), (240, 0.9)], 0.6)  # censored at its last value, day 10
    + rows("C1", "external", [(72, 0.8), (168, 1.2)], 0.4)  # normalises at day 7
    + rows("C2", "external", [(48, 0.5), (144, 1.4)], 0.5)  # dies on day 5, before day 6's value
    + rows("C3", "external", [(48, 1.5)], 1.2)  # normal at baseline: not at risk
    + rows("T3", "treated", [(400, 1.5)], 0.5)  # normalises after the 14-day window: censored
)
OUTCOMES = pd.DataFrame(
    {
        "subject_id": ["T1", "T2", "T3", "C1", "C2", "C3"],
        "arm": ["treated"] * 3 + ["external"] * 3,
        "time_zero": [T0] * 6,
        "died": [pd.NaT, pd.NaT, pd.NaT, pd.NaT, T0 + pd.Timedelta(days=5), pd.NaT],
    }
)


def test_times_events_and_censoring():
    times = derive_normalisation_times(ALIGNED, OUTCOMES, spec=SPEC).set_index("subject_id")
    assert "C3" not in times.index
    assert times.loc["T1", ["duration", "event"]].tolist() == [3.0, True]
    assert times.loc["T2", ["duration", "event"]].tolist() == [10.0, False]
    assert times.loc["T3", ["duration", "event", "status"]].tolist() == [
        0.0,
        False,
        "censored at last value",
    ]
    assert times.loc["C1", ["duration", "event"]].tolist() == [7.0, True]
    assert times.loc["C2", ["duration", "event", "status"]].tolist() == [
        5.0,
        False,
        "died before normalising",
    ]


def test_kaplan_meier_by_hand():
    times = derive_normalisation_times(ALIGNED, OUTCOMES, spec=SPEC)
    result = summarize_normalisation(times, pd.Series({"C1": 1.0, "C2": 1.0}), spec=SPEC)
    arms = result.summary.set_index("arm")
    # treated: T3 censored at 0, T1 event at 3 (2 at risk: T1, T2) -> S = 1/2; T2 censored at 10
    assert arms.loc["treated", "proportion_by_horizon"] == pytest.approx(0.5)
    assert arms.loc["treated", "median_days"] == 3.0
    # controls: C2 censored at 5, C1 event at 7 with 1 at risk -> S = 0
    assert arms.loc["external", "proportion_by_horizon"] == pytest.approx(1.0)
    assert arms.loc["external", "median_days"] == 7.0
    assert arms.loc["external", "died_first"] == 1
    assert result.difference == pytest.approx(-0.5)
    assert np.isfinite(result.difference_ci).all()
    assert result.difference_ci[0] <= -0.5 <= result.difference_ci[1]


def test_control_weights_count():
    times = derive_normalisation_times(ALIGNED, OUTCOMES, spec=SPEC)
    # C2 weighted 3: at day 5 it leaves (censored) -> C1 alone at day 7 -> still S = 0
    result = summarize_normalisation(times, pd.Series({"C1": 1.0, "C2": 3.0}), spec=SPEC)
    assert result.summary.set_index("arm").loc["external", "proportion_by_horizon"] == 1.0
