"""A realistic virtual cohort of critically ill COVID-19 patients that follows a protocol.

Used by ``celltrial demo`` and the tests. Calibration (marker levels and courses, oxygenation, vital
signs) is data in ``trajectories.yaml``. Deterministic for a seed: the same protocol, size and seed
always give the same cohort.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

import numpy as np
import pandas as pd
import yaml

from celltrial.catalogue import load_catalogue
from celltrial.protocol.model import Protocol
from celltrial.timeline import local_time

SOURCE = "simulation"
FIRST_ENROLMENT = pd.Timestamp("2020-02-03T08:00:00Z")
LAB_HOUR = 6.0  # local time of the morning blood draw
INFUSION_HOUR = 10.0  # local time infusions are planned for
VITAL_HOURS = (8.0, 20.0)  # daily vital-sign rounds


@cache
def load_calibration() -> dict[str, Any]:
    """The shipped calibration of simulated trajectories (``trajectories.yaml``)."""
    text = files("celltrial.cohort").joinpath("trajectories.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


@dataclass(frozen=True)
class SimulatedCohort:
    """Frames in the shapes of :mod:`celltrial.frames`, keyed by subject code."""

    seed: int
    subjects: pd.DataFrame
    lots: pd.DataFrame
    infusions: pd.DataFrame
    observations: pd.DataFrame
    adverse_events: pd.DataFrame
    clinical_status: pd.DataFrame
    imaging: pd.DataFrame


def simulate(protocol: Protocol, n_subjects: int, seed: int = 0) -> SimulatedCohort:
    """Simulate ``n_subjects`` subjects treated per ``protocol`` (deterministic for ``seed``).

    Includes subject-to-subject variation, at least one non-responder (from 2 subjects on), missed
    draws, one late infusion (more in big cohorts), infusion-related transient fevers,
    disease-related
    serious events and deaths among non-responders, and a daily WHO clinical progression scale.
    """
    if n_subjects < 1:
        raise ValueError("n_subjects must be at least 1")
    rng = np.random.default_rng(seed)
    calibration = load_calibration()
    builder = _CohortBuilder(protocol, calibration, rng)
    lots = builder.make_lots(n_subjects)
    n_non = 0 if n_subjects == 1 else max(1, round(0.2 * n_subjects))
    non_responders = set(rng.choice(n_subjects, size=n_non, replace=False).tolist())
    n_late = max(1, round(calibration["late_infusion_fraction"] * n_subjects))
    late = set(rng.choice(n_subjects, size=min(n_late, n_subjects), replace=False).tolist())
    enrol = FIRST_ENROLMENT
    for index in range(n_subjects):
        enrol = enrol + pd.Timedelta(hours=float(rng.uniform(12, 72)))
        builder.add_subject(
            index,
            enrolled=enrol,
            responder=index not in non_responders,
            late_infusion=index in late,
            lots=lots,
        )
    builder.ensure_one_fever()
    return builder.result(seed, lots)


class _CohortBuilder:
    """Accumulates the rows of each frame while subjects are simulated one by one."""

    def __init__(self, protocol: Protocol, calibration: dict[str, Any], rng: np.random.Generator):
        self.protocol = protocol
        self.cal = calibration
        self.rng = rng
        self.zone = protocol.study.zone
        self.catalogue = load_catalogue()
        self.subjects: list[dict[str, Any]] = []
        self.infusions: list[dict[str, Any]] = []
        self.adverse_events: list[dict[str, Any]] = []
        self.status: list[dict[str, Any]] = []
        self.imaging: list[dict[str, Any]] = []
        self.obs_subject: list[str] = []
        self.obs_time: list[pd.Timestamp] = []
        self.obs_test: list[str] = []
        self.obs_value: list[float] = []
        self.obs_qualifier: list[str] = []
        self._oxygen_position = 0.5

    # ---- product lots -------------------------------------------------------------------------
    def make_lots(self, n_subjects: int) -> pd.DataFrame:
        release = self.protocol.product.release
        n_lots = max(2, int(np.ceil(n_subjects / 3)))
        rows = []
        for i in range(n_lots):
            markers = {
                m: round(float(self.rng.uniform(max(t, 96.0), 99.9)), 1)
                for m, t in release.positive_markers_min_pct.items()
            }
            markers |= {
                m: round(float(self.rng.uniform(0.05, min(t, 1.5))), 2)
                for m, t in release.negative_markers_max_pct.items()
            }
            made = FIRST_ENROLMENT - pd.Timedelta(days=int(self.rng.integers(20, 60)))
            rows.append(
                {
                    "lot_id": f"UC{2020_0000 + 101 + i}",
                    "donor_id": f"D{1000 + i}",
                    "tissue_source": self.protocol.product.tissue_source,
                    "manufactured": made,
                    "expires": made + pd.Timedelta(days=365),
                    "total_cells": 3.0e8,
                    "viability_pct": round(
                        float(self.rng.uniform(max(release.viability_min_pct + 4, 85), 97)), 1
                    ),
                    "markers_pct": markers,
                    "sterility": "no growth",
                    "mycoplasma": "negative",
                    "endotoxin_eu_per_ml": round(float(self.rng.uniform(0.05, 0.5)), 2),
                    "release_status": "released",
                }
            )
        return pd.DataFrame(rows)

    # ---- one subject --------------------------------------------------------------------------
    def add_subject(
        self,
        index: int,
        *,
        enrolled: pd.Timestamp,
        responder: bool,
        late_infusion: bool,
        lots: pd.DataFrame,
    ) -> None:
        rng, regimen = self.rng, self.protocol.regimen
        code = f"S{index + 1:03d}"
        sex = "M" if rng.random() < 0.6 else "F"
        age = float(np.clip(round(rng.normal(63, 11)), 35, 88))
        weight = round(float(rng.normal(74 if sex == "M" else 61, 9)), 1)
        height = round(float(rng.normal(170 if sex == "M" else 158, 6)), 1)
        admitted = enrolled - pd.Timedelta(hours=float(rng.uniform(24, 24 * 6)))
        self._oxygen_position = float(rng.uniform(0.2, 0.8))
        day0 = local_time(enrolled, int(rng.integers(0, 2)), INFUSION_HOUR, self.zone)
        course = self._who_course(responder)
        died_day = course["died_day"]
        discharge_day = course["discharge_day"]

        # infusions ------------------------------------------------------------------------------
        lot = lots.iloc[index % len(lots)]
        first_start = day0 + pd.Timedelta(minutes=float(np.clip(rng.normal(0, 40), -120, 120)))
        infusion_starts: list[pd.Timestamp] = []
        for number, planned_day in enumerate(regimen.infusion_days, start=1):
            planned = local_time(day0, planned_day, INFUSION_HOUR, self.zone)
            if number == 1:
                start = first_start
            else:
                delay_days = (
                    regimen.infusion_window.late_days + 1
                    if late_infusion and number == regimen.n_infusions
                    else 0
                )
                jitter = float(np.clip(rng.normal(0, 90), -180, 180))
                start = planned + pd.Timedelta(days=delay_days, minutes=jitter)
            duration = pd.Timedelta(
                minutes=float(max(10, rng.normal(regimen.infusion_duration_min, 8)))
            )
            target = regimen.dose.target_cells(weight) or regimen.dose.cells
            cells = float(target * np.clip(rng.normal(1.0, 0.02), 0.94, 1.06))
            infusion_starts.append(start)
            self.infusions.append(
                {
                    "subject_id": code,
                    "number": number,
                    "lot_id": lot["lot_id"],
                    "vial_id": f"{lot['lot_id']}-V{index * regimen.n_infusions + number:03d}",
                    "planned_time": planned,
                    "start_time": start,
                    "end_time": start + duration,
                    "cells_given": round(cells, -4),
                    "volume_ml": 100.0,
                    "completed": True,
                    "stop_reason": None,
                }
            )

        # daily WHO scale, oxygen and vital signs ------------------------------------------------
        last_day = self.protocol.follow_up_days
        who_by_day = course["who"]
        fevers = self._infusion_fevers(code, infusion_starts)
        for day in range(-2, last_day + 1):
            if died_day is not None and day > died_day:
                break
            who = int(who_by_day[day + 2])
            in_hospital = discharge_day is None or day <= discharge_day
            if died_day is not None and day == died_day:
                death_time = local_time(day0, day, float(rng.uniform(1, 23)), self.zone)
                self.status.append(self._status_row(code, death_time, 10, "dead", None))
                break
            if in_hospital or self._is_visit_day(day):
                oxy = self._oxygenation(who)
                self.status.append(
                    self._status_row(
                        code,
                        local_time(day0, day, 8.0, self.zone),
                        who,
                        oxy["support"],
                        oxy["fio2"],
                    )
                )
                for hour in VITAL_HOURS if in_hospital else (VITAL_HOURS[0],):
                    when = local_time(day0, day, hour + float(rng.normal(0, 0.3)), self.zone)
                    self._vital_round(code, when, who, fevers)

        # peri-infusion vital signs ----------------------------------------------------------
        for start in infusion_starts:
            who = int(who_by_day[self._day_of(start, day0) + 2])
            for minutes in self.protocol.safety.peri_infusion_vitals_min:
                when = start + pd.Timedelta(minutes=minutes)
                self._vital_round(
                    code, when, who, fevers, tests=("TEMP", "HR", "SYSBP", "DIABP", "RESP", "SPO2")
                )

        # laboratory draws at the visits ---------------------------------------------------------
        baselines = self._subject_baselines()
        for visit in self.protocol.visits:
            day = visit.day
            if visit.window_before or visit.window_after:
                day += int(rng.integers(-visit.window_before, visit.window_after + 1))
                if rng.random() < 0.04:  # occasionally outside the window
                    day = visit.last_day + 1
            if died_day is not None and day >= died_day:
                continue
            when = local_time(day0, day, LAB_HOUR + float(rng.normal(0, 0.4)), self.zone)
            if visit.day == 0:  # baseline: one more draw the day before
                self._lab_draw(
                    code, when - pd.Timedelta(days=1), visit.labs, baselines, -1.0, responder
                )
            self._lab_draw(
                code, when, visit.labs, baselines, self._fractional_day(when, day0), responder
            )
            if visit.chest_ct:
                self.imaging.append(
                    {
                        "subject_id": code,
                        "time": when + pd.Timedelta(hours=3),
                        "modality": "CT",
                        "series_uid": None,
                        "path": None,
                    }
                )

        # adverse events ---------------------------------------------------------------------
        for start, peak in fevers:
            self.adverse_events.append(
                {
                    "subject_id": code,
                    "term": "Fever",
                    "description": f"Transient fever after infusion, peak {peak:.1f} °C",
                    "onset": start + pd.Timedelta(hours=2),
                    "resolved": start + pd.Timedelta(hours=float(rng.uniform(8, 20))),
                    "grade": 1 if peak <= 39.0 else 2,
                    "serious": False,
                    "serious_criteria": None,
                    "relatedness": "probably related",
                    "expected": True,
                    "action": "none",
                    "outcome": "recovered",
                }
            )
        died = local_time(day0, died_day, 12.0, self.zone) if died_day is not None else None
        # a death is recorded once, as the fatal outcome (grade 5, serious: results in death) of
        # the event that caused it (CTCAE v5.0; safety/adverse_events.yaml, deaths)
        fatal = {
            "resolved": died,
            "grade": 5,
            "serious_criteria": "results in death",
            "outcome": "fatal",
        }
        worse = None if responder else self._first_worsening_day(who_by_day)
        if worse is not None:
            event = {
                "subject_id": code,
                "term": "Acute respiratory distress syndrome",
                "description": "Worsening respiratory failure due to COVID-19",
                "onset": local_time(day0, worse, 14.0, self.zone),
                "resolved": None,
                "grade": 4,
                "serious": True,
                "serious_criteria": "life-threatening",
                "relatedness": "not related",
                "expected": False,
                "action": "none",
                "outcome": "not recovered",
            }
            self.adverse_events.append(event | (fatal if died is not None else {}))
        elif died is not None:
            self.adverse_events.append(
                {
                    "subject_id": code,
                    "term": "Death NOS",
                    "description": "Death due to COVID-19 respiratory failure",
                    "onset": died,
                    "serious": True,
                    "relatedness": "not related",
                    "expected": False,
                    "action": "none",
                }
                | fatal
            )
        self.subjects.append(
            {
                "subject_id": code,
                "site": "01",
                "sex": sex,
                "age": age,
                "weight_kg": weight,
                "height_cm": height,
                "admitted": admitted,
                "enrolled": enrolled,
                "baseline_who_scale": int(who_by_day[2]),
                "discharged": local_time(day0, discharge_day, 15.0, self.zone)
                if discharge_day is not None
                else None,
                "died": died,
                "responder": responder,
            }
        )

    # ---- pieces ---------------------------------------------------------------------------------
    def _who_course(self, responder: bool) -> dict[str, Any]:
        """Daily WHO scale from day -2 to the end of follow-up, discharge and death days."""
        rng, course = self.rng, self.cal["course"]
        last = self.protocol.follow_up_days
        key = "baseline_who_responder" if responder else "baseline_who_non_responder"
        levels, weights = zip(*course[key].items(), strict=True)
        start = int(rng.choice(np.array(levels, dtype=int), p=np.array(weights) / sum(weights)))
        days = np.arange(-2, last + 1)
        discharge_day = died_day = None
        if responder:
            pace = rng.uniform(*course["responder_days_per_point"])
            delay = rng.integers(
                course["responder_delay_days"][0], course["responder_delay_days"][1] + 1
            )
            who = start - np.floor(np.clip(days - delay, 0, None) / pace)
            who = np.clip(who, 4, None)
            at_four = np.flatnonzero(who <= 4)
            if at_four.size and days[at_four[0]] >= 0:
                discharge_day = int(days[at_four[0]]) + int(
                    rng.integers(
                        course["discharge_after_days_at_4"][0],
                        course["discharge_after_days_at_4"][1] + 1,
                    )
                )
                if discharge_day > last:
                    discharge_day = None
                else:  # after discharge: symptomatic at home, then recovered
                    who = np.where(days > discharge_day, 3, who)
                    who = np.where(days > discharge_day + 7, 2, who)
        else:
            pace = rng.uniform(*course["non_responder_days_per_point"])
            who = np.clip(start + np.floor(np.clip(days, 0, None) / pace), None, 9)
            if rng.random() < course["non_responder_death_probability"]:
                low, high = course["non_responder_death_day"]
                died_day = int(rng.integers(low, min(high, last) + 1))
        return {"who": who.astype(int), "discharge_day": discharge_day, "died_day": died_day}

    def _oxygenation(self, who: int) -> dict[str, Any]:
        """Oxygen support for a WHO level: FiO2 is set by the team and stays put for the level
        (at the subject's own place in the level's range, in steps of 0.05); SpO2 varies a little
        from reading to reading around the subject's usual value for the level."""
        table = self.cal["oxygenation"]
        row = table[int(np.clip(who, min(table), max(table)))]
        low, high = row["fio2"]
        fio2 = round(round((low + self._oxygen_position * (high - low)) * 20) / 20, 2)
        fio2 = float(np.clip(fio2, low, high))
        spo2_low, spo2_high = row["spo2"]
        usual = spo2_low + (1 - self._oxygen_position) * (spo2_high - spo2_low)
        spo2 = float(np.clip(round(usual + self.rng.normal(0, 1.0)), 70, 100))
        return {"support": row["support"], "fio2": fio2, "spo2": spo2}

    def _vital_round(
        self,
        code: str,
        when: pd.Timestamp,
        who: int,
        fevers: list[tuple[pd.Timestamp, float]],
        tests: tuple[str, ...] = ("TEMP", "HR", "RESP", "SYSBP", "DIABP", "SPO2", "FIO2"),
    ) -> None:
        rng = self.rng
        oxy = self._oxygenation(who)
        above = max(who - 4, 0)
        for test in tests:
            if rng.random() < self.cal["missing_vital_probability"]:
                continue
            if test == "SPO2":
                value = oxy["spo2"]
            elif test == "FIO2":
                value = oxy["fio2"]
            else:
                spec = self.cal["vitals"][test]
                value = spec["base"] + spec["per_point"] * above + rng.normal(0, spec["noise"])
                if test == "TEMP":
                    value += _fever_bump(when, fevers)
                    value = round(value, 1)
                else:
                    value = float(round(value))
            self._observe(code, when, test, float(value))

    def _infusion_fevers(
        self, code: str, starts: list[pd.Timestamp]
    ) -> list[tuple[pd.Timestamp, float]]:
        fevers = []
        for start in starts:
            if self.rng.random() < self.cal["infusion_fever_probability"]:
                fevers.append((start, round(float(self.rng.uniform(38.2, 39.2)), 1)))
        return fevers

    def _lab_draw(
        self,
        code: str,
        when: pd.Timestamp,
        tests: tuple[str, ...],
        baselines: dict[str, float],
        day: float,
        responder: bool,
    ) -> None:
        rng, markers = self.rng, self.cal["markers"]
        values: dict[str, float] = {}
        for test in tests:
            if test in markers:
                spec = markers[test]
                target, tau = spec["responder" if responder else "non_responder"]
                log_base = np.log(baselines[test])
                log_value = np.log(target) + (log_base - np.log(target)) * np.exp(
                    -max(day, 0.0) / tau
                )
                values[test] = float(np.exp(log_value + rng.normal(0, spec["noise"])))
        if "WBC" in tests:
            other = baselines["_other_leukocytes"] * np.exp(rng.normal(0, 0.1))
            values["WBC"] = values.get("NEUT", 5.0) + values.get("LYM", 1.0) + other
        for test in tests:
            if test not in values or rng.random() < self.cal["missing_lab_probability"]:
                continue
            ceiling = markers.get(test, {}).get("ceiling")
            value = _round_like_lab(test, values[test])
            if ceiling is not None and value > ceiling:
                self._observe(code, when, test, float(ceiling), qualifier=">")
            else:
                self._observe(code, when, test, value)

    def _subject_baselines(self) -> dict[str, float]:
        out = {
            test: float(
                np.exp(np.log(spec["baseline"][0]) + self.rng.normal(0, spec["baseline"][1]))
            )
            for test, spec in self.cal["markers"].items()
        }
        median, sd = self.cal["other_leukocytes"]
        out["_other_leukocytes"] = float(np.exp(np.log(median) + self.rng.normal(0, sd)))
        return out

    def _observe(
        self, code: str, when: pd.Timestamp, test: str, value: float, qualifier: str = ""
    ) -> None:
        self.obs_subject.append(code)
        self.obs_time.append(when)
        self.obs_test.append(test)
        self.obs_value.append(value)
        self.obs_qualifier.append(qualifier)

    def _status_row(self, code: str, when: pd.Timestamp, who: int, support: str, fio2: Any):
        return {
            "subject_id": code,
            "time": when,
            "who_scale": who,
            "oxygen_support": support,
            "fio2": fio2,
        }

    def _is_visit_day(self, day: int) -> bool:
        return any(v.day == day for v in self.protocol.visits)

    def _day_of(self, when: pd.Timestamp, day0: pd.Timestamp) -> int:
        local = when.tz_convert(self.zone).normalize()
        return int((local - day0.tz_convert(self.zone).normalize()).days)

    @staticmethod
    def _fractional_day(when: pd.Timestamp, day0: pd.Timestamp) -> float:
        return (when - day0).total_seconds() / 86400.0

    @staticmethod
    def _first_worsening_day(who: np.ndarray) -> int | None:
        """First study day after day 0 with a WHO scale above the day-0 value (index 2 = day 0)."""
        hits = np.flatnonzero(who[3:] > who[2])
        return int(hits[0]) + 1 if hits.size else None

    def ensure_one_fever(self) -> None:
        """MSC infusions' commonest event: make sure the cohort shows at least one fever."""
        if any(ae["term"] == "Fever" for ae in self.adverse_events):
            return
        # nothing sampled: give the first subject a mild fever after the first infusion
        first = next(i for i in self.infusions if i["number"] == 1)
        start, peak = first["start_time"], 38.4
        code = first["subject_id"]
        for minutes in (120, 240):
            self._observe(code, start + pd.Timedelta(minutes=minutes, seconds=30), "TEMP", peak)
        self.adverse_events.append(
            {
                "subject_id": code,
                "term": "Fever",
                "description": f"Transient fever after infusion, peak {peak:.1f} °C",
                "onset": start + pd.Timedelta(hours=2),
                "resolved": start + pd.Timedelta(hours=12),
                "grade": 1,
                "serious": False,
                "serious_criteria": None,
                "relatedness": "probably related",
                "expected": True,
                "action": "none",
                "outcome": "recovered",
            }
        )

    def result(self, seed: int, lots: pd.DataFrame) -> SimulatedCohort:
        observations = pd.DataFrame(
            {
                "subject_id": self.obs_subject,
                "time": pd.to_datetime(pd.Series(self.obs_time), utc=True).dt.round("s"),
                "test": self.obs_test,
                "value": self.obs_value,
                "qualifier": self.obs_qualifier,
            }
        )
        defs = {t.code: t for t in self.catalogue.tests}
        observations["unit"] = observations["test"].map(lambda c: defs[c].unit)
        observations["ref_low"] = observations["test"].map(lambda c: defs[c].reference[0])
        observations["ref_high"] = observations["test"].map(lambda c: defs[c].reference[1])
        observations["specimen"] = observations["test"].map(lambda c: defs[c].specimen)
        observations["raw_value"] = observations["qualifier"] + observations["value"].map(
            lambda v: f"{v:g}"
        )
        observations["raw_unit"] = observations["unit"]
        observations["source"] = SOURCE
        observations = observations.sort_values(["subject_id", "time", "test"], kind="stable")
        return SimulatedCohort(
            seed=seed,
            subjects=_whole_seconds(pd.DataFrame(self.subjects)),
            lots=_whole_seconds(lots),
            infusions=_whole_seconds(pd.DataFrame(self.infusions)),
            observations=observations.reset_index(drop=True),
            adverse_events=_whole_seconds(pd.DataFrame(self.adverse_events)),
            clinical_status=_whole_seconds(pd.DataFrame(self.status)),
            imaging=_whole_seconds(pd.DataFrame(self.imaging)),
        )


