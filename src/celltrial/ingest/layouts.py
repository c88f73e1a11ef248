"""Recognise a file's layout (long, wide, REDCap, ODM, FHIR) and dispatch to its reader.

- ``.json``/``.ndjson``: a FHIR bundle;
- ``.xml``: a CDISC ODM 1.3 file (root element ``ODM`` in the ODM namespace), read as a REDCap
  project (:mod:`celltrial.ingest.odm`);
- a folder: a REDCap project (records and data dictionary);
- a table: REDCap records when it has ``redcap_event_name``/``redcap_repeat_instrument`` (its
  dictionary must lie beside it) or when a data dictionary beside it starts with the table's
  first column (a classic project); else long when it has subject, time, test and value
  columns, else wide.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd

from celltrial.errors import DataError
from celltrial.ingest.columns import find_roles
from celltrial.ingest.long import LONG_ROLES, REQUIRED, read_long
from celltrial.ingest.mapping import Mapping
from celltrial.ingest.report import ValidationReport
from celltrial.ingest.tables import is_workbook, read_table

TABLE_SUFFIXES = (".csv", ".txt", ".tsv", ".xlsx", ".xlsm", ".xls")


@dataclass
class Source:
    """What a reader produced: raw results (one frame or chunks) and subject information."""

    raw: pd.DataFrame | Iterator[pd.DataFrame]
    subjects: pd.DataFrame
    subjects_complete: bool  # False: subjects appear only in the raw results (long files)


def _header(path: Path, mapping: Mapping) -> list[str]:
    table = read_table(path, sheet=mapping.sheet, what="lab file", nrows=0)
    return [str(c) for c in table.columns]


def detect_layout(path: Path, mapping: Mapping) -> str:
    """long | wide | redcap | odm | fhir, from the mapping or the file itself (a mapping's
    ``layout: redcap`` on an XML file is ODM)."""
    if mapping.layout == "redcap" and path.suffix.lower() == ".xml":
        return "odm"
    if mapping.layout is not None:
        return mapping.layout
    suffix = path.suffix.lower()
    if suffix in (".json", ".ndjson"):
        return "fhir"
    if path.is_dir():
        return "redcap"
    if suffix == ".xml":
        from celltrial.ingest.odm import check_odm_root

        check_odm_root(path)
        return "odm"
    if suffix not in TABLE_SUFFIXES:
        raise DataError(
            f"{path}: unknown file type {suffix or '(none)'}; expected CSV, XLSX, a FHIR JSON "
            "bundle, a REDCap folder or records CSV, or a CDISC ODM XML export"
        )
    columns = _header(path, mapping)
    if is_workbook(path):
        if "redcap_event_name" in columns or "redcap_repeat_instrument" in columns:
            raise DataError(
                f"{path}: REDCap records in a workbook; expected REDCap's CSV export (records "
                "CSV with the data dictionary CSV beside it) or its CDISC ODM XML export"
            )
    else:
        from celltrial.ingest.redcap import redcap_records_layout

        if redcap_records_layout(path, columns, mapping):
            return "redcap"
    roles = find_roles(columns, mapping, LONG_ROLES)
    return "long" if all(r in roles for r in REQUIRED) else "wide"


def read_source(
    path: Path, mapping: Mapping, report: ValidationReport, *, layout: str, zone: ZoneInfo | str
) -> Source:
    """Read ``path`` with the reader of ``layout``."""
    if layout == "long":
        raw, info = read_long(path, mapping, report, zone=zone)
        return Source(raw, info, False)
    if layout == "wide":
        from celltrial.ingest.wide import read_wide

        raw, info = read_wide(path, mapping, report, zone=zone)
        return Source(raw, info, True)
    if layout == "redcap":
        from celltrial.ingest.redcap import read_redcap

        raw, info = read_redcap(path, mapping, report, zone=zone)
        return Source(raw, info, True)
    if layout == "odm":
        from celltrial.ingest.odm import read_odm

        raw, info = read_odm(path, mapping, report, zone=zone)
        return Source(raw, info, True)
    if layout == "fhir":
        from celltrial.ingest.fhir import read_fhir

        raw, info = read_fhir(path, mapping, report, zone=zone)
        return Source(raw, info, True)
    raise DataError(f"unknown layout {layout!r}; expected long, wide, redcap, odm or fhir")
