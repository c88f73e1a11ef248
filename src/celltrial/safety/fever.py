"""CTCAE v5.0 "Fever" graded from body temperatures, including its duration rule.

Grade 1 is 38.0-39.0 °C, grade 2 >39.0-40.0 °C, grade 3 >40.0 °C for at most 24 h and grade 4
>40.0 °C for more than 24 h. The temperature thresholds are the "Fever" rows of the criteria file;
the duration rule needs the time course, so it lives here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from celltrial.frames import check_columns
from celltrial.safety.criteria import CriteriaTable, load_ctcae_criteria
from celltrial.safety.grading import compute_lab_grades, grade_lab
from celltrial.units import convert

__all__ = ["FEVER_G4_HOURS", "derive_fever_grades", "grade_fever"]

#: CTCAE v5.0: fever above 40.0 °C for more than this many hours is grade 4.
FEVER_G4_HOURS = 24.0
_TERM = "Fever"
_TEST = "TEMP"


def grade_fever(
    temperature: float,
    unit: str = "degC",
    *,
    hours_above_40: float | None = None,
    criteria: CriteriaTable | None = None,
) -> int | None:
    """Fever grade of one temperature; ``hours_above_40`` (how long it has been >40.0 °C)
    turns grade 3 into grade 4 beyond 24 h. None when the unit is not a temperature."""
    grade = grade_lab(_TERM, temperature, unit, criteria=criteria)
    if grade == 3 and hours_above_40 is not None and hours_above_40 > FEVER_G4_HOURS:
        return 4
    return grade


def derive_fever_grades(
    vitals: pd.DataFrame,
    *,
    max_gap_hours: float = 12.0,
    criteria: CriteriaTable | None = None,
) -> pd.DataFrame:
    """A new frame: ``vitals`` plus ``fever_grade`` (Int8) and ``hours_above_40`` on TEMP rows.

    Consecutive readings of one subject above 40.0 °C form a run; a reading of the run taken
    more than 24 h after its first one is grade 4. Two readings further apart than
    ``max_gap_hours`` never belong to one run: a fever is not assumed to have lasted through
    a long gap without measurements. Other rows get NA.
    """
    check_columns(vitals, ("subject_id", "time", "test", "value", "unit"), what="vitals")
    table = criteria or load_ctcae_criteria()
    result = vitals.copy(deep=False)
    grades = np.full(len(vitals), np.nan)
    hours = np.full(len(vitals), np.nan)
    temp_rows = np.flatnonzero((vitals["test"] == _TEST).to_numpy(dtype=bool, na_value=False))
    if len(temp_rows):
        temps = vitals.iloc[temp_rows]
        celsius = np.full(len(temps), np.nan)
        units = temps["unit"].astype(str).to_numpy()
        raw = temps["value"].to_numpy(dtype=np.float64, na_value=np.nan)
        for unit in np.unique(units):
            rows = units == unit
            celsius[rows] = convert(raw[rows], unit, "degC")
        subjects = temps["subject_id"].astype(str).to_numpy()
        times = pd.to_datetime(temps["time"], utc=True).dt.tz_localize(None).to_numpy()
        order = np.lexsort((times, subjects))
        g = compute_lab_grades(_TERM, celsius[order], "degC", criteria=table)
        g = g.to_numpy(dtype=np.float64, na_value=np.nan)
        elapsed = _hours_in_run(subjects[order], times[order], g == 3, max_gap_hours)
        g[(g == 3) & (elapsed > FEVER_G4_HOURS)] = 4
        grades[temp_rows[order]] = g
        hours[temp_rows[order]] = elapsed
    grade = pd.array(grades, dtype="Float64").astype("Int8")
    result["fever_grade"] = grade
    result["hours_above_40"] = hours
    return result


def _hours_in_run(
    subjects: np.ndarray, times: np.ndarray, above: np.ndarray, max_gap_hours: float
) -> np.ndarray:
    """Hours since the first reading of the current >40 °C run (NaN when not above)."""
    n = len(subjects)
    if n == 0:
        return np.zeros(0)
    hours = (times - times[0]) / np.timedelta64(1, "h")
    same_subject = np.r_[False, subjects[1:] == subjects[:-1]]
    close = np.r_[False, np.diff(hours) <= max_gap_hours]
    continues = above & np.r_[False, above[:-1]] & same_subject & close
    starts = above & ~continues
    start_pos = np.where(starts, np.arange(n), 0)
    start_pos = np.maximum.accumulate(start_pos)
    return np.where(above, hours - hours[start_pos], np.nan)
