"""Recognise a file's layout (long, wide, REDCap, FHIR) and dispatch to its reader."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd

from celltrial.errors import DataError
from celltrial.ingest.columns import find_roles
from celltrial.ingest.frame import empty_subjects
from celltrial.ingest.long import LONG_ROLES, REQUIRED, read_long_chunks
from celltrial.ingest.mapping import Mapping
from celltrial.ingest.report import ValidationReport
from celltrial.ingest.tables import read_table

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
    """long | wide | redcap | fhir, from the mapping or the file itself."""
    if mapping.layout is not None:
        return mapping.layout
    suffix = path.suffix.lower()
    if suffix in (".json", ".ndjson"):
        return "fhir"
    if path.is_dir():
        return "redcap"
    if suffix not in TABLE_SUFFIXES:
        raise DataError(
            f"{path}: unknown file type {suffix or '(none)'}; expected CSV, XLSX, a FHIR JSON "
            "bundle or a REDCap folder"
        )
    columns = _header(path, mapping)
    if "redcap_event_name" in columns or "redcap_repeat_instrument" in columns:
        return "redcap"
    roles = find_roles(columns, mapping, LONG_ROLES)
    return "long" if all(r in roles for r in REQUIRED) else "wide"


def read_source(
    path: Path, mapping: Mapping, report: ValidationReport, *, layout: str, zone: ZoneInfo | str
) -> Source:
    """Read ``path`` with the reader of ``layout``."""
    if layout == "long":
        return Source(read_long_chunks(path, mapping), empty_subjects(), False)
    if layout == "wide":
        from celltrial.ingest.wide import read_wide

        raw, info = read_wide(path, mapping, report, zone=zone)
        return Source(raw, info, True)
    if layout == "redcap":
        from celltrial.ingest.redcap import read_redcap

        raw, info = read_redcap(path, mapping, report, zone=zone)
        return Source(raw, info, True)
    if layout == "fhir":
        from celltrial.ingest.fhir import read_fhir

        raw, info = read_fhir(path, mapping, report, zone=zone)
        return Source(raw, info, True)
    raise DataError(f"unknown layout {layout!r}; expected long, wide, redcap or fhir")
