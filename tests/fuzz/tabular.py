"""Tables (CSV and workbook files) and the ways sites damage them, as hypothesis strategies.

A :class:`Table` is a header and rows of cells (text, numbers, dates…). Edits change cells and
the table's shape (duplicate or blank column names, extra header rows, blank, long and short
rows, merged cells, Excel error cells); the table is then written as CSV (in some encoding, with
some line ends) or as an XLSX workbook, and the file's bytes may be damaged in turn.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
from dataclasses import dataclass

from hypothesis import strategies as st

from tests.fuzz import hostile
from tests.fuzz.binary import byte_edits

Cell = object


@dataclass(frozen=True)
class Table:
    """A header row and data rows, as a site's file holds them."""

    header: tuple[Cell, ...]
    rows: tuple[tuple[Cell, ...], ...]

    @classmethod
    def of(cls, header, rows) -> Table:
        return cls(tuple(header), tuple(tuple(r) for r in rows))


@dataclass(frozen=True)
class TableEdit:
    """One edit of a table; ``at`` are fractions of the table's size (so that any table fits)."""

    kind: str
    at: tuple[float, ...] = ()
    value: Cell = None

    def __repr__(self) -> str:
        shown = repr(self.value)
        shown = shown if len(shown) <= 40 else shown[:40] + "…"
        return f"{self.kind}{tuple(round(a, 2) for a in self.at)}={shown}"


_fraction = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


def _pick(fraction: float, n: int) -> int:
    return min(n - 1, max(0, math.floor(fraction * n)))


def table_edits(*, workbook: bool, values: st.SearchStrategy | None = None):
    """Edits of a table (cells from ``values``, hostile cells by default)."""
    if values is None:
        values = hostile.cell_values() if workbook else hostile.text_values()
    kinds = [
        st.builds(TableEdit, st.just("cell"), st.tuples(_fraction, _fraction), values),
        st.builds(TableEdit, st.just("cell"), st.tuples(_fraction, _fraction), values),
        st.builds(TableEdit, st.just("column_cells"), st.tuples(_fraction), values),
        st.builds(TableEdit, st.just("name"), st.tuples(_fraction), values),
        st.builds(TableEdit, st.just("same_name"), st.tuples(_fraction, _fraction)),
        st.builds(TableEdit, st.just("drop_column"), st.tuples(_fraction)),
        st.builds(TableEdit, st.just("header_again"), st.tuples(_fraction)),
        st.builds(TableEdit, st.just("title_row")),
        st.builds(TableEdit, st.just("blank_row"), st.tuples(_fraction)),
        st.builds(TableEdit, st.just("long_row"), st.tuples(_fraction, _fraction)),
        st.builds(TableEdit, st.just("short_row"), st.tuples(_fraction, _fraction)),
        st.builds(TableEdit, st.just("keep_rows"), st.tuples(_fraction)),
        st.builds(TableEdit, st.just("blank_below"), st.tuples(_fraction, _fraction, _fraction)),
    ]
    if workbook:
        kinds += [
            st.builds(TableEdit, st.just("merge_down"), st.tuples(_fraction, _fraction, _fraction)),
            st.builds(TableEdit, st.just("merge_header"), st.tuples(_fraction)),
            st.builds(
                TableEdit,
                st.just("error_cell"),
                st.tuples(_fraction, _fraction),
                st.sampled_from(["#DIV/0!", "#N/A", "#VALUE!", "#REF!"]),
            ),
            st.builds(
                TableEdit,
                st.just("formula"),
                st.tuples(_fraction, _fraction),
                st.sampled_from(["=1+1", '=HYPERLINK("http://example.org","12")', "=A2"]),
            ),
        ]
    return st.one_of(*kinds)


@dataclass
class _Sheet:
    """A table being edited, plus what only a workbook can hold."""

    header: list[Cell]
    rows: list[list[Cell]]
    merges: list[tuple[int, int, int, int]]  # (first row, first column, last row, last column)
    errors: list[tuple[int, int, str]]  # (row, column, text); rows count the header as 0


def apply_table_edits(table: Table, edits: list[TableEdit]) -> _Sheet:
    sheet = _Sheet(list(table.header), [list(r) for r in table.rows], [], [])
    for edit in edits:
        _apply(sheet, edit)
    return sheet


