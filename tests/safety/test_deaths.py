"""Issue 27, deaths: a fatal adverse event is grade 5, a grade 5 event is serious, a death is
recorded once; every event that breaks a rule is a data problem listed with the subject, the event
and what to fix (never corrected), in ``celltrial safety`` and the report's safety section.

The rules are data (``adverse_events.yaml``, ``deaths``); the boundaries here are worked by hand.
"""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from celltrial.cohort import simulate
from celltrial.safety.analysis import analyse_safety
from celltrial.safety.deaths import RULES, list_death_problems, load_death_rules
from celltrial.safety.events import load_ae_vocabulary
from celltrial.safety.recording import record_adverse_event
from celltrial.store.database import study_session
from celltrial.store.loading import load_simulated_cohort
from celltrial.study import init_study, read_study_frames

T0 = pd.Timestamp("2020-02-10 02:00", tz="UTC")
DEATH_ROW = "Death (adverse event of grade 5 or with a fatal outcome)"


def ae(subject="S1", term="ARDS", day=3, grade=5, serious=True, outcome="fatal", **more):
    criteria = more.pop("serious_criteria", "results in death" if serious else None)
    return {
        "subject_id": subject,
        "term": term,
        "onset": T0 + pd.Timedelta(days=day),
        "onset_day": day,
        "grade": grade,
        "serious": serious,
        "serious_criteria": criteria,
        "outcome": outcome,
        **more,
    }


def problems(*events) -> list[tuple[str, str, str]]:
    found = list_death_problems(pd.DataFrame(list(events)))
    return list(zip(found["subject_id"], found["term"], found["rule"], strict=True))


# --- the rules, one event at a time ---------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        # a fatal outcome: grade 5 and nothing else
        (ae(grade=5), []),
        (ae(grade=4), ["fatal_not_grade_5"]),
        (ae(grade=1), ["fatal_not_grade_5"]),
        (ae(grade=None), []),  # the grade is missing, not wrong
        # grade 5: serious, and fatal when an outcome is given
        (ae(grade=5, serious=False), ["grade_5_not_serious"]),
        (ae(grade=5, serious=False, outcome=None), ["grade_5_not_serious"]),
        (ae(grade=5, outcome="recovered"), ["grade_5_not_fatal"]),
        (
            ae(grade=5, serious=False, outcome="recovered"),
            ["grade_5_not_serious", "grade_5_not_fatal"],
        ),
        (ae(grade=5, outcome=None), []),
        # neither fatal nor grade 5
        (ae(grade=4, outcome="not recovered"), []),
        (ae(grade=4, serious=False, outcome="recovered"), []),
    ],
)
def test_each_event_against_the_rules(event, expected) -> None:
    assert [rule for _, _, rule in problems(event)] == expected


def test_a_fatal_grade_4_says_what_is_wrong_and_what_to_fix() -> None:
    found = list_death_problems(pd.DataFrame([ae("S004", "ARDS", day=8, grade=4)]))
    row = found.iloc[0]
    assert (row["subject_id"], row["term"], row["onset_day"], row["grade"]) == (
        "S004",
        "ARDS",
        8,
        4,
    )
    assert row["problem"] == "fatal outcome but grade 4: a fatal adverse event is grade 5"
    assert row["fix"] == "set grade 5 if the event caused the death, else correct the outcome"


