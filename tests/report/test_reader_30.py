"""The 30-subject demo report as a reader meets it: the body, its listings file and every PDF page
say the data are simulated and in which time zone times are, and show no code internals (the
checks of :mod:`tests.report.test_reader`). At 30 subjects the long listings, the visit matrix
and the subject profiles go to the listings file, which the 4-subject report never has.

One demo and one PDF (of the demo's own HTML) for the module: about 25 CPU-seconds."""

from __future__ import annotations

import re

import pytest

from celltrial.report.build import SIMULATED_BANNER
from celltrial.report.pdf import write_pdf
from tests.report.test_reader import (
    PDFTOTEXT,
    internals_in,
    pdf_text,
    reader_text,
    without_provenance,
)

ZONE_NOTE = "Times are in Asia/Shanghai (UTC+08:00)."


@pytest.fixture(scope="module")
def demo30(tmp_path_factory):
    from celltrial.demo import run_demo

    return run_demo(tmp_path_factory.mktemp("report30") / "study", n_subjects=30, seed=2020)


@pytest.fixture(scope="module")
def documents(demo30) -> dict[str, str]:
    listings = demo30.report.with_name("report-listings.html")
    assert listings.is_file(), "30 subjects: the long listings go to a listings file"
    return {
        "report": demo30.report.read_text(encoding="utf-8"),
        "listings": listings.read_text(encoding="utf-8"),
    }


@pytest.mark.parametrize("name", ["report", "listings"])
def test_html_says_simulated_and_zone_and_shows_no_internals(documents, name):
    html = documents[name]
    top = html[html.index("<body>") : html.index("<h1>")]
    assert SIMULATED_BANNER in top
    assert re.search(r"@top-center \{ content: \"SIMULATED DATA — not results of a real", html)
    text, headers = reader_text(html)
    assert text.count(ZONE_NOTE) == 1
    assert len(headers) > 20
    assert internals_in(without_provenance(text), headers) == []


def test_listings_hold_what_the_body_refers_to(documents):
    body, listings = documents["report"], documents["listings"]
    referred = set(re.findall(r'href="report-listings\.html#(table-\d+)"', body))
    assert len(referred) >= 3  # visit matrix and the long listings at least
    anchors = set(re.findall(r'id="(table-\d+)"', listings))
    assert referred <= anchors
    assert "Visit status per subject" in listings and "Subject S030" in listings


@pytest.mark.skipif(PDFTOTEXT is None, reason="pdftotext (poppler-utils) is not installed")
def test_every_pdf_page_says_simulated_and_shows_no_internals(demo30, documents, tmp_path):
    pytest.importorskip("weasyprint", reason="WeasyPrint is not installed")
    pdf = write_pdf(documents["report"], tmp_path / "report.pdf")
    pages = [p for p in pdf_text(pdf).split("\f") if p.strip()]
    assert 10 <= len(pages) <= 40
    for number, page in enumerate(pages, 1):
        flat = " ".join(page.split())
        assert SIMULATED_BANNER in flat, f"page {number}"
        assert "(Asia/Shanghai)" in flat, f"page {number}: the footer's cut-off names its zone"
        assert internals_in(without_provenance(flat)) == [], f"page {number}"
    assert ZONE_NOTE in " ".join(pages[0].split())
