"""The report as a reader meets it: says when its data are simulated (title and every page), in
which time zone its times are, and shows no code internals (Python names, library warnings,
snake_case headers, test codes, ASCII units)."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from zoneinfo import ZoneInfo

import pytest

from celltrial import __version__
from celltrial.catalogue import load_catalogue
from celltrial.labels import display_unit, value_label
from celltrial.report.build import SIMULATED_BANNER, page_css
from celltrial.report.times import report_time, zone_note
from celltrial.safety.signals import _SIGNALS
from celltrial.store.database import schema_revision
from celltrial.store.provenance import study_is_simulated
from celltrial.study import init_study, read_study_frames
from tests.report.test_report import table

PDFTOTEXT = shutil.which("pdftotext")

#: Text a reader must never meet: Python names, raw library warnings, p printed as zero, ASCII
#: units and coded values (each with an example of what it catches).
FORBIDDEN = {
    r"\bcelltrial\.(?!db\b)\w": "celltrial.cohort.simulate(…), celltrial.imaging.progression",
    r"\w+Warning\b|Warning:": "ConvergenceWarning, FutureWarning",
    r"mle_retvals|After release \d": "statsmodels' own advice",
    r"\bp = 0(?![\d.])": "p = 0",
    r"\bmin_p_value\b|\bci_level\b|\[\(": "see min_p_value, comparisons[(test, visit)]",
    r"\b10\^|cells/uL|\bu[gL]/|umol": "10^9/L, cells/uL",
    r"\b[a-z]+_[a-z_]+\b": "assessment_missed, sysbp_drop, product_lot",
    r"\b(?:sysbp|spo2|fio2|hr|temp) (?:drop|rise)\b": "sysbp drop (a code, its _ made a space)",
}
#: Test codes a reader must meet only by name.
CODES = ("DDIMER", "CD1656", "SYSBP", "FIO2", "PLAT")


def reader_text(html: str) -> tuple[str, list[str]]:
    """The text a reader sees in an HTML document (whitespace collapsed) and its table headers."""
    parser = _Visible()
    parser.feed(html)
    return " ".join("".join(parser.text).split()), parser.headers


def pdf_text(path) -> str:
    """The PDF's text, page by page (pages separated by form feeds), as pdftotext lays it out."""
    return subprocess.run(
        [PDFTOTEXT, "-layout", str(path), "-"], check=True, capture_output=True, text=True
    ).stdout


def without_provenance(text: str) -> str:
    """``text`` without the methods' provenance line (the database's address and the software
    versions are written as they are: a path may hold "_")."""
    flat = " ".join(text.split())
    return re.sub(r"· database (?!revision )\S+ · software:", "· database … · software:", flat)


def internals_in(text: str, headers: list[str] = ()) -> list[str]:
    """What a reader must never meet in ``text`` and table ``headers``: each as "example: found"."""
    faults = [
        f"{example}: {found[:5]}"
        for pattern, example in FORBIDDEN.items()
        if (found := re.findall(pattern, text))
    ]
    faults += [f"code {c}" for c in CODES if re.search(rf"(?<![\w+-]){c}(?![\w+-])", text)]
    catalogue = load_catalogue()
    for header in headers:
        if (
            re.search(r"\w_\w", header)
            or header.strip() in catalogue
            or header.strip()
            in (
                "WHO",
                "CT",
            )
        ):
            faults.append(f"header {header!r}")
    return faults


