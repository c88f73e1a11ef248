"""Issue 27 on a simulated study: abnormal baselines graded, toxicities treatment-emergent, and the
dashboard, the report and ``celltrial safety`` counting them alike.

Eight simulated critically ill subjects (seed 2020): several are lymphopenic before the first
infusion, so grade ≥ 3 lymphocyte counts after it are no worse than their baseline.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from celltrial.cohort import simulate
from celltrial.safety.analysis import analyse_safety, grade_study_labs
from celltrial.store.database import study_session
from celltrial.store.loading import load_simulated_cohort
from celltrial.study import init_study, read_study_frames

EMERGENT = "Treatment-emergent laboratory toxicity of grade ≥ 3 (worse than baseline)"
PRESENT = (
    "Laboratory abnormality of grade ≥ 3 present before treatment, no worse since (not counted)"
)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    handle = init_study(tmp_path_factory.mktemp("labsafety") / "study", user="test")
    cohort = simulate(handle.protocol, 8, seed=2020)
    with study_session(handle.engine, user="test", reason="test cohort") as session:
        load_simulated_cohort(session, handle.study_id, cohort)
    frames = read_study_frames(handle)
    return handle, frames, analyse_safety(handle.protocol, frames)


def test_values_before_the_first_infusion_are_graded_against_the_limits(study) -> None:
    """ALT/AST G1 is ">ULN - 3.0 x ULN" against a normal baseline: every value above ULN at or
    before the first infusion is grade ≥ 1 (graded against its own baseline, it was 0)."""
    handle, frames, _ = study
    graded = grade_study_labs(handle.protocol, frames)
    before = graded[~graded["after_first_infusion"]]
    liver = before[before["test"].isin(["ALT", "AST"]) & (before["value"] > before["ref_high"])]
    assert len(liver)  # the simulated cohort has abnormal liver enzymes before treatment
    ratio = liver["value"] / liver["ref_high"]
    expected = [1 if r <= 3 else 2 if r <= 5 else 3 if r <= 20 else 4 for r in ratio]
    assert liver["grade_high"].tolist() == expected
    assert not before["assumed_normal_baseline_high"].any()  # graded on the limits by rule
    assert not before["assumed_normal_baseline_low"].any()


def test_toxicities_are_worse_than_baseline_and_the_rest_is_shown_apart(study) -> None:
    _, _, summary = study
    toxicities = summary.lab_toxicities
    assert len(toxicities) and (toxicities["grade"] >= 3).all()
    baseline = toxicities["baseline_grade"].astype("Float64").fillna(0)
    assert (toxicities["grade"] > baseline).all()
    present = summary.lab_baseline_abnormalities
    assert len(present)  # guards against a dull sample
    assert (present["worst_grade"] <= present["baseline_grade"]).all()
    overview = summary.summary.set_index("category")
    assert overview.loc[EMERGENT, "events"] == len(toxicities)
    assert overview.loc[PRESENT, "events"] == present["n_values"].sum()
    assert "Laboratory toxicity of grade ≥ 3 after the first infusion" not in overview.index


def test_the_dashboard_alerts_on_treatment_emergent_toxicities_only(study) -> None:
    from celltrial.services import monitoring

    handle, _, summary = study
    dashboard = monitoring.summarize_dashboard(handle)
    lab_alerts = [a for a in dashboard.alerts if a["kind"].endswith("lab toxicity")]
    assert len(lab_alerts) == len(summary.lab_toxicities)
    assert all("baseline" in a["text"] for a in lab_alerts)
    assert len(dashboard.lab_baseline_abnormalities) == len(summary.lab_baseline_abnormalities)
    first = dashboard.lab_baseline_abnormalities[0]
    assert {"subject_id", "term", "baseline_grade", "worst_grade", "n_values"} <= set(first)


def test_the_dashboard_page_shows_baseline_abnormalities_apart(study) -> None:
    from celltrial.services.accounts import add_user
    from celltrial.web import create_app
    from tests.web.conftest import PASSWORD, client_for

    handle, _, summary = study
    add_user(handle.engine, username="monitor", role="monitor", password=PASSWORD, by="test")
    app = create_app(handle.directory)
    try:
        client = client_for(app, "monitor")
        html = client.get("/").text
        assert "Present before treatment, not worse since" in html
        subject = summary.lab_baseline_abnormalities["subject_id"].iloc[0]
        assert f'href="/subjects/{subject}"' in html
        api = client.get("/api/v1/dashboard").json()
        assert len(api["lab_baseline_abnormalities"]) == len(summary.lab_baseline_abnormalities)
    finally:
        app.state.study.engine.dispose()


def test_the_report_counts_them_alike(study) -> None:
    from celltrial.report.sections import ReportContext
    from celltrial.safety.section import render_safety_html

    handle, frames, summary = study
    context = ReportContext(study=handle, frames=frames, overview=None)  # type: ignore[arg-type]
    html = str(render_safety_html(summary, context))
    assert "Treatment-emergent laboratory toxicities" in html
    assert "present before treatment and no worse after the first infusion" in html
    assert EMERGENT in html and PRESENT in html


def test_celltrial_safety_prints_both(study) -> None:
    from celltrial.cli import app

    handle, _, summary = study
    result = CliRunner().invoke(app, ["safety", str(handle.directory), "--format", "json"])
    assert result.exit_code == 0, result.output
    tables = {t["title"]: t for t in json.loads(result.output)["tables"]}
    emergent = tables["Treatment-emergent lab toxicities (grade ≥ 3, worse than baseline)"]
    assert len(emergent["rows"]) == len(summary.lab_toxicities)
    present = next(t for title, t in tables.items() if title.startswith("Lab abnormalities"))
    assert len(present["rows"]) == len(summary.lab_baseline_abnormalities)
    overview = {row[0]: row for row in tables["Safety overview (N = 8)"]["rows"]}
    assert EMERGENT in overview and PRESENT in overview
    assert pd.notna(overview[EMERGENT][-1])
