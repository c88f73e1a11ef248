"""Schedule arithmetic at the window boundaries (reference protocol: infusions days 0/3/6, window
0 early / 1 late; visit Day 10 window 9..11, Day 14 window 12..16)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from celltrial.protocol.schedule import (
    VISIT_SUMMARY_COLUMNS,
    derive_infusion_status,
    derive_schedule,
    derive_visit_status,
    group_lists,
    plan_infusions,
    plan_visits,
    split_by_code,
    subject_days,
    summarize_visits,
)
from tests.conftest import (
    EMPTY_IMAGING,
    EMPTY_STATUS,
    local,
    observations_frame,
    subjects_frame,
)

LATER = local(60)  # long after follow-up: every window has closed


def infusions_on(days: dict[int, int | None], subject: str = "S1") -> pd.DataFrame:
    rows = [
        {
            "subject_id": subject,
            "number": n,
            "study_day": d,
            "lot_id": "L1",
            "start_time": local(d) if d is not None else pd.NaT,
        }
        for n, d in days.items()
    ]
    return pd.DataFrame(rows)


def test_plans_follow_the_protocol(make_protocol):
    protocol = make_protocol()
    infusions = plan_infusions(protocol)
    assert infusions["planned_day"].tolist() == [0, 3, 6]
    assert infusions["first_day"].tolist() == [0, 3, 6]
    assert infusions["last_day"].tolist() == [1, 4, 7]
    visits = plan_visits(protocol)
    day10 = visits[visits["visit"] == "Day 10"].iloc[0]
    assert (day10["first_day"], day10["last_day"]) == (9, 11)


@pytest.mark.parametrize(
    ("day", "status"),
    [(3, "on_time"), (4, "on_time"), (5, "late"), (2, "early")],
)
def test_infusion_window_boundaries(make_protocol, day, status):
    result = derive_infusion_status(
        make_protocol(), subjects_frame("S1"), infusions_on({1: 0, 2: day, 3: 6}), today=LATER
    )
    row = result[result["number"] == 2].iloc[0]
    assert row["status"] == status
    assert row["days_late"] == day - 3


def test_early_window_configurable(make_protocol):
    protocol = make_protocol(regimen__infusion_window={"early_days": 1, "late_days": 0})
    result = derive_infusion_status(
        protocol, subjects_frame("S1"), infusions_on({1: 0, 2: 2, 3: 7}), today=LATER
    )
    assert result["status"].tolist() == ["on_time", "on_time", "late"]


@pytest.mark.parametrize(
    ("today_day", "status"),
    [(2, "upcoming"), (3, "due"), (4, "due"), (5, "missed")],
)
def test_missing_infusion_by_today(make_protocol, today_day, status):
    result = derive_infusion_status(
        make_protocol(), subjects_frame("S1"), infusions_on({1: 0}), today=local(today_day, 12)
    )
    assert result[result["number"] == 2].iloc[0]["status"] == status


def test_infusion_not_expected_after_death(make_protocol):
    subjects = subjects_frame("S1", died={"S1": local(2, 12)})
    result = derive_infusion_status(make_protocol(), subjects, infusions_on({1: 0}), today=LATER)
    assert result["status"].tolist() == ["on_time", "not_expected", "not_expected"]


def visit_status(make_protocol, rows, *, today=LATER, subjects=None):
    return derive_visit_status(
        make_protocol(),
        subjects if subjects is not None else subjects_frame("S1"),
        observations_frame(rows),
        EMPTY_STATUS,
        EMPTY_IMAGING,
        today=today,
    )


def crp_day10(frame: pd.DataFrame) -> pd.Series:
    return frame[(frame["visit"] == "Day 10") & (frame["assessment"] == "CRP")].iloc[0]


@pytest.mark.parametrize(
    ("day", "status"),
    [(24, "out_of_window"), (25, "done"), (28, "done"), (31, "done"), (32, "out_of_window")],
)
def test_visit_window_edges(make_protocol, day, status):
    # Day 28 has window 25..31
    frame = visit_status(make_protocol, [("S1", "CRP", day)])
    row = frame[(frame["visit"] == "Day 28") & (frame["assessment"] == "CRP")].iloc[0]
    assert row["status"] == status
    assert row["actual_days"] == (day,)


@pytest.mark.parametrize("day", [9, 10, 11])
def test_day10_window(make_protocol, day):
    assert crp_day10(visit_status(make_protocol, [("S1", "CRP", day)]))["status"] == "done"


def test_day_inside_a_window_belongs_to_that_visit(make_protocol):
    # day 12 is as near Day 10 as Day 14, but lies in Day 14's window (12..16)
    frame = visit_status(make_protocol, [("S1", "CRP", 12)])
    assert crp_day10(frame)["status"] == "missed"
    day14 = frame[(frame["visit"] == "Day 14") & (frame["assessment"] == "CRP")].iloc[0]
    assert day14["status"] == "done"


def test_out_of_window_goes_to_nearest_visit_ties_to_earlier(make_protocol):
    # day 8 lies between Day 6 (6..6) and Day 10 (9..11): 2 days from each -> Day 6
    frame = visit_status(make_protocol, [("S1", "CRP", 8)])
    day6 = frame[(frame["visit"] == "Day 6") & (frame["assessment"] == "CRP")].iloc[0]
    assert day6["status"] == "out_of_window"
    assert crp_day10(frame)["status"] == "missed"


@pytest.mark.parametrize(
    ("today_day", "status"),
    [(8, "upcoming"), (9, "due"), (11, "due"), (12, "missed")],
)
def test_unassessed_visit_by_today(make_protocol, today_day, status):
    row = crp_day10(visit_status(make_protocol, [], today=local(today_day, 12)))
    assert row["status"] == status


def test_visit_after_death_not_expected(make_protocol):
    subjects = subjects_frame("S1", died={"S1": local(8, 3)})
    row = crp_day10(visit_status(make_protocol, [], subjects=subjects))
    assert row["status"] == "not_expected"


def test_visit_summary_levels(make_protocol):
    protocol = make_protocol()
    day1 = next(v for v in protocol.visits if v.name == "Day 1")
    rows = [("S1", code, 1) for code in day1.labs + day1.vitals]
    frame = derive_visit_status(
        protocol,
        subjects_frame("S1"),
        observations_frame(rows),
        pd.DataFrame(
            {"subject_id": ["S1"], "time": [local(1)], "study_day": [1], "who_scale": [6]}
        ),
        EMPTY_IMAGING,
        today=LATER,
    )
    summary = summarize_visits(frame).set_index("visit")
    assert summary.loc["Day 1", "status"] == "done"
    assert summary.loc["Day 1", "n_done"] == len(day1.assessments)
    assert summary.loc["Day 28", "status"] == "missed"
    partial = visit_status(make_protocol, [("S1", "CRP", 3)])
    assert summarize_visits(partial).set_index("visit").loc["Day 3", "status"] == "partial"


def test_split_by_code_keeps_order_and_drops_other_codes():
    codes = np.array([2, 0, -1, 2, 0, 5])
    values = np.array(["a", "b", "c", "d", "e", "f"], dtype=object)
    assert split_by_code(codes, values, 3) == [["b", "e"], [], ["a", "d"]]


def test_group_lists_match_iterating_the_groups():
    frame = pd.DataFrame({"key": ["y", "x", "y", "x"], "value": [1, 2, 3, 4]})
    grouped = frame.groupby("key", sort=True)
    assert group_lists(grouped, frame["value"]) == [g["value"].tolist() for _, g in grouped]


def test_subject_days_of_today_and_end_dates():
    subjects = subjects_frame("S1", "S2", died={"S2": local(5, 3)})
    subjects.loc[1, "first_infusion"] = local(1)
    days = subject_days(subjects, local(9, 12), "Asia/Shanghai")
    assert days.loc["S1", "today"] == 9 and pd.isna(days.loc["S1", "died"])
    assert (days.loc["S2", "today"], days.loc["S2", "died"]) == (8, 4)


def test_schedule_is_the_separate_derivations(make_protocol):
    protocol = make_protocol()
    subjects = subjects_frame("S1", "S2", died={"S2": local(8, 3)})
    observations = observations_frame([("S1", "CRP", 3), ("S1", "CRP", 8), ("S2", "CRP", 10)])
    infusions = infusions_on({1: 0, 2: 5})
    args = (observations, EMPTY_STATUS, EMPTY_IMAGING)
    schedule = derive_schedule(protocol, subjects, infusions, *args, today=local(12, 12))
    visit_status = derive_visit_status(protocol, subjects, *args, today=local(12, 12))
    pd.testing.assert_frame_equal(schedule.visit_assessments, visit_status)
    pd.testing.assert_frame_equal(schedule.visits, summarize_visits(visit_status))
    pd.testing.assert_frame_equal(
        schedule.infusions,
        derive_infusion_status(protocol, subjects, infusions, today=local(12, 12)),
    )
    assert visit_status[visit_status["status"] == "out_of_window"]["actual_days"].tolist() == [(8,)]


def test_schedule_without_treated_subjects(make_protocol):
    subjects = subjects_frame("S1")
    subjects["first_infusion"] = pd.NaT
    schedule = derive_schedule(
        make_protocol(),
        subjects,
        infusions_on({1: 0}).iloc[0:0],
        observations_frame([]),
        EMPTY_STATUS,
        EMPTY_IMAGING,
        today=LATER,
    )
    assert schedule.visit_assessments.empty and schedule.infusions.empty
    assert list(schedule.visits.columns) == list(VISIT_SUMMARY_COLUMNS)
