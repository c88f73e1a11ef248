"""Vital-sign signals after infusions: each threshold just below and at it, window edges."""

from __future__ import annotations

import pandas as pd
import pytest

from celltrial.frames import INFUSION_COLUMNS
from celltrial.safety import InfusionSignalThresholds, derive_infusion_signals
from celltrial.safety.signals import SIGNAL_COLUMNS

START = pd.Timestamp("2020-02-10T09:00", tz="UTC")


def infusions(*starts: pd.Timestamp | None) -> pd.DataFrame:
    frame = pd.DataFrame(
        {"subject_id": "S1", "number": range(1, len(starts) + 1), "start_time": list(starts)}
    )
    for column in INFUSION_COLUMNS:
        if column not in frame:
            frame[column] = None
    return frame.loc[:, list(INFUSION_COLUMNS)]


def vitals(rows: list[tuple[str, float, float, str]]) -> pd.DataFrame:
    """(test, hours from START, value, unit)."""
    return pd.DataFrame(
        {
            "subject_id": "S1",
            "time": [START + pd.Timedelta(hours=h) for _, h, _, _ in rows],
            "test": [t for t, _, _, _ in rows],
            "value": [v for _, _, v, _ in rows],
            "unit": [u for _, _, _, u in rows],
        }
    )


def detected(signals: pd.DataFrame, name: str) -> bool:
    row = signals[signals["signal"] == name]
    assert len(row) == 1
    return bool(row["detected"].iloc[0])


@pytest.mark.parametrize(
    ("signal", "test", "unit", "pre", "below", "at"),
    [
        ("spo2_drop", "SPO2", "%", 95.0, 91.1, 91.0),  # drop of 4 points
        ("fio2_rise", "FIO2", "1", 0.40, 0.405, 0.41),  # any recorded rise (1 point)
        ("fio2_rise", "FIO2", "%", 40.0, 40.5, 41.0),  # FiO2 in % is converted
        ("fever", "TEMP", "degC", 36.8, 37.99, 38.0),
        ("sysbp_drop", "SYSBP", "mmHg", 120.0, 100.1, 100.0),  # drop of 20 mmHg
        ("hr_rise", "HR", "/min", 80.0, 99.9, 100.0),  # rise of 20/min
    ],
)
def test_each_signal_below_and_at_threshold(
    signal: str, test: str, unit: str, pre: float, below: float, at: float
) -> None:
    def run(post: float) -> pd.DataFrame:
        rows = [(test, -1.0, pre, unit), (test, 2.0, post, unit)]
        return derive_infusion_signals(vitals(rows), infusions(START))

    assert not detected(run(below), signal)
    hit = run(at)
    assert detected(hit, signal)
    row = hit[hit["signal"] == signal].iloc[0]
    assert row["hours_to_first"] == pytest.approx(2.0) and row["assessable"]


def test_window_edges_and_pre_value() -> None:
    rows = [
        ("HR", -30.0, 60.0, "/min"),  # too old to be the pre-infusion value…
        ("HR", 0.0, 80.0, "/min"),  # …this one (at the start) is the reference
        ("HR", 24.0, 100.0, "/min"),  # the last minute of the 24 h window: detected
        ("SPO2", 0.0, 95.0, "%"),
        ("SPO2", 24.02, 80.0, "%"),  # just after the window: ignored
        ("SYSBP", 1.0, 90.0, "mmHg"),  # no pre-infusion reading: not assessable
    ]
    out = derive_infusion_signals(vitals(rows), infusions(START))
    assert list(out.columns) == list(SIGNAL_COLUMNS)
    hr = out[out["signal"] == "hr_rise"].iloc[0]
    assert hr["detected"] and hr["pre_value"] == 80.0 and hr["hours_to_first"] == 24.0
    spo2 = out[out["signal"] == "spo2_drop"].iloc[0]
    assert not spo2["detected"] and not spo2["assessable"]
    assert "no SPO2 reading in the window" in spo2["reason"]
    bp = out[out["signal"] == "sysbp_drop"].iloc[0]
    assert not bp["detected"] and not bp["assessable"] and "before the start" in bp["reason"]
    old = derive_infusion_signals(vitals(rows[:1] + rows[2:3]), infusions(START))
    assert not old[old["signal"] == "hr_rise"]["assessable"].iloc[0]  # 30 h old reference


def test_each_infusion_has_its_own_window_and_missing_starts_are_skipped() -> None:
    second = START + pd.Timedelta(days=3)
    rows = [
        ("TEMP", 1.0, 38.4, "degC"),
        ("TEMP", 72.0 + 1.0, 37.0, "degC"),
    ]
    out = derive_infusion_signals(vitals(rows), infusions(START, second, None))
    fever = out[out["signal"] == "fever"].set_index("infusion_number")["detected"]
    assert fever.to_dict() == {1: True, 2: False}
    assert out["signal"].value_counts().to_dict() == {s: 2 for s in out["signal"].unique()}


def test_thresholds_are_a_model_with_defaults() -> None:
    limits = InfusionSignalThresholds()
    assert (limits.spo2_drop, limits.temperature, limits.sysbp_drop, limits.hr_rise) == (
        4.0,
        38.0,
        20.0,
        20.0,
    )
    rows = [("HR", -1.0, 80.0, "/min"), ("HR", 2.0, 95.0, "/min")]
    strict = InfusionSignalThresholds(hr_rise=15.0)
    out = derive_infusion_signals(vitals(rows), infusions(START), thresholds=strict)
    assert detected(out, "hr_rise")
    with pytest.raises(ValueError):
        InfusionSignalThresholds(spo2_drop=-1.0)


def test_inputs_are_not_mutated() -> None:
    v = vitals([("HR", -1.0, 80.0, "/min"), ("HR", 2.0, 105.0, "/min")])
    i = infusions(START)
    v_before, i_before = v.copy(deep=True), i.copy(deep=True)
    derive_infusion_signals(v, i)
    pd.testing.assert_frame_equal(v, v_before)
    pd.testing.assert_frame_equal(i, i_before)


def test_ties_overlapping_windows_and_other_subjects() -> None:
    second = START + pd.Timedelta(hours=6)  # its window overlaps the first one's
    rows = [
        ("HR", -1.0, 70.0, "/min"),
        ("HR", -1.0, 80.0, "/min"),  # same time: the later row is the reference
        ("HR", 2.0, 100.0, "/min"),
        ("HR", 8.0, 100.0, "/min"),  # as high as 2 h: the earlier one is the worst
    ]
    other = vitals([("HR", 3.0, 200.0, "/min")]).assign(subject_id="S2")
    out = derive_infusion_signals(
        pd.concat([vitals(rows), other], ignore_index=True), infusions(START, second)
    )
    hr = out[out["signal"] == "hr_rise"].set_index("infusion_number")
    assert hr.loc[1, "pre_value"] == 80.0 and hr.loc[1, "n_readings"] == 2
    assert hr.loc[1, "worst_time"] == START + pd.Timedelta(hours=2)
    assert hr.loc[1, "hours_to_first"] == 2.0
    # the second infusion's reference is the 2 h reading, its window has the 8 h one only
    assert hr.loc[2, "pre_value"] == 100.0 and hr.loc[2, "n_readings"] == 1
    assert not hr.loc[2, "detected"] and hr.loc[2, "change"] == 0.0
