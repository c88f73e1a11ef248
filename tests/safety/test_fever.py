"""CTCAE v5.0 Fever: G1 38.0-39.0 °C, G2 >39.0-40.0 °C, G3 >40.0 °C ≤24 h, G4 >40.0 °C >24 h."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from celltrial.safety import derive_fever_grades, grade_fever


@pytest.mark.parametrize(
    ("temperature", "unit", "expected"),
    [
        (37.99, "degC", 0),
        (38.0, "degC", 1),
        (39.0, "degC", 1),
        (39.01, "degC", 2),
        (40.0, "degC", 2),
        (40.01, "degC", 3),
        (100.39, "degF", 0),
        (100.4, "degF", 1),
        (102.2, "degF", 1),
        (102.3, "degF", 2),
        (104.0, "degF", 2),
        (104.1, "degF", 3),
        (38.5, "mmHg", None),  # not a temperature: not gradable
    ],
)
def test_fever_thresholds(temperature: float, unit: str, expected: int | None) -> None:
    assert grade_fever(temperature, unit) == expected


@pytest.mark.parametrize(("hours", "expected"), [(None, 3), (0.0, 3), (24.0, 3), (24.01, 4)])
def test_fever_duration(hours: float | None, expected: int) -> None:
    assert grade_fever(40.5, "degC", hours_above_40=hours) == expected
    assert grade_fever(39.5, "degC", hours_above_40=hours) == 2  # duration only matters >40


def _vitals(readings: list[tuple[str, float, str, float, str]]) -> pd.DataFrame:
    start = pd.Timestamp("2020-02-10T08:00", tz="UTC")
    return pd.DataFrame(
        {
            "subject_id": [r[0] for r in readings],
            "time": [start + pd.Timedelta(hours=r[1]) for r in readings],
            "test": [r[2] for r in readings],
            "value": [r[3] for r in readings],
            "unit": [r[4] for r in readings],
        }
    )


def test_fever_over_time() -> None:
    vitals = _vitals(
        [
            ("S1", 0.0, "TEMP", 40.2, "degC"),
            ("S1", 8.0, "TEMP", 40.5, "degC"),
            ("S1", 16.0, "TEMP", 104.5, "degF"),  # 40.3 °C
            ("S1", 24.0, "TEMP", 40.1, "degC"),  # exactly 24 h above 40: still grade 3
            ("S1", 30.0, "TEMP", 40.4, "degC"),  # 30 h: grade 4
            ("S1", 31.0, "HR", 120.0, "/min"),  # not a temperature
            ("S1", 32.0, "TEMP", 39.2, "degC"),
            ("S2", 0.0, "TEMP", 40.6, "degC"),
            ("S2", 26.0, "TEMP", 40.6, "degC"),  # 26 h later but a 26 h gap: a new run
            ("S2", 27.0, "TEMP", 37.0, "degC"),
        ]
    )
    shuffled = vitals.sample(frac=1.0, random_state=1)
    graded = derive_fever_grades(shuffled).loc[vitals.index]
    assert graded["fever_grade"].astype(object).tolist() == [3, 3, 3, 3, 4, pd.NA, 2, 3, 3, 0]
    np.testing.assert_allclose(
        graded["hours_above_40"].to_numpy(),
        [0, 8, 16, 24, 30, np.nan, np.nan, 0, 0, np.nan],
    )
    assert "fever_grade" not in shuffled.columns  # input untouched
