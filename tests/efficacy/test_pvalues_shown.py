"""No p-value is ever shown as "p = 0" (issue 27 item 5): a 30-subject study, whose exact
Wilcoxon p-values fall far below 0.001, through the findings, the report's efficacy section and
``celltrial efficacy`` (text); CSV and JSON keep the numbers."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from celltrial.cli import app
from celltrial.cohort import simulate
from celltrial.efficacy.analysis import summarize_efficacy
from celltrial.efficacy.section import build_efficacy_section
from celltrial.overview import summarize_study
from celltrial.report.sections import ReportContext
from celltrial.store.database import study_session
from celltrial.store.loading import load_simulated_cohort
from celltrial.study import init_study, read_study_frames

P_ZERO = re.compile(r"p\s*=\s*0(?![.\d])")


@pytest.fixture(scope="module")
def study30(tmp_path_factory):
    out = tmp_path_factory.mktemp("pvalues") / "study"
    handle = init_study(out, user="test")
    cohort = simulate(handle.protocol, 30, seed=2020)  # the demo's seed
    with study_session(handle.engine, user="test", reason="test cohort") as session:
        load_simulated_cohort(session, handle.study_id, cohort)
    return handle, read_study_frames(handle)


@pytest.fixture(scope="module")
def analysis30(study30):
    handle, frames = study30
    return summarize_efficacy(frames, handle.protocol)


def _p_cells(html: str):
    """The text of every cell under a p-value header ("exact p", "Holm p", "p", …)."""
    for table in re.findall(r"<table.*?</table>", html, re.S):
        headers = [
            re.sub(r"<[^>]+>", "", h).strip() for h in re.findall(r"<th[^>]*>(.*?)</th>", table)
        ]
        columns = [i for i, h in enumerate(headers) if h == "p" or h.endswith(" p")]
        for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)[1:]:
            cells = re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.S)
            for i in columns:
                if i < len(cells):
                    yield re.sub(r"<[^>]+>", "", cells[i]).replace("&lt;", "<").strip()


def test_the_study_has_p_values_below_0001(analysis30) -> None:
    # the point of the fixture: without tiny p-values the checks below prove nothing
    table = analysis30.paired.summary
    assert (table["p_value"] < 1e-4).any()
    assert (table["p_holm"] < 1e-3).any()
    assert (table["min_p_value"] < 1e-6).any()


def test_findings_never_say_p_equals_0(analysis30) -> None:
    texts = [f.text for f in analysis30.findings]
    assert not [t for t in texts if P_ZERO.search(t)]
    assert any("exact p < 0.001" in t for t in texts)


def test_report_section_never_says_p_equals_0(study30) -> None:
    handle, frames = study30
    context = ReportContext(
        study=handle, frames=frames, overview=summarize_study(handle.protocol, frames)
    )
    html = str(build_efficacy_section(context).html)
    assert not P_ZERO.findall(html)
    assert "&lt;0.001" in html or "<0.001" in html  # tiny p-values in the tables
    # no p-value cell reads 0 (exact p, smallest possible p, Holm p, mixed-model p)
    p_cells = list(_p_cells(html))
    assert len(p_cells) > 100
    assert not [c for c in p_cells if re.fullmatch(r"[−-]?0(\.0*)?", c) or "e-" in c]
    assert "<0.001" in p_cells


def test_cli_text_never_prints_p_0_and_machine_formats_keep_numbers(study30) -> None:
    handle, _ = study30
    runner = CliRunner()
    text = runner.invoke(app, ["efficacy", str(handle.directory)], env={"COLUMNS": "200"})
    assert text.exit_code == 0, text.output
    assert not P_ZERO.findall(text.output)
    assert "<0.001" in text.output and "e-0" not in text.output
    as_json = runner.invoke(app, ["efficacy", str(handle.directory), "--format", "json"])
    document = json.loads(as_json.output)
    paired = [t for t in document["tables"] if "p_holm" in t["columns"] and "scale" in t["columns"]]
    values = [row[t["columns"].index("p_value")] for t in paired for row in t["rows"]]
    assert min(v for v in values if v is not None) < 1e-4  # a number, not "<0.001"
    as_csv = runner.invoke(app, ["efficacy", str(handle.directory), "--format", "csv"])
    assert re.search(r",\d(\.\d+)?e-\d+", as_csv.output)  # tiny p kept as a number
