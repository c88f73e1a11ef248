"""The efficacy analysis, figures, report section and CLI on a simulated study."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from celltrial.cli import app
from celltrial.cohort import simulate
from celltrial.efficacy.analysis import EFFICACY_MARKERS, summarize_efficacy
from celltrial.efficacy.figures import (
    infusion_days_of,
    render_biomarker_overview,
    render_biomarker_panel,
    render_swimmer,
    write_figure,
)
from celltrial.efficacy.section import build_efficacy_section
from celltrial.errors import CelltrialError
from celltrial.overview import summarize_study
from celltrial.report.sections import SECTION_BUILDERS, ReportContext
from celltrial.store.database import study_session
from celltrial.store.loading import load_simulated_cohort
from celltrial.study import init_study, read_study_frames


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("efficacy") / "study"
    handle = init_study(out, user="test")
    cohort = simulate(handle.protocol, 5, seed=2020)
    with study_session(handle.engine, user="test", reason="test cohort") as session:
        load_simulated_cohort(session, handle.study_id, cohort)
    return handle, read_study_frames(handle)


@pytest.fixture(scope="module")
def analysis(study):
    handle, frames = study
    return summarize_efficacy(frames, handle.protocol)


def test_analysis_covers_markers_status_and_findings(analysis) -> None:
    assert analysis.tests == EFFICACY_MARKERS
    assert analysis.n == 5
    assert set(analysis.summary["test"]) == set(EFFICACY_MARKERS)
    # 5 subjects: no exact two-sided p below 0.0625, and the findings say so
    assert (analysis.paired.summary["p_value"] >= 0.0625 - 1e-12).all()
    texts = [f.text for f in analysis.findings]
    assert any("cannot go below p = 0.13" in t for t in texts)  # 4 pairs at Day 14: 2/2^4
    # the key visit is the protocol's (Day 14), not chosen from the data; CRP has 2 pairs there
    assert handle_key_visit(analysis) == {"Day 14"}
    crp = next(t for t in texts if t.startswith("C-reactive protein"))
    # S004 died on day 14 without a Day 14 value; S002 and S005 have none (values on days 25, 28)
    assert crp.startswith(
        "C-reactive protein: Day 14 is the pre-specified key visit; only 2 of 5 treated patients "
        "have both a baseline and a Day 14 value (1 died in the Day 14 window; 2 had no Day 14 "
        "value) — too few"
    )
    assert "or run the test" in crp
    assert texts[-1].startswith("What the design allows: 5 patients")
    assert analysis.clinical is not None and analysis.clinical.n == 5
    assert set(analysis.clinical.time_to_event) == {"improvement", "discharge", "death"}
    # the derived WHO scale agrees with the simulated (recorded) one
    status = analysis.status
    derived = status[status["who_derived"].notna()]
    assert len(derived) > 0.7 * len(status)
    assert derived["who_conflict"].sum() == 0
    assert len(analysis.responders.listing) == 5 * len(analysis.responders.rules)
    assert "Hodges–Lehmann" in analysis.method


def handle_key_visit(analysis) -> set[str]:
    return set(analysis.key_visits.values())


def test_unknown_test_is_a_user_error(study) -> None:
    handle, frames = study
    with pytest.raises(CelltrialError, match="no observations of NOPE"):
        summarize_efficacy(frames, handle.protocol, tests=["NOPE"])


def test_figures_render_and_write_png_and_svg(study, analysis, tmp_path) -> None:
    _, frames = study
    days = infusion_days_of(frames.infusions)
    assert days == [0.0, 3.0, 6.0]
    panel = render_biomarker_panel(analysis.observations, test="CRP", infusion_days=days)
    assert panel.axes[0].get_yscale() == "log"
    assert "mg/L" in panel.axes[0].get_ylabel()
    overview = render_biomarker_overview(
        analysis.observations, tests=analysis.tests, infusion_days=days
    )
    assert sum(ax.get_visible() for ax in overview.axes) == 8
    swimmer = render_swimmer(
        analysis.status,
        clinical=analysis.clinical.summary,
        infusions=frames.infusions,
        adverse_events=frames.adverse_events,
        oxygenation=analysis.oxygenation_summary.daily,
    )
    png = write_figure(panel, tmp_path / "crp.png")
    svg = write_figure(swimmer, tmp_path / "swimmer.svg")
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert b"<svg" in svg.read_bytes()[:500]
    with pytest.raises(CelltrialError, match=r"\.png or \.svg"):
        write_figure(panel, tmp_path / "x.jpg")


def test_report_section(study) -> None:
    handle, frames = study
    assert "celltrial.efficacy.section:build_efficacy_section" in SECTION_BUILDERS
    context = ReportContext(
        study=handle, frames=frames, overview=summarize_study(handle.protocol, frames)
    )
    section = build_efficacy_section(context)
    assert section is not None and section.id == "efficacy"
    html = str(section.html)
    assert html.count("data:image/png;base64,") == 2
    for text in ("Findings", "Hodges–Lehmann", "Mixed-effects", "Responders", "Kaplan–Meier"):
        assert text in html
    assert section.methods and "Baseline was the last value" in section.methods[0]


def test_cli_prints_the_tables(study) -> None:
    handle, _ = study
    result = CliRunner().invoke(app, ["efficacy", str(handle.directory), "--test", "CRP"])
    assert result.exit_code == 0, result.output
    for text in (
        "C-reactive protein (mg/L): per-visit summaries",
        "Mixed model, C-reactive protein (mg/L)",
        "Responders",
        "Findings",
    ):
        assert text in result.output
    assert "_" not in result.output.split("Findings")[0]  # column labels, not column names
    bad = CliRunner().invoke(app, ["efficacy", str(handle.directory), "--test", "NOPE"])
    assert bad.exit_code == 1 and "no observations of NOPE" in bad.output


def test_holm_family_is_the_same_in_the_cli_and_the_report(study, analysis) -> None:
    """Issue 27 item 4: ``--test CRP`` used to adjust over CRP's 6 visits (Holm p 0.375 =
    6 × 0.0625) while the report adjusted over all 40 comparisons (p = 1)."""
    import json

    from statsmodels.stats.multitest import multipletests

    from celltrial.pvalues import p_number

    handle, frames = study
    table = analysis.paired.summary
    # independent reference: statsmodels' Holm over the whole family (every marker × visit)
    reference = multipletests(table["p_value"].to_numpy(float), method="holm")[1]
    expected = dict(zip(zip(table["test"], table["visit"], strict=True), reference, strict=True))
    assert analysis.paired.n_tests == len(table) == 40
    assert expected[("CRP", "Day 3")] == 1.0  # 40 × 0.0625 > 1
    result = CliRunner().invoke(
        app, ["efficacy", str(handle.directory), "--test", "CRP", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    crp = next(
        t for t in document["tables"] if "p_holm" in t["columns"] and "scale" in t["columns"]
    )
    cli = {
        row[crp["columns"].index("visit")]: row[crp["columns"].index("p_holm")]
        for row in crp["rows"]
    }
    assert cli and all(cli[v] == pytest.approx(expected[("CRP", v)]) for v in cli)
    # the report's paired table shows the same adjusted p for CRP
    context = ReportContext(
        study=handle, frames=frames, overview=summarize_study(handle.protocol, frames)
    )
    html = str(build_efficacy_section(context).html)
    paired = re.search(r"Baseline vs each later visit.*?</table>", html, re.S).group(0)
    for visit, p in cli.items():
        row = re.search(  # the report names the marker: CRP → C-reactive protein
            rf"<tr><td>C-reactive protein</td><td>{re.escape(visit)}</td>(.*?)</tr>", paired, re.S
        )
        assert row, visit
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))
        assert cells[6] == p_number(p)  # n pairs, scale, HL, CI, exact p, smallest p, Holm p
    # both state the family
    family = "Holm family: 40 baseline-vs-visit comparisons"
    assert family in html
    text = CliRunner().invoke(
        app, ["efficacy", str(handle.directory), "--test", "CRP"], env={"COLUMNS": "300"}
    )
    assert family in text.output.replace("\n", " ")
    assert (  # the report names the markers the command line lists by code
        "D-dimer (FEU), C-reactive protein, Interleukin-6, Lymphocytes, Neutrophils, CD4+ T cells "
        "(absolute), CD19+ B cells (absolute), CD16+CD56+ NK cells (absolute)" in html
    )
