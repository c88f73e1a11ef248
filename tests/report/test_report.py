"""The study report: sections, numbers equal to the analyses, pages that render (PDF, browser)."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

from celltrial.report import write_report
from celltrial.report.build import format_cells
from celltrial.safety.analysis import analyse_safety
from celltrial.study import read_study_frames
from tests.browser import CHROMIUM, NO_CHROMIUM

PDFTOPPM = shutil.which("pdftoppm")


def table(html: str, caption_start: str) -> list[list[str]]:
    """Rows of the table whose caption starts with ``caption_start`` (cells as plain text)."""
    match = re.search(
        r"<caption>Table \d+\. " + re.escape(caption_start) + r".*?</caption>(.*?)</table>",
        html,
        re.S,
    )
    assert match, f"no table {caption_start!r}"
    rows = re.findall(r"<tr>(.*?)</tr>", match.group(1), re.S)
    return [
        [
            re.sub(r"<[^>]+>", "", c).strip()
            for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.S)
        ]
        for row in rows
    ]


def test_sections_in_order_with_numbered_tables(html):
    headings = re.findall(r"<h2>(\d+)\. ([^<]+)</h2>", html)
    titles = [t for _, t in headings]
    assert titles[:6] == [
        "Study and protocol",
        "Participants",
        "Exposure: infusions against the plan",
        "Visits and assessments",
        "Protocol deviations",
        "Safety",
    ]
    assert titles[-1] == "Methods and provenance"
    assert [int(n) for n, _ in headings] == list(range(1, len(headings) + 1))
    numbers = [int(n) for n in re.findall(r"<caption>Table (\d+)\.", html)]
    assert numbers == list(range(1, len(numbers) + 1))


def test_infusion_table_equals_the_data(demo, html):
    rows = table(html, "Infusions: planned and actual")[1:]
    frames = read_study_frames(demo.study)
    assert len(rows) == len(frames.infusions) == 12
    weights = frames.subjects.set_index("subject_id")["weight_kg"]
    for row, infusion in zip(rows, frames.infusions.itertuples(), strict=True):
        assert row[0] == infusion.subject_id and int(row[1]) == infusion.number
        assert row[7] == infusion.lot_id
        assert float(row[8]) == pytest.approx(infusion.cells_given / 1e7, abs=0.005)
        per_kg = infusion.cells_given / weights[infusion.subject_id] / 1e5
        assert float(row[9]) == pytest.approx(per_kg, abs=0.005)
        minutes = (infusion.end_time - infusion.start_time).total_seconds() / 60
        assert int(row[6]) == round(minutes)


def test_lots_table_states_release(demo, html):
    rows = table(html, "Cell-product lots")
    header, body = rows[0], rows[1:]
    assert header[0] == "Lot" and "Criteria met" in header
    lots = read_study_frames(demo.study).lots
    assert [r[0] for r in body] == lots["lot_id"].tolist()
    assert all(r[header.index("Criteria met")] == "yes" for r in body)
    assert sum(int(r[header.index("Infusions")]) for r in body) == 12


def test_deviation_counts_equal_the_overview(demo, html):
    deviations = demo.overview.deviations
    assert f"{len(deviations)} deviation(s) in {deviations['subject_id'].nunique()} of 4" in html
    rows = table(html, "Listing of protocol deviations")[1:]
    assert len(rows) == len(deviations)


def test_safety_overview_equals_the_analysis(demo, html):
    summary = analyse_safety(demo.study.protocol, read_study_frames(demo.study)).summary
    rows = {r[0]: r for r in table(html, "Safety overview")[1:]}
    for item in summary.itertuples():
        assert int(rows[item.category][1]) == item.subjects
        assert int(rows[item.category][4]) == item.events


def test_self_contained(html):
    assert "<link" not in html and "<script" not in html
    assert not re.search(r"""(src|href)=["']https?://""", html)


def test_cells_formatting():
    assert format_cells(3e7) == "3 × 10⁷"
    assert format_cells(2.5e8) == "2.5 × 10⁸"


