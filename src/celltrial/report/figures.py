"""Figures for the report: matplotlib figures embedded inline (self-contained HTML)."""

from __future__ import annotations

import base64
import io
from html import escape

import matplotlib

matplotlib.use("Agg")  # no display: render to files and memory only

from markupsafe import Markup
from matplotlib.figure import Figure

from celltrial.report.tables import TableCounter

#: Okabe–Ito colour-blind-safe palette.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")


def figure_png(figure: Figure, *, dpi: int = 150, tight: bool | None = None) -> bytes:
    """The figure as PNG bytes, cropped to its content (``tight``) unless it has a layout.

    A figure with a layout engine (constrained) or with fixed margins (``tight=False``) already
    fits its content; a tight bounding box would draw it twice.
    """
    buffer = io.BytesIO()
    if tight is None:
        tight = figure.get_layout_engine() is None
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    return buffer.getvalue()


def render_figure(
    figure: Figure,
    *,
    caption: str,
    counter: TableCounter,
    dpi: int = 150,
    tight: bool | None = None,
) -> Markup:
    """A numbered ``<figure>`` with the PNG inline as a data URI (no external file needed)."""
    return render_png(figure_png(figure, dpi=dpi, tight=tight), caption=caption, counter=counter)


def render_png(png: bytes, *, caption: str, counter: TableCounter | None) -> Markup:
    """A ``<figure>`` from PNG bytes already rendered, numbered by ``counter`` (None: not
    numbered, as the listings' subject profiles)."""
    data = base64.b64encode(png).decode("ascii")
    label = f"Figure {counter.next()}. " if counter is not None else ""
    return Markup(
        f'<figure><img alt="{escape(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{label}{escape(caption)}</figcaption></figure>"
    )