def _apply(sheet: _Sheet, edit: TableEdit) -> None:
    width = max(1, len(sheet.header))
    rows = sheet.rows
    at = edit.at
    if edit.kind in ("cell", "error_cell", "formula") and rows:
        row = rows[_pick(at[0], len(rows))]
        column = _pick(at[1], width)
        while len(row) <= column:
            row.append(None)
        if edit.kind == "error_cell":
            sheet.errors.append((rows.index(row) + 1, column, str(edit.value)))
        row[column] = edit.value
    elif edit.kind == "column_cells" and rows:
        column = _pick(at[0], width)
        for row in rows:
            while len(row) <= column:
                row.append(None)
            row[column] = edit.value
    elif edit.kind == "name" and sheet.header:
        sheet.header[_pick(at[0], len(sheet.header))] = edit.value
    elif edit.kind == "same_name" and len(sheet.header) > 1:
        source, target = _pick(at[0], width), _pick(at[1], width)
        sheet.header[target] = sheet.header[source]
    elif edit.kind == "drop_column" and sheet.header:
        column = _pick(at[0], len(sheet.header))
        del sheet.header[column]
        for row in rows:
            if len(row) > column:
                del row[column]
    elif edit.kind == "header_again":
        rows.insert(_pick(at[0], len(rows) + 1), list(sheet.header))
    elif edit.kind == "title_row":
        rows.insert(0, list(sheet.header))
        sheet.header[:] = ["Laboratory results, exported 2020-03-01"] + [None] * (width - 1)
    elif edit.kind == "blank_row":
        rows.insert(_pick(at[0], len(rows) + 1), [None] * width)
    elif edit.kind == "long_row" and rows:
        rows[_pick(at[0], len(rows))].extend(["extra"] * (1 + _pick(at[1], 3)))
    elif edit.kind == "short_row" and rows:
        row = rows[_pick(at[0], len(rows))]
        del row[max(0, len(row) - 1 - _pick(at[1], len(row) or 1)) :]
    elif edit.kind == "keep_rows":
        del rows[_pick(at[0], len(rows) + 1) :]
    elif edit.kind in ("blank_below", "merge_down") and len(rows) > 1:
        first = _pick(at[0], len(rows) - 1)
        last = min(len(rows) - 1, first + 1 + _pick(at[2], 3))
        column = _pick(at[1], width)
        for row in rows[first + 1 : last + 1]:
            if len(row) > column:
                row[column] = None
        if edit.kind == "merge_down":
            sheet.merges.append((first + 1, column, last + 1, column))
    elif edit.kind == "merge_header" and width > 1:
        column = _pick(at[0], width - 1)
        sheet.header[column + 1] = None
        sheet.merges.append((0, column, 0, column + 1))


# --- writing -----------------------------------------------------------------------------------

ENCODINGS = ("utf-8", "utf-8", "utf-8", "utf-8-sig", "latin-1", "gbk", "utf-16", "utf-16-le")
NEWLINES = ("\n", "\n", "\r\n", "\r")


def csv_text(cell: Cell) -> str:
    """A cell as a CSV file shows it."""
    if cell is None:
        return ""
    if isinstance(cell, bool):
        return "TRUE" if cell else "FALSE"
    if isinstance(cell, dt.datetime):
        return cell.isoformat(sep=" ")
    if isinstance(cell, dt.date | dt.time):
        return cell.isoformat()
    if isinstance(cell, float):
        return repr(cell)
    if isinstance(cell, int) and abs(cell) >= 10**4000:  # beyond what Python prints
        return "9" * 4000
    return str(cell)


def write_csv(sheet: _Sheet, *, encoding: str = "utf-8", newline: str = "\n") -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=newline)
    writer.writerow([csv_text(c) for c in sheet.header])
    for row in sheet.rows:
        writer.writerow([csv_text(c) for c in row])
    return out.getvalue().encode(encoding, errors="replace")


def write_xlsx(sheet: _Sheet) -> bytes:
    from openpyxl import Workbook
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
    from openpyxl.utils import get_column_letter

    def cell(value: Cell) -> Cell:
        if isinstance(value, str):
            return ILLEGAL_CHARACTERS_RE.sub("", value)[:32767]
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 1e308:
            return str(value)[:4000] if abs(value) < 10**4000 else "9" * 4000
        if isinstance(value, float) and not math.isfinite(value):
            return repr(value)  # a workbook holds no NaN or infinity: as text, as a site types
        return value

    book = Workbook()
    ws = book.active
    ws.append([cell(c) for c in sheet.header])
    for row in sheet.rows:
        ws.append([cell(c) for c in row])
    for row, column, text in sheet.errors:
        target = ws.cell(row=row + 1, column=column + 1)
        target.value = text
        target.data_type = "e"
    for first_row, first_col, last_row, last_col in sheet.merges:
        ws.merge_cells(
            f"{get_column_letter(first_col + 1)}{first_row + 1}:"
            f"{get_column_letter(last_col + 1)}{last_row + 1}"
        )
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


@dataclass(frozen=True)
class TableCase:
    """A seed table, the edits made to it, how it is written and what happens to its bytes."""

    seed: str
    edits: tuple[TableEdit, ...]
    encoding: str = "utf-8"
    newline: str = "\n"
    bytes_edits: tuple = ()

    def __repr__(self) -> str:
        parts = [self.seed, *map(repr, self.edits)]
        if self.encoding != "utf-8":
            parts.append(f"encoding={self.encoding}")
        if self.newline != "\n":
            parts.append(f"newline={self.newline!r}")
        parts += map(repr, self.bytes_edits)
        return f"TableCase({', '.join(parts)})"


def table_cases(seeds: list[str], *, workbook: bool, values: st.SearchStrategy | None = None):
    """Cases for seed tables named in ``seeds``: usually a few table edits, sometimes another
    encoding or damaged bytes."""
    return st.builds(
        TableCase,
        st.sampled_from(seeds),
        st.lists(table_edits(workbook=workbook, values=values), max_size=4).map(tuple),
        st.just("utf-8") if workbook else st.sampled_from(ENCODINGS),
        st.just("\n") if workbook else st.sampled_from(NEWLINES),
        rarely(st.lists(byte_edits(), min_size=1, max_size=2).map(tuple), ()),
    )


def rarely(strategy: st.SearchStrategy, otherwise: object) -> st.SearchStrategy:
    """``strategy`` about one time in four, else ``otherwise``."""
    return st.one_of(st.just(otherwise), st.just(otherwise), st.just(otherwise), strategy)


def render_table(case: TableCase, table: Table, *, workbook: bool) -> bytes:
    from tests.fuzz.binary import apply_byte_edits

    sheet = apply_table_edits(table, list(case.edits))
    data = (
        write_xlsx(sheet)
        if workbook
        else write_csv(sheet, encoding=case.encoding, newline=case.newline)
    )
    return apply_byte_edits(data, case.bytes_edits)
