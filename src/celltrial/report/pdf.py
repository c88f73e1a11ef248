"""PDF rendering of the report's HTML with WeasyPrint (same template, print stylesheet)."""

from __future__ import annotations

from pathlib import Path

from celltrial.errors import CelltrialError


def write_pdf(html: str, path: str | Path) -> Path:
    """Render report HTML (self-contained: inline CSS and images) to a PDF file."""
    try:
        from weasyprint import HTML
    except (ImportError, OSError) as exc:  # OSError: Pango/HarfBuzz system libraries missing
        raise CelltrialError(
            "PDF output needs WeasyPrint and its system libraries (Pango); install them with "
            "`pip install weasyprint` and, on Debian/Ubuntu, `apt-get install libpango-1.0-0 "
            f"libpangoft2-1.0-0` — or use --format html ({exc})"
        ) from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    HTML(string=html).write_pdf(path)
    return path
