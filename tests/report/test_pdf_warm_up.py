"""WeasyPrint made ready while the sections are built (``prepare_pdf``): asked only when a PDF
is written, and the PDF written after it is byte for byte the one written without it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from celltrial.report import build as report_build
from celltrial.report import pdf as report_pdf
from celltrial.report.build import write_report

#: Writes argv[1]'s HTML to the PDF argv[2], after the warm-up when argv[3] is "warm".
WRITE = """
import sys
from celltrial.report.pdf import prepare_pdf, write_pdf
if sys.argv[3] == "warm":
    prepare_pdf()
    import pyphen
    assert "weasyprint" in sys.modules and pyphen.hdcache  # (loaded by the warm-up)
else:
    assert "weasyprint" not in sys.modules
write_pdf(open(sys.argv[1], encoding="utf-8").read(), sys.argv[2])
"""


def test_the_pdf_after_the_warm_up_is_the_pdf_without(html, tmp_path):
    pytest.importorskip("weasyprint", reason="WeasyPrint is not installed")
    source = tmp_path / "report.html"
    source.write_text(html, encoding="utf-8")
    runs = [  # each in a fresh process, side by side
        subprocess.Popen(
            [sys.executable, "-c", WRITE, str(source), str(tmp_path / f"{mode}.pdf"), mode]
        )
        for mode in ("cold", "warm")
    ]
    assert [run.wait() for run in runs] == [0, 0]
    cold = (tmp_path / "cold.pdf").read_bytes()
    assert cold.startswith(b"%PDF") and len(cold) > 100_000
    assert (tmp_path / "warm.pdf").read_bytes() == cold


@pytest.mark.parametrize(
    ("report_format", "prepared"), [("html", False), ("pdf", True), ("both", True)]
)
def test_weasyprint_is_prepared_only_for_a_pdf(
    demo, tmp_path, monkeypatch, report_format, prepared
):
    asked = []

    def sections(_context, *, meanwhile=None):
        asked.append(meanwhile)
        if meanwhile is not None:
            meanwhile()
        return []

    calls = []
    monkeypatch.setattr(report_build, "build_sections", sections)
    monkeypatch.setattr(report_build, "prepare_pdf", lambda: calls.append("prepared"))
    monkeypatch.setattr(report_build, "write_pdf", lambda _html, path: path)
    write_report(demo.study, out=tmp_path / "r.html", report_format=report_format)
    assert calls == (["prepared"] if prepared else [])
    assert asked == [report_build.prepare_pdf if prepared else None]


def test_a_failing_warm_up_stops_nothing(monkeypatch):
    def broken():
        raise OSError("no Pango")

    monkeypatch.setattr(report_pdf, "_weasyprint_html", broken)
    report_pdf.prepare_pdf()  # returns; write_pdf is where a missing WeasyPrint is said
