"""Adverse events: vocabulary checks, infusion windows at their edges, safety tables."""

from __future__ import annotations

import pandas as pd
import pytest

from celltrial.errors import DataError
from celltrial.safety.events import check_adverse_events, derive_ae_timing
from celltrial.safety.tables import (
    derive_first_infusion_flag,
    summarize_ae_overview,
    summarize_ae_terms,
    summarize_lab_shifts,
)

T0 = pd.Timestamp("2020-02-10 02:00", tz="UTC")


def ae(subject="S1", term="Fever", hours=2.0, **changes) -> dict:
    row = {
        "subject_id": subject,
        "term": term,
        "onset": T0 + pd.Timedelta(hours=hours),
        "resolved": None,
        "grade": 1,
        "serious": False,
        "serious_criteria": None,
        "relatedness": "possibly related",
        "expected": True,
        "action": "none",
        "outcome": "recovered",
    }
    return row | changes


def infusions(subject="S1") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "subject_id": [subject] * 3,
            "number": [1, 2, 3],
            "start_time": [T0, T0 + pd.Timedelta(days=3), T0 + pd.Timedelta(days=6)],
        }
    )


def test_valid_events_pass():
    check_adverse_events(
        pd.DataFrame(
            [ae(), ae(term="ARDS", grade=4, serious=True, serious_criteria="life-threatening")]
        )
    )


@pytest.mark.parametrize(
    ("changes", "field", "fragment"),
    [
        ({"grade": 6}, "grade", "CTCAE grade 1–5"),
        ({"relatedness": "maybe"}, "relatedness", "possibly related"),
        ({"serious": True}, "serious_criteria", "at least one criterion"),
        ({"serious_criteria": "life-threatening"}, "serious", "yes when seriousness"),
        ({"serious": True, "serious_criteria": "scary"}, "serious_criteria", "ICH E2A"),
        ({"resolved": T0}, "resolved", "at or after onset"),
        ({"outcome": "fatal", "grade": 4}, "grade", "grade 5 for a fatal outcome"),
        ({"onset": pd.Timestamp("2020-02-10 10:00")}, "onset", "time zone"),
        ({"term": " "}, "term", "adverse-event term"),
    ],
)
def test_each_rule_names_row_and_field(changes, field, fragment):
    events = pd.DataFrame([ae(), ae(**changes)])
    with pytest.raises(DataError) as caught:
        check_adverse_events(events, source="ae.csv")
    message = str(caught.value)
    assert message.startswith("ae.csv: 1 problem")
    assert f"row 2, {field}:" in message and fragment in message


def test_several_criteria_separated_by_semicolons():
    check_adverse_events(
        pd.DataFrame(
            [
                ae(
                    serious=True,
                    grade=5,
                    outcome="fatal",
                    serious_criteria="results in death; life-threatening",
                )
            ]
        )
    )


@pytest.mark.parametrize(
    ("hours", "last", "related"),
    [
        (0.0, 1, True),  # at the start of infusion 1
        (24.0, 1, True),  # the window's last instant
        (24.01, 1, False),  # just after the window
        (71.99, 1, False),  # just before infusion 2
        (72.0, 2, True),  # at the start of infusion 2
        (-1.0, None, False),  # before any infusion
    ],
)
def test_infusion_window_edges(hours, last, related):
    timed = derive_ae_timing(
        pd.DataFrame([ae(hours=hours)]), infusions(), reaction_window_hours=24, follow_up_days=28
    )
    row = timed.iloc[0]
    assert bool(row["infusion_related"]) is related
    if last is None:
        assert pd.isna(row["last_infusion"]) and not row["treatment_emergent"]
    else:
        assert row["last_infusion"] == last and row["treatment_emergent"]
        assert row["hours_since_infusion"] == pytest.approx(hours - 72.0 * (last - 1))


def test_follow_up_window_and_row_order_kept():
    events = pd.DataFrame([ae(hours=28 * 24 + 1), ae(hours=5), ae(subject="S2", hours=1)])
    inf = pd.concat([infusions("S1"), infusions("S2")])
    timed = derive_ae_timing(events, inf, reaction_window_hours=24, follow_up_days=28)
    assert timed["in_follow_up"].tolist() == [False, True, True]
    assert timed["hours_since_infusion"].round(2).tolist() == [28 * 24 + 1 - 144, 5.0, 1.0]


