"""HTML tables for the report: numbered captions, escaped cells, numbers right-aligned.

A table with no rows says "None." under its caption (a header alone reads as a rendering fault).
A *listing* (one row per subject, infusion, event …: its length grows with the study) longer than
:data:`LISTING_MAX_ROWS` goes to the report's listings file when the counter collects listings;
the body keeps its number and caption with a link to it, so that the body stays a readable
summary at any study size.

Headers are what people read (``labels.yaml`` through :func:`celltrial.labels.header_label`):
a frame may keep its code's column names (``onset_day``), the reader sees "Onset day". So are
codes in the cells of the columns that hold them: a test or marker code shows its name (CD1656 →
"CD16+CD56+ NK cells (absolute)") and a unit as people write it (cells/uL → cells/µL).
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from typing import Any

import pandas as pd
from markupsafe import Markup

from celltrial.labels import assessment_label, display_unit, header_label

#: Columns whose text cells are assessment codes, shown by name; and those holding units.
CODE_COLUMNS = frozenset({"test", "marker", "assessment"})
UNIT_COLUMNS = frozenset({"unit"})


#: Numbers smaller than this in magnitude are a computed zero's rounding noise, printed as 0.
ROUNDING_NOISE = 1e-12
#: A listing with more rows than this goes to the listings file (about two printed pages).
LISTING_MAX_ROWS = 40
#: The listings file's name beside the report (``report.html`` → ``report-listings.html``).
LISTINGS_SUFFIX = "-listings"


class TableCounter:
    """Numbers tables in the order they are rendered (Table 1, Table 2…).

    ``listings_file``: the name of the listings file that long listings go to (None: they stay
    in the body); their HTML is collected in :attr:`listings`.
    """

    def __init__(self, *, listings_file: str | None = None) -> None:
        self.count = 0
        self.listings_file = listings_file
        self.listings: list[Markup] = []

    def next(self) -> int:
        self.count += 1
        return self.count


def render_table(
    frame: pd.DataFrame,
    *,
    caption: str,
    counter: TableCounter,
    formats: dict[str, Callable[[Any], str]] | None = None,
    raw_html: frozenset[str] = frozenset(),
    listing: bool = False,
    listing_max_rows: int = LISTING_MAX_ROWS,
) -> Markup:
    """``frame`` as an HTML table with a numbered caption.

    ``formats`` turns a column's values into text; ``raw_html`` names columns already holding
    safe HTML (status badges); everything else is escaped. ``listing``: the frame has one row
    per subject or event; when longer than ``listing_max_rows`` it goes to the listings file
    (see the module's docstring; tall rows, as the visit matrix's, take a lower limit)."""
    if frame.empty:
        number = counter.next()
        return Markup(
            f'<p class="table-caption"><strong>Table {number}.</strong> {escape(caption)}</p>'
            '<p class="none">None.</p>'
        )
    html = _table_html(frame, caption, counter, formats or {}, raw_html)
    if listing and counter.listings_file and len(frame) > listing_max_rows:
        counter.listings.append(html)
        number = counter.count
        target = f"{escape(counter.listings_file)}#table-{number}"
        return Markup(
            f'<p class="listing-ref"><strong>Table {number}.</strong> {escape(caption)} '
            f'{len(frame):,} rows: in the listings file, <a href="{target}">'
            f"{escape(counter.listings_file)}</a>.</p>"
        )
    return html


def _table_html(
    frame: pd.DataFrame,
    caption: str,
    counter: TableCounter,
    formats: dict[str, Callable[[Any], str]],
    raw_html: frozenset[str],
) -> Markup:
    numeric = {c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])}
    head = "".join(
        f'<th class="num">{escape(header_label(str(c)))}</th>'
        if c in numeric
        else f"<th>{escape(header_label(str(c)))}</th>"
        for c in frame.columns
    )
    body = []
    for row in frame.itertuples(index=False):
        cells = []
        for column, value in zip(frame.columns, row, strict=True):
            if column in formats:
                text = formats[column](value)
            elif isinstance(value, str) and column in CODE_COLUMNS:
                text = assessment_label(value)
            elif isinstance(value, str) and column in UNIT_COLUMNS:
                text = display_unit(value)
            else:
                text = _default_text(value)
            # a number stays with its per cent sign ("49 %" never "49 / %")
            text = text if column in raw_html else escape(text.replace(" %", "\u00a0%"))
            css = (
                ' class="num"'
                if column in numeric
                else ' class="unit"'
                if column in UNIT_COLUMNS
                else ""
            )
            cells.append(f"<td{css}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    number = counter.next()
    return Markup(
        f'<table id="table-{number}"><caption>Table {number}. {escape(caption)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def status_badge(status: str, label: str | None = None) -> str:
    """A coloured status label (class names match the report's CSS)."""
    text = escape(label if label is not None else status.replace("_", " "))
    return f'<span class="st {escape(status)}">{text}</span>'


def _default_text(value: Any) -> str:
    if value is None or (not isinstance(value, str | tuple | list | dict) and pd.isna(value)):
        return "—"
    if isinstance(value, float):
        # rounding noise of a zero (0.5 − 0.5 in floats: 1.11e-16) is a zero to a reader
        return "0" if abs(value) < ROUNDING_NOISE else f"{value:.4g}"
    if isinstance(value, pd.Timestamp):  # callers give local times as text (report.times)
        if value.tzinfo is None:
            return value.strftime("%Y-%m-%d %H:%M")
        return value.tz_convert("UTC").strftime("%Y-%m-%d %H:%M UTC")
    return str(value)
