"""Limits: reporting limits hidden as plain numbers, and the size limits of what is read.

A laboratory that reports "> 21" as "21" leaves a tell-tale spike of identical values at the top
of a column (D-dimer: 172 of 630 results are exactly 21). Such values are censored, not measured
(:func:`compute_reporting_limits`).

Files larger than any study's in shape are refused before they are read, with a message: a CSV
header of more than :data:`MAX_COLUMNS` columns (read with a byte cap), a workbook sheet spanning
more columns or cells than that (its declared dimension, before pandas builds the grid).
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from pathlib import Path

import numpy as np

from celltrial.errors import DataError

MIN_REPEATS = 3
MIN_SHARE = 0.005  # of the column's results
MAX_BEYOND = 0.02  # share of results allowed beyond the limit (re-runs after dilution)
SPIKE = 3.0  # times the typical repeat count of neighbouring values
MIN_RESULTS = 20


def compute_reporting_limits(values: np.ndarray) -> tuple[float | None, float | None]:
    """(floor, ceiling) of plain numbers in ``values``; ``None`` where there is no such spike.

    Only positive values can be limits (0 is a physical bound, e.g. eosinophils 0 %; negatives are
    sentinels).
    """
    finite = values[np.isfinite(values)]
    n = len(finite)
    if n < MIN_RESULTS:
        return None, None
    # each distinct number with its count, ascending (a sort: cheaper than hashing floats)
    levels, sizes = np.unique(finite, return_counts=True)
    below = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    above = n - below - sizes
    floor = _spike(levels, sizes, below, n, np.quantile(finite, 0.1), lower=True)
    ceiling = _spike(levels, sizes, above, n, np.quantile(finite, 0.9), lower=False)
    return floor, ceiling


def _spike(
    levels: np.ndarray, sizes: np.ndarray, beyond: np.ndarray, n: int, edge: float, *, lower: bool
) -> float | None:
    eligible = (
        (beyond <= MAX_BEYOND * n) & (sizes >= max(MIN_REPEATS, MIN_SHARE * n)) & (levels > 0)
    )
    if not eligible.any():
        return None
    index = int(np.flatnonzero(eligible)[np.argmax(sizes[eligible])])
    level = levels[index]
    region = (levels <= edge) if lower else (levels >= edge)
    region[index] = False
    typical = float(np.quantile(sizes[region], 0.9)) if region.any() else 1.0
    return float(level) if sizes[index] >= SPIKE * max(typical, 1.0) else None


# --- size limits: refuse what no study file is, before reading it ----------------------------

#: Columns a table may have (the widest real LIS export has a few hundred; a header of a million
#: columns took 157 s and 3.2 GB to read).
MAX_COLUMNS = 5_000
#: Bytes the header line of a CSV file may have (5,000 columns of long names).
MAX_HEADER_BYTES = 1 << 20
#: Cells a workbook's sheet may span (its used range, rows × columns: one cell at XFD1048576
#: made a 66 KB file take 2.25 GB).
MAX_SHEET_CELLS = 30_000_000
_DIMENSION = re.compile(rb"<(?:\w+:)?dimension\s+ref=\"([A-Z]+)?(\d+)?(?::([A-Z]+)(\d+))?\"")
_CELL_REF = re.compile(rb"<(?:\w+:)?c\s[^>]*?r=\"([A-Z]+)(\d+)\"")


def check_csv_header(path: Path) -> None:
    """Raise :class:`DataError` when a CSV file's header line is longer than
    :data:`MAX_HEADER_BYTES` or has more than :data:`MAX_COLUMNS` columns (read with a byte
    cap: the rest of the file is not touched)."""
    with path.open("rb") as handle:
        head = handle.read(MAX_HEADER_BYTES + 1)
    line_end = head.find(b"\n")
    if line_end < 0 and len(head) > MAX_HEADER_BYTES:
        raise DataError(
            f"{path}: the header row is longer than {MAX_HEADER_BYTES // 1024} KB; expected "
            f"column names (at most {MAX_COLUMNS:,} columns)"
        )
    line = head if line_end < 0 else head[:line_end]
    text = line.decode("utf-8-sig", errors="replace")
    try:
        header = next(csv.reader(io.StringIO(text)), [])
    except csv.Error:
        return  # reported by the table reader, with its own message
    if len(header) > MAX_COLUMNS:
        raise DataError(
            f"{path}: the header row has {len(header):,} columns; expected at most "
            f"{MAX_COLUMNS:,} (is this a lab file?)"
        )


def check_sheet_size(path: Path, sheet: str | int | None) -> None:
    """Raise :class:`DataError` when a workbook's sheet spans more than :data:`MAX_COLUMNS`
    columns or :data:`MAX_SHEET_CELLS` cells, from its ``<dimension ref=…>`` (else the cell
    references) before pandas builds a grid of that size."""
    from openpyxl import load_workbook

    book = load_workbook(path, read_only=True, data_only=True, keep_links=False)
    try:
        target = book.worksheets[sheet or 0] if not isinstance(sheet, str) else book[sheet]
        part = getattr(target, "_worksheet_path", None)
    except (IndexError, KeyError):
        return  # the reader says which sheet is missing
    finally:
        book.close()
    if part is None:
        return
    rows, columns = _sheet_extent(path, part.lstrip("/"))
    if columns > MAX_COLUMNS or rows * columns > MAX_SHEET_CELLS:
        name = sheet if sheet is not None else "the first sheet"
        raise DataError(
            f"{path}: {name} spans {rows:,} rows × {columns:,} columns (to column "
            f"{_column_letters(columns)}); expected at most {MAX_COLUMNS:,} columns and "
            f"{MAX_SHEET_CELLS:,} cells: delete the cells far outside the table (a stray value "
            "or format at the sheet's end) and save it again"
        )


def _sheet_extent(path: Path, part: str) -> tuple[int, int]:
    """(last row, last column) of a sheet's XML part: its dimension, else its cell refs."""
    with zipfile.ZipFile(path) as archive, archive.open(part) as handle:
        start = handle.read(1 << 16)
        found = _DIMENSION.search(start)
        if found and found.group(3):
            return int(found.group(4)), _column_number(found.group(3).decode())
        rows = columns = 0
        tail = b""
        block = start
        while block:
            for match in _CELL_REF.finditer(tail + block):
                columns = max(columns, _column_number(match.group(1).decode()))
                rows = max(rows, int(match.group(2)))
            tail = block[-256:]
            block = handle.read(1 << 20)
        return rows, columns


