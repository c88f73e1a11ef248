"""PDF rendering of the report's HTML with WeasyPrint (same template, print stylesheet)."""

from __future__ import annotations

import io
from importlib.resources import files
from pathlib import Path

from celltrial.errors import CelltrialError

#: A few lines in the report's stylesheet and language: laid out once by :func:`prepare_pdf`,
#: they load what every report needs (its fonts, the hyphenation dictionary, the PDF writer).
_WARM_UP = (
    '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><style>{css}</style></head>'
    "<body><h1>Report</h1><p>Study day 0 · 10⁷ cells × 3 − µL ≥ 1</p><table><caption>Table 1. "
    'Subjects.</caption><tr><th>subject</th><th class="num">value</th></tr><tr><td>S001 '
    'hyphenation</td><td class="num">1.35</td></tr></table></body></html>'
)


def write_pdf(html: str, path: str | Path) -> Path:
    """Render report HTML (self-contained: inline CSS and images) to a PDF file."""
    HTML = _weasyprint_html()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    HTML(string=html).write_pdf(path)
    return path


def prepare_pdf() -> None:
    """Import WeasyPrint and write a few lines of PDF in the report's stylesheet (about half a
    CPU second), so that :func:`write_pdf` starts with its fonts and dictionaries loaded.

    Called while the report's sections are built in other processes, on a core that would
    otherwise wait. What it writes is thrown away; the PDF written afterwards is byte for byte
    the one written without it. It never stops a report: a missing WeasyPrint or any other
    failure is left for :func:`write_pdf` to meet and say.
    """
    try:
        HTML = _weasyprint_html()
        css = files("celltrial.report").joinpath("templates/report.css").read_text("utf-8")
        HTML(string=_WARM_UP.format(css=css)).write_pdf(io.BytesIO())
    except Exception:  # only a warm-up: write_pdf meets and says what matters
        return


def _weasyprint_html() -> type:
    """WeasyPrint's ``HTML`` class, or a plain message when it or its system libraries are
    missing."""
    try:
        from weasyprint import HTML
    except (ImportError, OSError) as exc:  # OSError: Pango/HarfBuzz system libraries missing
        raise CelltrialError(
            "PDF output needs WeasyPrint and its system libraries (Pango); install them with "
            "`pip install weasyprint` and, on Debian/Ubuntu, `apt-get install libpango-1.0-0 "
            f"libpangoft2-1.0-0` — or use --format html ({exc})"
        ) from None
    return HTML
