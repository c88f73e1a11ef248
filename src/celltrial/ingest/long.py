"""Read long files (one row per result) from CSV in chunks, or from XLSX."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from celltrial.errors import DataError
from celltrial.ingest.columns import find_roles, resolve_tests
from celltrial.ingest.frame import complete_raw, strip_text
from celltrial.ingest.mapping import Mapping
from celltrial.ingest.tables import is_workbook, read_csv_chunks, read_workbook_sheet

LONG_ROLES = (
    "subject",
    "time",
    "test",
    "value",
    "unit",
    "ref_low",
    "ref_high",
    "reference",
    "specimen",
)
REQUIRED = ("subject", "time", "test", "value")
CHUNK_ROWS = 200_000
_RANGE = r"^\s*(?P<lo>[+-]?\d+(?:[.,]\d+)?)?\s*(?:-|–|~|to)\s*(?P<hi>[+-]?\d+(?:[.,]\d+)?)\s*$"


def long_roles(columns: list[str], mapping: Mapping, path: Path) -> dict[str, str]:
    """The roles of a long file's columns; :class:`DataError` naming what is missing."""
    roles = find_roles(columns, mapping, LONG_ROLES)
    missing = [r for r in REQUIRED if r not in roles or roles[r] not in columns]
    if missing:
        raise DataError(
            f"{path}: no column for {', '.join(missing)} (columns: {', '.join(columns)}); "
            "name them in a mapping file (--mapping, see --suggest-mapping)"
        )
    return roles


def read_long_chunks(
    path: Path, mapping: Mapping, *, chunk_rows: int = CHUNK_ROWS
) -> Iterator[pd.DataFrame]:
    """Raw frames (see :mod:`celltrial.ingest.frame`) of a long CSV or XLSX, chunk by chunk."""
    if is_workbook(path):
        sheet = read_sheet(path, mapping)
        yield to_raw(sheet, long_roles(list(sheet.columns), mapping, path), mapping, first_row=2)
        return
    chunks = read_csv_chunks(
        path, chunk_rows=chunk_rows, what="lab file", dtype=str, keep_default_na=False
    )
    first_row = 2
    roles: dict[str, str] | None = None
    for chunk in chunks:
        if roles is None:
            roles = long_roles(list(chunk.columns), mapping, path)
        yield to_raw(chunk, roles, mapping, first_row=first_row)
        first_row += len(chunk)


def read_sheet(path: Path, mapping: Mapping) -> pd.DataFrame:
    """The mapping's sheet of a workbook (the first by default): each cell as the workbook holds
    it (text stays text: an ID typed as ``007`` is not made the number 7)."""
    return read_workbook_sheet(path, sheet=mapping.sheet, what="lab workbook", dtype=object)


def to_raw(
    table: pd.DataFrame, roles: dict[str, str], mapping: Mapping, *, first_row: int
) -> pd.DataFrame:
    """A long table's rows as a raw frame."""
    names = strip_text(table[roles["test"]])
    resolved = resolve_tests(names.dropna().unique().tolist(), mapping)
    lookup = pd.DataFrame.from_dict(
        resolved, orient="index", columns=["test", "name_unit", "map_specimen"]
    )
    info = lookup.reindex(names.to_numpy())
    info.index = table.index
    unit = table[roles["unit"]] if "unit" in roles else pd.Series(None, index=table.index)
    unit = strip_text(unit).fillna(info["name_unit"])
    frame = pd.DataFrame(
        {
            "subject": table[roles["subject"]],
            "time": table[roles["time"]],
            "column": roles["value"],
            "name": names,
            "test": info["test"],
            "raw_value": table[roles["value"]],
            "raw_unit": unit,
            "specimen": table[roles["specimen"]] if "specimen" in roles else info["map_specimen"],
            "source_row": pd.RangeIndex(first_row, first_row + len(table)).to_numpy(),
        },
        index=table.index,
    )
    if "ref_low" in roles or "ref_high" in roles:
        frame["ref_low"] = table[roles["ref_low"]] if "ref_low" in roles else None
        frame["ref_high"] = table[roles["ref_high"]] if "ref_high" in roles else None
    elif "reference" in roles:
        bounds = table[roles["reference"]].astype("string").str.extract(_RANGE)
        frame["ref_low"] = bounds["lo"].str.replace(",", ".")
        frame["ref_high"] = bounds["hi"].str.replace(",", ".")
    frame["specimen"] = strip_text(frame["specimen"])
    return complete_raw(frame)
