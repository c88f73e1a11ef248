"""The study report: assembly, tables, templates."""

from celltrial.report.build import render_report_html, write_report

__all__ = ["render_report_html", "write_report"]
