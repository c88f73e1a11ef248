"""Bring hospital data in: readers (CSV/XLSX long and wide, REDCap, FHIR), test names, values,
units, validation report, and the all-or-nothing, idempotent import into a study."""

from celltrial.lazy import lazy_exports

_WHERE = {
    "ImportRefused": "importer",
    "ImportResult": "importer",
    "ValidationReport": "report",
    "import_file": "importer",
    "parse_values": "values",
}

__getattr__, __dir__ = lazy_exports(__name__, _WHERE, globals())

__all__ = [
    "ImportRefused",
    "ImportResult",
    "ValidationReport",
    "import_file",
    "parse_values",
]