def test_events_before_any_infusion_of_the_study():
    # no infusion recorded yet: the infusions frame is empty (its subject ids of no set type)
    none = infusions().iloc[0:0].astype({"subject_id": object})
    events = pd.DataFrame([ae(hours=-5)]).astype({"subject_id": "string"})
    timed = derive_ae_timing(events, none, reaction_window_hours=24, follow_up_days=28)
    assert pd.isna(timed.iloc[0]["last_infusion"]) and not timed.iloc[0]["treatment_emergent"]


def timed_events(rows) -> pd.DataFrame:
    return derive_ae_timing(
        pd.DataFrame(rows),
        pd.concat([infusions(s) for s in ("S1", "S2")]),
        reaction_window_hours=24,
    )


def test_overview_counts_subjects_and_events():
    events = timed_events(
        [
            ae("S1", hours=2),
            ae("S1", hours=80),
            ae(
                "S2",
                term="ARDS",
                hours=200,
                grade=4,
                serious=True,
                serious_criteria="life-threatening",
                relatedness="not related",
            ),
            ae("S2", term="Rash", hours=-5),  # before treatment: not counted
        ]
    )
    table = summarize_ae_overview(["S1", "S2", "S3"], events, window_hours=24).set_index("category")
    assert table.loc["Any treatment-emergent adverse event", "subjects"] == 2
    assert table.loc["Any treatment-emergent adverse event", "events"] == 3
    assert table.loc["Serious adverse event", "subject_ids"] == "S2"
    assert table.loc["Adverse event of grade ≥ 3", "percent"] == pytest.approx(100 / 3)
    related = "Adverse event related to the product (possibly, probably, definitely)"
    assert table.loc[related, "events"] == 2
    assert table.loc["Adverse event with onset within 24 h of an infusion", "events"] == 2
    assert table.loc["Death (adverse event of grade 5 or with a fatal outcome)", "subjects"] == 0


def test_terms_by_worst_grade():
    events = timed_events(
        [ae("S1", hours=2, grade=1), ae("S1", hours=75, grade=2), ae("S2", hours=3, grade=1)]
    )
    terms = summarize_ae_terms(["S1", "S2"], events).set_index("term")
    assert terms.loc["Fever", ["grade 1", "grade 2", "subjects", "events"]].tolist() == [1, 1, 2, 3]


def test_shift_table_from_baseline_to_worst():
    obs = pd.DataFrame(
        {
            "subject_id": ["S1", "S1", "S1", "S2", "S2"],
            "time": [
                T0 - pd.Timedelta(hours=4),
                T0 + pd.Timedelta(days=2),
                T0 + pd.Timedelta(days=5),
                T0 - pd.Timedelta(hours=2),
                T0 + pd.Timedelta(days=3),
            ],
            "term_low": pd.Categorical(["Anemia"] * 5),
            "grade_low": pd.array([1, 3, 2, 0, 0], dtype="Int8"),
            "term_high": pd.Categorical([None] * 5, categories=["Hemoglobin increased"]),
            "grade_high": pd.array([None] * 5, dtype="Int8"),
            "study_day": [-1, 2, 5, 0, 3],
        }
    )
    flagged = derive_first_infusion_flag(obs, pd.Series({"S1": T0, "S2": T0}))
    shifts = summarize_lab_shifts(flagged)
    cells = {(r.baseline, r.worst): r.subjects for r in shifts.itertuples()}
    assert cells == {("1", "3"): 1, ("0", "0"): 1}
    assert set(shifts["term"]) == {"Anemia"}


def test_shift_table_counts_a_missing_side_and_both_directions():
    obs = pd.DataFrame(
        {
            "subject_id": ["S1", "S2", "S2", "S3"],
            "time": [T0 + pd.Timedelta(days=1), T0 - pd.Timedelta(hours=1), T0, T0],
            "term_low": pd.Categorical(["Anemia", "Anemia", None, None]),
            "grade_low": pd.array([2, 1, None, None], dtype="Int8"),
            "term_high": pd.Categorical([None, None, "Fever", "Fever"]),
            "grade_high": pd.array([None, None, 1, None], dtype="Int8"),
            "study_day": [1, 0, 0, 0],
        }
    )
    flagged = derive_first_infusion_flag(obs, pd.Series({"S1": T0, "S2": T0, "S3": T0}))
    shifts = summarize_lab_shifts(flagged)
    assert shifts.values.tolist() == [
        ["Anemia", "low", "1", "missing", 1],  # S2: a baseline only
        ["Anemia", "low", "missing", "2", 1],  # S1: no baseline
        ["Fever", "high", "1", "missing", 1],  # at the infusion time: still baseline
    ]
