"""Study days: calendar days in the study's time zone from the first infusion (day 0)."""

from __future__ import annotations

import pandas as pd

from celltrial.timeline import compute_study_days, local_time


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def test_study_day_turns_at_local_midnight():
    day0 = utc("2020-02-10 02:00")  # 10:00 in Shanghai (UTC+8)
    times = pd.Series(
        [
            utc("2020-02-10 15:59:59"),
            utc("2020-02-10 16:00:00"),
            utc("2020-02-09 16:00:00"),
            utc("2020-02-09 15:59:59"),
            pd.NaT,
        ]
    )
    days = compute_study_days(times, pd.Series([day0] * 5), "Asia/Shanghai")
    assert days.tolist()[:4] == [0, 1, 0, -1]
    assert pd.isna(days.iloc[4])


def test_study_day_in_utc_differs():
    day0 = utc("2020-02-10 02:00")
    days = compute_study_days(pd.Series([utc("2020-02-10 16:00")]), pd.Series([day0]), "UTC")
    assert days.tolist() == [0]


def test_local_time_keeps_wall_clock_across_daylight_saving():
    day0 = pd.Timestamp("2021-03-26 10:00", tz="Europe/Paris").tz_convert("UTC")
    after = local_time(day0, 3, 10.0, "Europe/Paris")  # clocks moved forward on 28 March
    assert after.tz_convert("Europe/Paris").hour == 10
    assert after.tz_convert("Europe/Paris").day == 29


def test_study_day_on_a_day_without_local_midnight():
    # Sao Paulo moved clocks from 00:00 to 01:00 on 4 November 2018: that day has no midnight
    zone = "America/Sao_Paulo"
    day0 = pd.Timestamp("2018-11-02 13:00", tz=zone).tz_convert("UTC")
    times = pd.Series(
        [pd.Timestamp("2018-11-04 12:00", tz=zone), pd.Timestamp("2018-11-03 23:00", tz=zone)]
    )
    assert compute_study_days(times, pd.Series([day0] * 2), zone).tolist() == [2, 1]


def test_study_days_align_on_the_index():
    day0 = utc("2020-02-10 02:00")
    times = pd.Series([utc("2020-02-11 02:00"), utc("2020-02-13 02:00")], index=[7, 3])
    days = compute_study_days(times, pd.Series([day0, day0], index=[3, 7]), "UTC")
    assert days.to_dict() == {3: 3, 7: 1}
    assert str(days.dtype) == "Int64"
