"""One demo study (4 subjects, seed 11) and its HTML and PDF reports, made once for the report
tests, which only read them; the browser test shares the module's chromium (tests/browser.py)."""

from __future__ import annotations

import pytest

from celltrial.demo import DemoResult, run_demo
from celltrial.report import write_report
from tests.browser import browser, chromium  # noqa: F401  (fixtures)


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> DemoResult:
    return run_demo(tmp_path_factory.mktemp("report") / "study", n_subjects=4, seed=11)


@pytest.fixture(scope="session")
def html(demo) -> str:
    return demo.report.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def pdf(demo, tmp_path_factory):
    pytest.importorskip("weasyprint", reason="WeasyPrint is not installed")
    out = tmp_path_factory.mktemp("pdf") / "r.pdf"
    (path,) = write_report(demo.study, out=out, report_format="pdf", today=demo.overview.today)
    return path
