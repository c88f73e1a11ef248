"""The report's layout rules: empty tables say "None.", long listings go to the listings file
with their number kept, numbers are renumbered across forked sections, the data cut-off comes
from the data, the WHO axis of a profile has whole steps only."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from markupsafe import Markup

import celltrial.report
from celltrial.report.profiles import render_subject_profile
from celltrial.report.sections import _renumber
from celltrial.report.tables import LISTING_MAX_ROWS, TableCounter, render_table
from celltrial.store.provenance import read_data_cutoff
from tests.report.test_report import table


def test_empty_table_says_none():
    counter = TableCounter()
    html = render_table(pd.DataFrame(columns=["subject", "term"]), caption="SAEs.", counter=counter)
    assert "<table" not in html and "<th" not in html
    assert "<strong>Table 1.</strong> SAEs." in html and ">None.</p>" in html
    assert counter.count == 1  # the number is taken: the tables after it keep theirs


@pytest.mark.parametrize("rows", [LISTING_MAX_ROWS, LISTING_MAX_ROWS + 1])
def test_long_listing_goes_to_the_listings_file(rows):
    frame = pd.DataFrame({"subject": [f"S{i:03d}" for i in range(rows)], "day": range(rows)})
    counter = TableCounter(listings_file="report-listings.html")
    render_table(frame.head(2), caption="First.", counter=counter)
    html = render_table(frame, caption="Listing of things.", counter=counter, listing=True)
    if rows <= LISTING_MAX_ROWS:  # short: stays in the body
        assert "<table" in html and not counter.listings
        return
    assert "<table" not in html
    assert f"{rows:,} rows" in html and 'href="report-listings.html#table-2"' in html
    (listing,) = counter.listings
    assert 'id="table-2"' in listing and "<caption>Table 2. Listing of things." in listing
    assert listing.count("<tr>") == rows + 1


def test_listing_stays_in_the_body_without_a_listings_file():
    frame = pd.DataFrame({"subject": [f"S{i:03d}" for i in range(LISTING_MAX_ROWS + 5)]})
    counter = TableCounter()
    html = render_table(frame, caption="Listing.", counter=counter, listing=True)
    assert html.count("<tr>") == LISTING_MAX_ROWS + 6 and not counter.listings


def test_renumber_shifts_captions_references_and_anchors():
    html = Markup(
        '<p class="listing-ref"><strong>Table 1.</strong> x <a href="l.html#table-1">l</a></p>'
        '<table id="table-2"><caption>Table 2. y</caption></table>'
        "<figure><figcaption>Figure 1. z</figcaption></figure>"
    )
    out = _renumber(html, 10, 3)
    assert "<strong>Table 11.</strong>" in out and "#table-11" in out
    assert 'id="table-12"' in out and "<caption>Table 12. y" in out
    assert "<figcaption>Figure 4. z" in out


def test_data_cutoff_is_the_last_data_change(demo):
    cutoff = read_data_cutoff(demo.study.engine)
    assert cutoff is not None and str(cutoff.tz) == "UTC"
    # a second read says the same; the visit statuses are as of the run, not of the cut-off
    assert cutoff == read_data_cutoff(demo.study.engine)
    assert demo.overview.today >= cutoff
    assert re.search(
        r"data cut-off\s+"
        + re.escape(
            cutoff.tz_convert(demo.study.protocol.study.timezone).strftime("%Y-%m-%d %H:%M")
        ),
        demo.report.read_text(encoding="utf-8"),
    )


def test_profile_who_axis_has_whole_steps_and_oxygen_apart():
    days = pd.Series([0, 1, 2, 3], dtype=float)
    status = pd.DataFrame({"study_day": days, "who_scale": [7, 6, 6, 5]})
    obs = pd.DataFrame(
        {
            "test": ["SPO2", "FIO2", "CRP", "CRP"],
            "study_day": [0, 0, 0, 1],
            "value": [92.0, 0.5, 100.0, 50.0],
            "unit": ["%", "1", "mg/L", "mg/L"],
        }
    )
    empty = pd.DataFrame(columns=["study_day", "onset_day", "grade"])
    figure = render_subject_profile(
        "S001", obs, status, empty, empty.assign(onset_day=[]), follow_up_days=28
    )
    who, oxygen = figure.axes[0], figure.axes[1]
    assert [t for t in who.get_yticks() if -0.5 <= t <= 10.9] == [0, 2, 4, 6, 8, 10]
    assert not oxygen.get_shared_y_axes().joined(who, oxygen)  # S/F on a panel of its own
    (ratio,) = oxygen.lines
    assert ratio.get_ydata()[0] == pytest.approx(92.0 / 0.5)
    (crp,) = figure.axes[2].lines
    assert crp.get_label() == "C-reactive protein (mg/L)"
    assert figure.axes[2].yaxis.get_minor_locator().__class__.__name__ == "NullLocator"
    # drawn again for another subject, the template holds only that subject's data
    figure = render_subject_profile(
        "S002", obs.head(0), status.head(1), empty, empty, follow_up_days=28
    )
    assert not figure.axes[2].lines and len(figure.axes[0].lines) == 1


def test_rounding_noise_of_a_zero_prints_as_zero():
    counter = TableCounter()
    html = render_table(
        pd.DataFrame({"difference": [0.1 + 0.2 - 0.3, 1.5e-3]}), caption="x", counter=counter
    )
    assert not re.search(r"\de-\d", html) and ">0</td>" in html and ">0.0015</td>" in html


def test_tall_listing_takes_its_own_limit():
    frame = pd.DataFrame({"subject": ["S001", "S002", "S003"]})
    counter = TableCounter(listings_file="l.html")
    kept = render_table(frame, caption="a", counter=counter, listing=True, listing_max_rows=3)
    moved = render_table(frame, caption="b", counter=counter, listing=True, listing_max_rows=2)
    assert "<table" in kept and "<table" not in moved and len(counter.listings) == 1


def test_the_printed_cutoff_is_the_last_change_or_the_earlier_status_time(demo):
    """Statuses are as of the run (a window closed after the last entry is missed, not due); the
    printed cut-off is the data's last change, never later than the statuses' time."""
    from dataclasses import replace

    from celltrial.report.build import data_cutoff

    last = read_data_cutoff(demo.study.engine)
    assert data_cutoff(demo.study, demo.overview) == last
    earlier = last - pd.Timedelta(days=1)
    assert data_cutoff(demo.study, replace(demo.overview, today=earlier)) == earlier


def test_a_profile_does_not_depend_on_the_subject_drawn_before():
    """Profiles are drawn into one template figure per process: a panel without data must not
    keep the scale the previous subject's data gave it (the web app's figure process and the
    report draw the same picture)."""
    from celltrial.report.profiles import profile_png

    status = pd.DataFrame({"study_day": [0.0, 7.0], "who_scale": [6, 4]})
    empty = pd.DataFrame(columns=["study_day", "onset_day", "grade"])

    def observations(scale: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "test": ["SPO2", "FIO2", "CRP", "CRP", "DDIMER", "LYM"],
                "study_day": [0, 0, 0, 7, 0, 0],
                "value": [92.0, 0.5, 100.0 * scale, 50.0 * scale, 3.0 * scale, 0.5 * scale],
                "unit": ["%", "1", "mg/L", "mg/L", "mg/L FEU", "10^9/L"],
            }
        )

    def draw(frame: pd.DataFrame) -> bytes:
        return profile_png("S9", frame, status, empty, empty, follow_up_days=28, dpi=40)

    draw(observations(1.0))
    after_small = draw(observations(1.0).head(0))
    draw(observations(1000.0))
    after_large = draw(observations(1000.0).head(0))
    assert after_small == after_large


def test_lot_markers_stay_with_their_values(html):
    """A marker and its per cent on one line ("CD73 97.8", never "CD73 / 97.8", nor "HLA- / DR"):
    a no-break space and a non-breaking hyphen; lines break only after a comma, between markers."""
    rows = table(html, "Cell-product lots")
    header = rows[0]
    for name in ("Positive markers %", "Negative markers %"):
        cells = [row[header.index(name)] for row in rows[1:]]
        pairs = [pair for cell in cells for pair in cell.split(", ")]
        assert len(pairs) >= 2 * len(cells)
        for pair in pairs:
            assert re.fullmatch(r"(CD\w+|HLA\u2011DR)\u00a0\d+(\.\d+)?", pair), pair


def test_a_unit_is_never_split_across_lines():
    """A unit cell keeps its unit on one line ("cells/µL", never "cells/" above "µL")."""
    frame = pd.DataFrame({"test": ["CD4+ T cells (absolute)"], "unit": ["cells/uL"], "n": [3]})
    html = render_table(frame, caption="Units.", counter=TableCounter())
    assert '<td class="unit">cells/µL</td>' in html
    css = (Path(celltrial.report.__file__).parent / "templates" / "report.css").read_text()
    assert re.search(r"td\.unit\s*\{\s*white-space:\s*nowrap;", css)