def test_a_death_recorded_twice() -> None:
    ards = ae("S4", "Acute respiratory distress syndrome", day=8, grade=4)
    death = ae("S4", "Death NOS", day=14)
    found = list_death_problems(pd.DataFrame([death, ards]))  # order of the rows does not count
    assert list(zip(found["term"], found["rule"], strict=True)) == [
        ("Acute respiratory distress syndrome", "fatal_not_grade_5"),
        ("Death NOS", "duplicate_death"),
    ]
    duplicate = found.iloc[1]
    assert "Acute respiratory distress syndrome (day 8) has a fatal outcome" in duplicate["problem"]


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        # the death alone, or the fatal event alone: one record, nothing to flag
        ([ae("S1", "Death NOS")], []),
        ([ae("S1", "ARDS")], []),
        # a death term beside a grade 5 event that is not fatal yet (outcome missing)
        ([ae("S1", "ARDS", outcome=None), ae("S1", "death nos", day=5)], [("S1", "death nos")]),
        # beside a non-fatal event: no duplicate
        ([ae("S1", "ARDS", grade=4, outcome="not recovered"), ae("S1", "Death NOS", day=5)], []),
        # the fatal event is another subject's
        ([ae("S1", "ARDS"), ae("S2", "Death NOS", day=5)], []),
        # two death terms: the later one is the second record
        (
            [ae("S1", "Death NOS", day=5), ae("S1", "Sudden death NOS", day=6)],
            [("S1", "Sudden death NOS")],
        ),
    ],
)
def test_duplicate_deaths(events, expected) -> None:
    found = [(s, t) for s, t, rule in problems(*events) if rule == "duplicate_death"]
    assert found == expected


def test_the_rules_are_data() -> None:
    vocabulary = load_ae_vocabulary()["deaths"]
    rules = load_death_rules()
    assert set(vocabulary["rules"]) == set(RULES)
    assert rules.fatal_grade == 5 and rules.fatal_outcome == "fatal"
    assert rules.serious_criterion in load_ae_vocabulary()["serious_criteria"]
    assert rules.is_death_term(" death NOS ") and not rules.is_death_term("ARDS")


def test_events_without_outcome_or_seriousness_columns() -> None:
    frame = pd.DataFrame([{"subject_id": "S1", "term": "ARDS", "grade": 5}])
    assert list_death_problems(frame)["rule"].tolist() == ["grade_5_not_serious"]


