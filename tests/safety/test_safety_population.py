"""Issue 27, the safety population: the subjects who received any infusion. Subjects enrolled
without one (registered from a lab file, say) count as enrolled, never in the safety N; the
participant flow shows enrolled, treated and why the others were not treated.

Six simulated subjects (seed 2020) of whom S005 (who dies) and S006 have no infusion recorded:
6 enrolled, 4 treated.
"""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from celltrial.cohort import simulate
from celltrial.overview import summarize_study
from celltrial.report.flow import compute_flow, describe_flow, render_flow_svg
from celltrial.safety.analysis import analyse_safety
from celltrial.store.database import study_session
from celltrial.store.loading import load_simulated_cohort
from celltrial.study import init_study, read_study_frames

NOT_TREATED = ("S005", "S006")
TREATED = ("S001", "S002", "S003", "S004")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    handle = init_study(tmp_path_factory.mktemp("population") / "study", user="test")
    cohort = simulate(handle.protocol, 6, seed=2020)
    untreated = cohort.infusions["subject_id"].isin(NOT_TREATED)
    cohort = dataclasses.replace(cohort, infusions=cohort.infusions[~untreated])
    with study_session(handle.engine, user="test", reason="test cohort") as session:
        load_simulated_cohort(session, handle.study_id, cohort)
    frames = read_study_frames(handle)
    return handle, frames, analyse_safety(handle.protocol, frames)


def test_the_safety_n_counts_the_treated_only(study) -> None:
    _, frames, summary = study
    assert len(frames.subjects) == 6
    assert (summary.n, summary.n_enrolled, summary.not_treated) == (4, 6, NOT_TREATED)
    table = summary.summary
    assert (table["percent"] == 100.0 * table["subjects"] / 4).all()
    for ids in table["subject_ids"]:
        assert set(filter(None, ids.split(", "))) <= set(TREATED)
    assert set(summary.listing["subject_id"]) <= set(TREATED)
    assert summary.population == (
        "the 4 subjects who received any infusion, of 6 enrolled (not treated: S005, S006 — "
        "no infusion recorded)"
    )
    assert any(c.startswith("Safety population: the 4 subject(s)") for c in summary.caveats)


def test_every_subject_treated_says_so_plainly(tmp_path) -> None:
    handle = init_study(tmp_path / "all", user="test")
    with study_session(handle.engine, user="test", reason="test cohort") as session:
        load_simulated_cohort(session, handle.study_id, simulate(handle.protocol, 2, seed=1))
    summary = analyse_safety(handle.protocol, read_study_frames(handle))
    assert (summary.n, summary.n_enrolled, summary.not_treated) == (2, 2, ())
    assert summary.population == "the 2 subjects who received any infusion"


def test_celltrial_safety_prints_the_safety_n(study) -> None:
    from celltrial.cli import app

    handle, _, _ = study
    result = CliRunner().invoke(app, ["safety", str(handle.directory), "--format", "json"])
    assert result.exit_code == 0, result.output
    titles = [t["title"] for t in json.loads(result.output)["tables"]]
    assert "Safety overview (N = 4)" in titles
    text = CliRunner().invoke(app, ["safety", str(handle.directory)], env={"COLUMNS": "200"})
    assert text.exit_code == 0, text.output
    assert "safety population: the 4 subjects who received any infusion, of 6 enrolled" in (
        text.output
    )


def test_the_overview_counts_enrolled_and_treated(study) -> None:
    handle, frames, _ = study
    overview = summarize_study(handle.protocol, frames, today=pd.Timestamp("2021-01-01", tz="UTC"))
    assert (overview.n, overview.n_treated) == (6, 4)
    assert not overview.deviations["subject_id"].isin(NOT_TREATED).any()


def test_the_participant_flow(study) -> None:
    handle, frames, _ = study
    overview = summarize_study(handle.protocol, frames, today=pd.Timestamp("2021-01-01", tz="UTC"))
    days = handle.protocol.follow_up_days
    counts = compute_flow(overview, follow_up_days=days)
    assert (counts.enrolled, counts.n_treated) == (6, 4)
    assert counts.not_treated == {
        "S005": "died before any infusion",
        "S006": "no infusion recorded",
    }
    assert counts.infusions == (4, 4, 4)
    died = int(frames.subjects.set_index("subject_id").loc[list(TREATED), "died"].notna().sum())
    assert counts.died == died
    assert counts.completed + counts.died + counts.withdrawn + counts.ongoing == 4
    assert counts.ongoing == 0  # every follow-up ended by 2021
    svg = str(render_flow_svg(counts, follow_up_days=days))
    for text in (
        "Enrolled: 6",
        "Treated (safety population): 4",
        "Not treated: 2",
        "S005: died before any infusion",  # one line per reason in the side box
        "S006: no infusion recorded",
        "Received infusion 1: 4",
    ):
        assert text in svg
    assert describe_flow(counts, follow_up_days=days).startswith(
        "6 subject(s) enrolled, 4 treated (the safety population); not treated: S005: died "
        "before any infusion; S006: no infusion recorded. Received infusion 1: 4; infusion 2: "
        "4; infusion 3: 4. Of the 4 "
        f"treated: {counts.completed} completed"
    )


def test_a_subject_withdrawn_before_treatment(study) -> None:
    handle, frames, _ = study
    subjects = frames.subjects.copy()
    subjects["withdrawn"] = subjects["withdrawn"].astype("datetime64[ns, UTC]")
    subjects.loc[subjects["subject_id"] == "S006", "withdrawn"] = subjects["enrolled"].max()
    overview = summarize_study(
        handle.protocol,
        dataclasses.replace(frames, subjects=subjects),
        today=pd.Timestamp("2021-01-01", tz="UTC"),
    )
    counts = compute_flow(overview, follow_up_days=handle.protocol.follow_up_days)
    assert counts.not_treated["S006"] == "withdrawn before any infusion"
    assert counts.withdrawn == 0  # counted among the treated only
    assert counts.completed + counts.died + counts.withdrawn + counts.ongoing == 4


def test_the_report_says_who_is_in_the_safety_population(study, monkeypatch) -> None:
    from celltrial.report import sections
    from celltrial.report.build import render_report_html

    # the subject profiles fail on subjects without a day 0 (report/profiles.py, not safety's)
    monkeypatch.setattr(
        sections,
        "SECTION_BUILDERS",
        tuple(b for b in sections.SECTION_BUILDERS if "profiles" not in b),
    )
    handle, frames, _ = study
    overview = summarize_study(handle.protocol, frames, today=pd.Timestamp("2021-01-01", tz="UTC"))
    html = render_report_html(handle, frames, overview)
    assert "Safety population: the 4 subjects who received any infusion, of 6 enrolled" in html
    assert "Safety overview (N = 4)." in html
    assert "Treated (safety population): 4" in html and "Enrolled: 6" in html
