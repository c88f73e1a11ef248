"""Bring hospital data in: readers (CSV/XLSX long and wide, REDCap, FHIR), test names, values,
units, validation report, and the all-or-nothing, idempotent import into a study."""

from celltrial.ingest.importer import ImportRefused, ImportResult, import_file
from celltrial.ingest.report import ValidationReport
from celltrial.ingest.values import parse_values

__all__ = ["ImportRefused", "ImportResult", "ValidationReport", "import_file", "parse_values"]
