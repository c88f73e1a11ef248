"""The study report: assembly, tables, templates.

Names are imported on first use (:mod:`celltrial.lazy`): a process that only builds sections
(:class:`celltrial.report.sections.SectionProcess`) does not load the templates (Jinja2) or the
store's ORM models that assembling the report needs.
"""

from celltrial.lazy import lazy_exports

_WHERE = {"render_report_html": "build", "write_report": "build"}

__getattr__, __dir__ = lazy_exports(__name__, _WHERE, globals())

__all__ = ["render_report_html", "write_report"]