@pytest.mark.skipif(PDFTOPPM is None, reason="pdftoppm (poppler-utils) is not installed")
def test_pdf_renders_to_non_blank_pages(pdf, tmp_path):
    subprocess.run([PDFTOPPM, "-r", "40", "-gray", str(pdf), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page-*.pgm"))
    assert len(pages) >= 5
    ink = []
    for page in pages:
        pixels = _read_pgm(page)
        assert pixels.std() > 3, f"{page.name} looks blank"
        ink.append((pixels < 128).mean())
        # the right margin stays empty: nothing runs off the page
        margin = pixels[:, int(pixels.shape[1] * 0.97) :]
        assert (margin < 200).mean() < 0.001, f"{page.name}: content cut off at the right edge"
    # every page but the last carries text (a table's last rows at least); the document may end
    # with a few lines
    assert min(ink[:-1]) > 0.001 and ink[-1] > 0
    assert np.mean(ink) > 0.01


def _read_pgm(path) -> np.ndarray:
    data = path.read_bytes()
    header = data.split(maxsplit=4)  # P5 width height maxval pixels
    width, height = int(header[1]), int(header[2])
    return np.frombuffer(data[-width * height :], dtype=np.uint8).reshape(height, width)


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_html_screenshot_in_headless_chromium(demo, tmp_path, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(demo.report.as_uri())
    assert page.title().endswith("study report")
    assert page.locator("h2").count() >= 7
    assert page.locator("table").count() >= 10
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    height = page.evaluate("document.body.scrollHeight")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert not errors
    assert height > 3000  # the whole report, not a blank or broken page
    assert width <= 1280  # nothing wider than the window
    assert shot.stat().st_size > 50_000


def test_data_quality_lists_import_warnings(tmp_path):
    from celltrial.cohort import simulate
    from celltrial.ingest import import_file
    from celltrial.store.database import study_session
    from celltrial.store.loading import load_simulated_cohort
    from celltrial.study import init_study

    # a study of its own (the session's demo stays as the other report tests read it)
    study = init_study(tmp_path / "study", user="tester")
    with study_session(study.engine, user="tester", reason="test") as session:
        load_simulated_cohort(session, study.study_id, simulate(study.protocol, 2, seed=11))
    path = tmp_path / "labs.csv"
    path.write_text(
        "subject_id,time,test,value,unit\n"
        "S001,2020-02-20 08:00,CRP,12,mg/L\n"
        "S001,2020-02-20 08:00,Fluffiness,3,1\n",
        encoding="utf-8",
    )
    import_file(study, path, user="tester", report_dir=tmp_path)
    (html_path,) = write_report(study, out=tmp_path / "q.html")
    rows = table(html_path.read_text(encoding="utf-8"), "Validation messages of each import")
    header, body = rows[0], rows[1:]
    assert header == ["Batch", "Source", "Severity", "Kind", "Count"]
    assert any(r[1] == "labs.csv" and r[2] == "warning" for r in body)


def test_parallel_sections_match_a_serial_run(demo):
    from celltrial.overview import summarize_study
    from celltrial.report.sections import ReportContext, build_sections

    frames = read_study_frames(demo.study)
    overview = summarize_study(demo.study.protocol, frames)
    results, called = [], []
    for workers in (1, 2):
        context = ReportContext(study=demo.study, frames=frames, overview=overview)
        context.tables.count, context.figures.count = 10, 3  # as if the core report came first
        sections = build_sections(
            context, workers=workers, meanwhile=lambda w=workers: called.append(w)
        )
        captions = [
            re.findall(r"<(?:caption|figcaption)>((?:Table|Figure) \d+)\.", str(s.html))
            for s in sections
        ]
        results.append(
            ([s.id for s in sections], captions, context.tables.count, context.figures.count)
        )
    assert results[0] == results[1]
    assert called == [2]  # once while the workers build; a serial run has no meanwhile
    ids, captions, _, _ = results[0]
    assert ids[:2] == ["safety", "efficacy"]
    numbers = [int(c.split()[1]) for cs in captions for c in cs if c.startswith("Table")]
    assert numbers == list(range(11, 11 + len(numbers)))