def _whole_seconds(frame: pd.DataFrame) -> pd.DataFrame:
    """Times recorded to the second, as clinical systems do (and every database can store)."""
    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if values.dtype == object and values.map(lambda v: isinstance(v, pd.Timestamp)).any():
            values = pd.to_datetime(values, utc=True)
        if isinstance(values.dtype, pd.DatetimeTZDtype):
            out[column] = values.dt.round("s")
    return out


def _fever_bump(when: pd.Timestamp, fevers: list[tuple[pd.Timestamp, float]]) -> float:
    """Temperature added by an infusion fever: rises over 2 h, peaks 2-6 h, gone by ~16 h."""
    bump = 0.0
    for start, peak in fevers:
        hours = (when - start).total_seconds() / 3600.0
        if 0 < hours < 16:
            shape = min(hours / 2.0, 1.0) if hours < 6 else max(0.0, 1 - (hours - 6) / 10)
            bump = max(bump, (peak - 37.0) * shape)
    return bump


_DECIMALS = {
    "LYM": 2,
    "NEUT": 2,
    "WBC": 2,
    "DDIMER": 2,
    "CRP": 1,
    "HSCRP": 1,
    "IL6": 1,
    "BILI": 1,
    "INR": 2,
}


def _round_like_lab(test: str, value: float) -> float:
    return float(round(value, _DECIMALS.get(test, 0)))
