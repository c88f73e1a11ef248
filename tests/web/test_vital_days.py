"""The subject timeline's vital-sign days: one item per local calendar day, ranges of rounds."""

from __future__ import annotations

import pandas as pd

from celltrial.services.vital_signs import summarize_vital_days


def _rows(*rows: tuple[str, str, float, float | None]) -> pd.DataFrame:
    """(local time in Shanghai, test, value, study day) → an observation frame."""
    frame = pd.DataFrame(rows, columns=["time", "test", "value", "study_day"])
    frame["time"] = pd.to_datetime(frame["time"]).dt.tz_localize("Asia/Shanghai")
    frame["time"] = frame["time"].dt.tz_convert("UTC")
    return frame


def test_one_item_per_local_day_with_ranges_units_and_rounds():
    frame = _rows(
        # day 1, two rounds; rows out of order; a lab result that is not a vital sign
        ("2020-02-03 20:00", "TEMP", 38.2, 1),
        ("2020-02-03 08:00", "TEMP", 37.1, 1),
        ("2020-02-03 08:00", "SPO2", 93.0, 1),
        ("2020-02-03 20:00", "SPO2", 93.0, 1),
        ("2020-02-03 08:00", "FIO2", 0.4, 1),
        ("2020-02-03 08:00", "CRP", 80.0, 1),
        # 23:30 local is still 3 February (15:30 UTC); 00:30 local is 4 February
        ("2020-02-03 23:30", "HR", 110.0, 1),
        ("2020-02-04 00:30", "HR", 96.0, None),
    )
    items = summarize_vital_days(frame, zone="Asia/Shanghai")
    assert [i["text"] for i in items] == [
        "3 rounds: T 37.1–38.2 °C, HR 110/min, SpO2 93 %, FiO2 0.4",
        "1 round: HR 96/min",
    ]
    assert [i["day"] for i in items] == [1, None]
    assert items[0]["time"] == pd.Timestamp("2020-02-03 00:00", tz="UTC").to_pydatetime()
    assert {i["kind"] for i in items} == {"vital signs"}


def test_no_vital_signs_no_items():
    assert summarize_vital_days(_rows(("2020-02-03 08:00", "CRP", 80.0, 1)), zone="UTC") == []