class _Visible(HTMLParser):
    """The text a reader sees (no style sheet, no image data) and the table headers."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.headers: list[str] = []
        self._hidden = 0
        self._in_header = False

    def handle_starttag(self, tag, attrs):
        self._hidden += tag in ("style", "script")
        if tag == "th":
            self._in_header = True
            self.headers.append("")

    def handle_endtag(self, tag):
        self._hidden -= tag in ("style", "script")
        self._in_header = self._in_header and tag != "th"
        self.text.append(" ")

    def handle_data(self, data):
        if self._hidden:
            return
        self.text.append(data)
        if self._in_header:
            self.headers[-1] += data


@pytest.fixture(scope="module")
def visible(html):
    text, headers = reader_text(html)
    return without_provenance(text), headers


def test_simulated_data_said_on_the_title_and_every_page(html, demo):
    assert study_is_simulated(demo.study.engine)
    top = html[html.index("<body>") : html.index("<h1>")]
    assert SIMULATED_BANNER in top  # before the title, sticky on screen
    # every printed page: the top margin box carries it
    assert re.search(
        r"@top-center \{ content: \"SIMULATED DATA — not results of a real study", html
    )
    assert "position: sticky" in html


def test_times_in_the_study_zone_said_once(html, demo, visible):
    zone = demo.study.protocol.study.timezone
    assert zone == "Asia/Shanghai"
    text, _ = visible
    assert text.count("Times are in Asia/Shanghai (UTC+08:00).") == 1
    assert text.index("Times are in") < text.index("1. Study and protocol")
    assert "UTC " not in text.replace("(UTC+08:00)", "")
    rows = table(html, "Infusions: planned and actual")
    start = rows[0].index("Start")
    frames = read_study_frames(demo.study)
    shanghai = ZoneInfo("Asia/Shanghai")
    for row, infusion in zip(rows[1:], frames.infusions.itertuples(), strict=True):
        assert row[start] == infusion.start_time.astimezone(shanghai).strftime("%Y-%m-%d %H:%M")
        utc_hour = infusion.start_time.astimezone(ZoneInfo("UTC")).hour
        assert int(row[start][11:13]) == (utc_hour + 8) % 24  # China has no summer time


def test_no_internals_in_what_a_reader_sees(visible):
    text, headers = visible
    assert len(headers) > 100
    assert internals_in(text, headers) == []


@pytest.mark.parametrize(
    "example",
    [
        "see celltrial.imaging.progression",
        "ConvergenceWarning: Maximum Likelihood optimization failed",
        "exact p = 0",
        "onset_day",
        "a sysbp drop",
        "CRP and DDIMER",
        "cells/uL",
    ],
)
def test_internals_check_catches_each_fault(example):
    assert internals_in(f"Table 3. {example} here.") != []


def test_internals_check_passes_plain_text():
    text = "exact p = 0.0625; systolic BP drop; SpO2 drop; 0.55 ×10⁹/L; p < 0.001; Onset day"
    assert internals_in(text, ["Onset day", "IDs", "n pairs"]) == []
    assert internals_in("ok", ["onset_day"]) == ["header 'onset_day'"]


def test_tests_named_with_units(html):
    rows = table(html, "Per-visit summaries of the efficacy markers")
    assert rows[0][:3] == ["Marker", "Unit", "Visit"]  # the unit in a column of its own
    markers = {(r[0], r[1]) for r in rows[1:]}
    assert ("Lymphocytes", "×10⁹/L") in markers
    assert ("CD16+CD56+ NK cells (absolute)", "cells/µL") in markers
    assert ("D-dimer (FEU)", "mg/L") in markers
    deviations = table(html, "Protocol deviations by kind")
    assert "assessment missed" in {r[1] for r in deviations[1:]}


def test_vital_sign_signals_named_with_their_units(html):
    rows = table(html, "Vital-sign signals within the reaction window")
    assert rows[0][:4] == ["Subject", "Infusion", "Signal", "Unit"]
    assert ("fever", "°C") in {(r[2], r[3]) for r in rows[1:]}
    for signal in _SIGNALS:  # every signal the analysis can raise, in words, with its unit
        name = value_label(signal.name)
        assert name == "fever" or name != signal.name.replace("_", " "), name
        assert display_unit(signal.unit) in ("%", "fraction", "°C", "mmHg", "/min")


def test_model_warnings_become_what_they_mean(visible):
    text, _ = visible
    for raw in ("optimization", "lbfgs", "MLE", "gtol", "Check mle"):  # the library's words
        assert raw not in text, raw


@pytest.mark.skipif(PDFTOTEXT is None, reason="pdftotext (poppler-utils) is not installed")
def test_every_pdf_page_says_simulated_and_names_study_cutoff_revision_version(pdf, demo):
    text = pdf_text(pdf)
    pages = [p for p in text.split("\f") if p.strip()]
    assert len(pages) >= 5
    revision = schema_revision(demo.study.engine)
    assert revision
    cutoff = report_time(demo.overview.today, "Asia/Shanghai")
    for number, page in enumerate(pages, 1):
        flat = " ".join(page.split())
        assert SIMULATED_BANNER in flat, f"page {number}"
        assert f"{demo.study.protocol.study.id} · data cut-off {cutoff}" in flat, f"page {number}"
        assert f"database revision {revision} · celltrial {__version__}" in flat
        assert f"page {number} of {len(pages)}" in flat
    assert internals_in(without_provenance(text)) == []


def test_zone_note_names_the_offsets():
    assert zone_note("Asia/Shanghai") == "Times are in Asia/Shanghai (UTC+08:00)."
    assert zone_note("Europe/Paris", at="2020-03-01") == (
        "Times are in Europe/Paris (UTC+01:00 or UTC+02:00, with daylight saving time)."
    )
    assert zone_note("America/St_Johns", at="2020-01-01").startswith(
        "Times are in America/St_Johns (UTC−03:30 or UTC−02:30"
    )
    assert zone_note("UTC") == "Times are in UTC (UTC+00:00)."
    # 02:24 UTC is 10:24 in Shanghai, 03:24 in Paris in winter; a naive time is taken as UTC
    assert report_time("2020-02-13 02:24:00+00:00", "Asia/Shanghai") == "2020-02-13 10:24"
    assert report_time("2020-02-13 02:24", "Europe/Paris") == "2020-02-13 03:24"
    assert report_time(None, "UTC") == "—"


def test_page_rules_only_say_simulated_when_it_is(tmp_path):
    study = init_study(tmp_path / "real", user="tester")
    assert not study_is_simulated(study.engine)
    plain = page_css(footer='S1 · "quoted" </style>', banner=None)
    assert "@top-center" not in plain and "</style>" not in plain and '"quoted"' not in plain
    assert "@top-center" in page_css(footer="S1", banner=SIMULATED_BANNER)
