"""Oxygenation: pairing in time, the S/F validity limit, ROX and P/F, against hand values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from celltrial.efficacy.oxygenation import derive_oxygenation, summarize_oxygenation
from tests.efficacy.handmade import T0, observations


def _obs(rows: list[tuple[str, float, float]]) -> pd.DataFrame:
    """(test, minutes after T0, value) rows of subject S1 on study day 0."""
    return observations(
        [
            {"test": t, "time": T0 + pd.Timedelta(minutes=m), "value": v, "study_day": 0}
            for t, m, v in rows
        ]
    )


def test_sf_ratio_pairs_nearest_fio2_and_rox() -> None:
    frame = derive_oxygenation(
        _obs([("SPO2", 0, 92), ("FIO2", -50, 0.4), ("FIO2", 20, 0.5), ("RESP", 5, 23)])
    )
    row = frame.iloc[0]
    assert row["fio2"] == 0.5 and row["fio2_minutes"] == 20
    assert row["sf_ratio"] == pytest.approx(184.0)
    assert row["rox"] == pytest.approx(184.0 / 23)
    assert bool(row["sf_valid"]) and row["flag"] == ""


def test_fio2_outside_tolerance_is_not_paired() -> None:
    frame = derive_oxygenation(_obs([("SPO2", 0, 92), ("FIO2", 61, 0.5)]))
    assert np.isnan(frame.iloc[0]["sf_ratio"])
    assert "no FiO2" in frame.iloc[0]["flag"]
    edge = derive_oxygenation(_obs([("SPO2", 0, 92), ("FIO2", 60, 0.5)]))
    assert edge.iloc[0]["fio2"] == 0.5  # the tolerance edge is inclusive


@pytest.mark.parametrize(
    ("spo2", "valid", "rox"),
    # ROX by hand = (SpO2 / FiO2) / RR = (SpO2 / 0.21) / 20, at every SpO2 (Roca et al.)
    [(97.0, True, 23.095238095), (97.5, False, 23.214285714), (98.0, False, 23.333333333)],
)
def test_sf_valid_only_up_to_97_but_rox_everywhere(spo2: float, valid: bool, rox: float) -> None:
    frame = derive_oxygenation(_obs([("SPO2", 0, spo2), ("FIO2", 0, 0.21), ("RESP", 0, 20)]))
    row = frame.iloc[0]
    assert bool(row["sf_valid"]) is valid
    assert row["sf_ratio"] == pytest.approx(spo2 / 0.21)  # kept, but flagged
    assert row["rox"] == pytest.approx(rox, abs=1e-8)
    if not valid:
        assert "S/F not valid" in row["flag"]


@pytest.mark.parametrize(
    ("spo2", "fio2", "resp", "rox"),
    [
        (88.0, 0.6, 30.0, 4.888888889),  # 88 / 0.6 = 146.67; 146.67 / 30 = 4.889
        (100.0, 1.0, 25.0, 4.0),  # SpO2 100 %: computed, not filtered
        (99.0, 0.3, 15.0, 22.0),  # 330 / 15
        (95.0, 0.5, 0.0, float("nan")),  # RR 0: no index (division by zero)
    ],
)
def test_rox_against_hand_values(spo2: float, fio2: float, resp: float, rox: float) -> None:
    frame = derive_oxygenation(_obs([("SPO2", 0, spo2), ("FIO2", 0, fio2), ("RESP", 0, resp)]))
    value = frame.iloc[0]["rox"]
    if np.isnan(rox):
        assert np.isnan(value)
    else:
        assert value == pytest.approx(rox, abs=1e-8)


def test_rox_needs_all_three_and_the_caveat_names_high_spo2() -> None:
    frame = derive_oxygenation(
        _obs([("SPO2", 0, 99), ("FIO2", 0, 0.21), ("RESP", 0, 18), ("SPO2", 300, 92)])
    )
    assert frame.iloc[0]["rox"] == pytest.approx(99 / 0.21 / 18)
    assert np.isnan(frame.iloc[1]["rox"])  # no FiO2 or RR within 60 min
    result = summarize_oxygenation(frame)
    assert result.daily.iloc[0]["rox"] == pytest.approx(99 / 0.21 / 18)  # not filtered
    assert any(
        "ROX is computed as published" in c and "1 with SpO2 above 97" in c for c in result.caveats
    )


def test_fio2_percent_is_converted_and_pao2_gives_pf() -> None:
    frame = derive_oxygenation(_obs([("PAO2", 0, 75.0), ("FIO2", 10, 50.0)]))
    row = frame.iloc[0]
    assert row["kind"] == "PAO2" and row["fio2"] == 0.5
    assert row["pf_ratio"] == pytest.approx(150.0)
    assert "%" in row["flag"]


def test_other_subjects_fio2_is_never_used() -> None:
    rows = _obs([("SPO2", 0, 92)])
    other = observations([{"subject_id": "S2", "test": "FIO2", "time": T0, "value": 0.5}])
    frame = derive_oxygenation(pd.concat([rows, other], ignore_index=True))
    assert np.isnan(frame.iloc[0]["fio2"])


def test_daily_summary_uses_valid_sf_only() -> None:
    frame = derive_oxygenation(
        _obs(
            [
                ("SPO2", 0, 90),
                ("FIO2", 0, 0.5),
                ("SPO2", 300, 99),
                ("FIO2", 300, 0.21),
                ("SPO2", 600, 94),
                ("FIO2", 600, 0.4),
            ]
        )
    )
    result = summarize_oxygenation(frame)
    daily = result.daily.iloc[0]
    assert daily["sf_ratio"] == pytest.approx(np.median([180.0, 235.0]))
    assert daily["spo2"] == 94.0
    assert result.summary.iloc[0]["n_subjects"] == 1
    assert any("above 97" in c for c in result.caveats)