# --- on a study: the data problems where the project lists them -----------------------------


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The demo's cohort (5 subjects, seed 2020: S004 dies on day 14 of ARDS) with S004's death
    recorded the way a site might (ARDS grade 4 "fatal" beside "Death NOS" grade 5, as data
    loaded from elsewhere), plus, through the audited entry path, a grade 5 event recorded as
    not serious for S002 and a well-recorded grade 5 fatal serious event for S003."""
    handle = init_study(tmp_path_factory.mktemp("deaths") / "study", user="test")
    cohort = simulate(handle.protocol, 5, seed=2020)
    events = cohort.adverse_events
    ards = (events["subject_id"] == "S004") & (
        events["term"] == "Acute respiratory distress syndrome"
    )
    assert ards.sum() == 1 and events.loc[ards, "grade"].item() == 5  # the simulator's own record
    death_nos = events.loc[ards].assign(
        term="Death NOS", onset=events.loc[ards, "resolved"], description="Death"
    )
    events.loc[ards, ["grade", "serious_criteria"]] = [4, "life-threatening"]
    cohort = dataclasses.replace(
        cohort, adverse_events=pd.concat([events, death_nos], ignore_index=True)
    )
    with study_session(handle.engine, user="test", reason="test cohort") as session:
        load_simulated_cohort(session, handle.study_id, cohort)
    frames = read_study_frames(handle)
    first = frames.subjects.set_index("subject_id")["first_infusion"]
    zone = handle.protocol.study.timezone
    with study_session(handle.engine, user="test", reason="test events") as session:
        for code, term, serious in (("S002", "Sepsis", False), ("S003", "Pneumonia", True)):
            record_adverse_event(
                session,
                handle.study_id,
                {
                    "subject_id": code,
                    "term": term,
                    "onset": first[code] + pd.Timedelta(days=2),
                    "grade": 5,
                    "serious": serious,
                    "serious_criteria": "results in death" if serious else None,
                    "outcome": "fatal",
                },
                zone=zone,
            )
    frames = read_study_frames(handle)
    return handle, frames, analyse_safety(handle.protocol, frames)


def test_the_study_lists_each_problem_once(study) -> None:
    _, frames, summary = study
    assert frames.subjects.set_index("subject_id").loc["S004", "died"] is not pd.NaT
    found = summary.data_problems
    assert list(zip(found["subject_id"], found["term"], found["rule"], strict=True)) == [
        ("S002", "Sepsis", "grade_5_not_serious"),
        ("S004", "Acute respiratory distress syndrome", "fatal_not_grade_5"),
        ("S004", "Death NOS", "duplicate_death"),
    ]
    # reported, not corrected: the grades are as recorded
    listing = summary.listing.set_index(["subject_id", "term"])
    assert listing.loc[("S004", "Acute respiratory distress syndrome"), "grade"] == 4
    assert any("adverse-event data problem(s)" in c and "S002, S004" in c for c in summary.caveats)
    # every subject who died counts once among the deaths (S002, S003, S004)
    overview = summary.summary.set_index("category")
    assert overview.loc[DEATH_ROW, "subject_ids"] == "S002, S003, S004"
    assert overview.loc[DEATH_ROW, "subjects"] == 3


def test_celltrial_safety_lists_them(study) -> None:
    from celltrial.cli import app

    handle, _, _ = study
    result = CliRunner().invoke(app, ["safety", str(handle.directory), "--format", "json"])
    assert result.exit_code == 0, result.output
    tables = {t["title"]: t for t in json.loads(result.output)["tables"]}
    table = next(
        t for title, t in tables.items() if title.startswith("Adverse-event data problems")
    )
    assert len(table["rows"]) == 3
    text = json.dumps(table["rows"])
    assert "fatal outcome but grade 4" in text and "set grade 5" in text
    assert "grade 5 (death) but not recorded as serious" in text


def test_the_report_lists_them(study) -> None:
    from celltrial.report.sections import ReportContext
    from celltrial.safety.section import render_safety_html

    handle, frames, summary = study
    context = ReportContext(study=handle, frames=frames, overview=None)  # type: ignore[arg-type]
    html = str(render_safety_html(summary, context))
    assert "Adverse-event data problems" in html
    assert "fatal outcome but grade 4: a fatal adverse event is grade 5" in html
    assert "a second record of the death: Acute respiratory distress syndrome (day 8)" in html
    assert "Safety population: the 5 subjects who received any infusion" in html


def test_a_fatal_event_of_grade_4_is_still_refused_at_entry(study) -> None:
    from celltrial.errors import DataError

    handle, frames, _ = study
    first = frames.subjects.set_index("subject_id")["first_infusion"]
    with (
        pytest.raises(DataError, match="grade 5 for a fatal outcome"),
        study_session(handle.engine, user="test", reason="test") as session,
    ):
        record_adverse_event(
            session,
            handle.study_id,
            {
                "subject_id": "S001",
                "term": "ARDS",
                "onset": first["S001"] + pd.Timedelta(days=1),
                "grade": 4,
                "serious": True,
                "serious_criteria": "life-threatening",
                "outcome": "fatal",
            },
            zone=handle.protocol.study.timezone,
        )


def test_the_death_row_counts_a_fatal_outcome_or_grade_5() -> None:
    from celltrial.safety.tables import summarize_ae_overview

    events = pd.DataFrame(
        [
            ae("S1", "ARDS", grade=4),  # fatal outcome, grade 4: a death all the same
            ae("S2", "Sepsis", grade=None),  # fatal outcome, no grade
            ae("S3", "Death NOS"),  # grade 5
            ae("S4", "Rash", grade=None, serious=False, outcome=None),  # neither
            ae("S5", "ARDS", grade=4, outcome="not recovered"),  # neither
        ]
    ).assign(treatment_emergent=True, related=False, infusion_related=False)
    table = summarize_ae_overview(["S1", "S2", "S3", "S4", "S5"], events, window_hours=24)
    row = table.set_index("category").loc[DEATH_ROW]
    assert (row["subjects"], row["subject_ids"], row["events"]) == (3, "S1, S2, S3", 3)
    assert row["percent"] == pytest.approx(60.0)  # of the 5 treated