def _column_number(letters: str) -> int:
    number = 0
    for letter in letters:
        number = number * 26 + (ord(letter) - ord("A") + 1)
    return number


def _column_letters(number: int) -> str:
    letters = ""
    while number > 0:
        number, rest = divmod(number - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


# --- uploads through the web app: a cell limit counted before the workbook is parsed ----------

#: Cells an uploaded workbook may hold in all its sheets (the web app parses it while someone
#: waits: 2.4 million cells took 61 s and 650 MB). The largest real lab workbook known, Tongji's
#: 375 patients, has 495,720 cells; larger files go through ``celltrial import``.
MAX_UPLOAD_CELLS = 2_000_000
#: Bytes the sheets of an uploaded workbook may unpack to (an XLSX file is a zip archive: a few
#: MB can unpack to GB).
MAX_UNPACKED_BYTES = 1 << 30
_CELL_TAG = re.compile(rb"<(?:\w+:)?c[\s/>]")
_WORKSHEET_PART = re.compile(r"^xl/worksheets/[^/]+\.xml$")


def count_workbook_cells(path: Path, *, stop_after: int | None = None) -> int:
    """The cells (``<c>`` elements) of every worksheet of an XLSX workbook, counted in the
    unpacked XML as it streams by (never a grid): the count holds whatever the sheets declare
    as their dimension. Counting stops once past ``stop_after``; :class:`DataError` when the
    sheets unpack to more than :data:`MAX_UNPACKED_BYTES`."""
    total = unpacked = 0
    with zipfile.ZipFile(path) as archive:
        for part in archive.infolist():
            if not _WORKSHEET_PART.match(part.filename):
                continue
            with archive.open(part) as handle:
                rest = b""
                while block := handle.read(1 << 20):
                    unpacked += len(block)
                    if unpacked > MAX_UNPACKED_BYTES:
                        raise DataError(
                            f"{path.name}: the workbook's sheets unpack to more than "
                            f"{MAX_UNPACKED_BYTES >> 20:,} MB; expected a lab table"
                        )
                    text = rest + block
                    # a tag at the block's end is counted with the next block, never twice
                    cut = text.rfind(b"<", max(0, len(text) - 64))
                    cut = len(text) if cut < 0 else cut
                    total += len(_CELL_TAG.findall(text, 0, cut))
                    rest = text[cut:]
                    if stop_after is not None and total > stop_after:
                        return total
                total += len(_CELL_TAG.findall(rest))
    return total


def check_workbook_cells(path: Path, *, max_cells: int = MAX_UPLOAD_CELLS) -> None:
    """Raise :class:`DataError` when an XLSX workbook holds more than ``max_cells`` cells (see
    :func:`count_workbook_cells`), before anything parses it."""
    cells = count_workbook_cells(path, stop_after=max_cells)
    if cells > max_cells:
        raise DataError(
            f"{path.name}: the workbook holds more than {max_cells:,} cells; the web app takes "
            f"at most {max_cells:,} (delete empty or formatted cells far outside the table, "
            "split the file, or import it with `celltrial import`)"
        )
