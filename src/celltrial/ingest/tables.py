"""Tabular files as sites send them (CSV, Excel workbooks), read with errors a user can act on.

Every reader of a CSV or workbook goes through here, so an empty file, a text file named
``.xlsx``, a file in another encoding or a broken workbook ends in one :class:`DataError` that
names the file and says what was expected, never in a pandas or openpyxl traceback. What a table
reader would otherwise take silently is refused here too, naming the row or cell:

- a row with more cells than the header row (pandas would shift it by a column);
- two columns with the same name (which one holds the value?);
- a data row that repeats the header row (a second header, or two exports pasted together);
- a NUL character (byte 0): a damaged or binary file, and text no database keeps;
- a workbook formula whose result was never saved (it reads as an empty cell).

Excel error cells (``#DIV/0!``, ``#N/A``) are kept as that text, as the workbook shows them, so
that the checks report them by row like any other text where a number belongs.

Identifier columns (``id_columns``: subject IDs) are read as text exactly as written: in a CSV
file the cell's characters (``00123``, ``1e5``, ``024e7871``, ``7.0`` stay so); in a workbook a
text cell as typed (leading zeros kept) and a cell Excel typed as a number as its shortest text
(``123``, not ``123.0``; ``6.5``). Never a number: a hex pseudonym such as ``024e7871`` read as
a float overflows.
"""

from __future__ import annotations

import csv
import math
import re
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np
import pandas as pd

from celltrial.errors import DataError
from celltrial.ingest.limits import check_csv_header, check_sheet_size

WORKBOOK_SUFFIXES = (".xlsx", ".xlsm", ".xls")
#: The first bytes of the workbook formats: Office Open XML (a zip) and the legacy OLE2 .xls.
_WORKBOOK_SIGNATURES = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")
_ZIP_SIGNATURE = b"PK\x03\x04"
#: Cells of a row that must equal their column names for it to count as a repeated header.
_HEADER_REPEAT_SHARE = 0.5
_SHOWN = 5  # cells or rows listed in a message


#: Identifier columns: their names, or a function of the header row that names them.
IdColumns = Iterable[str] | Callable[[list[str]], Iterable[str | None]] | None


def id_text(value: object) -> str | None:
    """One identifier cell as text exactly as written; ``None`` where empty.

    Text is kept as typed (stripped); a number (a workbook cell Excel typed as a number) is
    written without a trailing ``.0`` when whole (``123``), else in its shortest exact form
    (``6.5``, ``2.5e+20``); a date cell as ISO text.
    """
    if value is None:
        return None
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return None
        if math.isfinite(value) and float(value).is_integer() and abs(value) < _EXACT_WHOLE:
            return str(int(value))
        return repr(float(value))
    if isinstance(value, pd.Timestamp):
        return None if pd.isna(value) else value.isoformat()
    if value is pd.NaT or value is pd.NA:
        return None
    text = str(value).strip()
    return text or None


def id_series(cells: pd.Series) -> pd.Series:
    """:func:`id_text` of every cell (object dtype, ``None`` where empty); each distinct
    value converted once."""
    codes, uniques = pd.factorize(cells.to_numpy(dtype=object), use_na_sentinel=True)
    texts = np.array([id_text(v) for v in uniques] + [None], dtype=object)
    return pd.Series(texts[codes], index=cells.index, dtype=object)


def _id_names(id_columns: IdColumns, header: list[str]) -> list[str]:
    if id_columns is None:
        return []
    names = id_columns(header) if callable(id_columns) else id_columns
    return [str(n) for n in names if n is not None and str(n) in header]


def _ids_as_text(table: pd.DataFrame, names: list[str]) -> None:
    for name in names:
        if name in table.columns:
            table[name] = id_series(table[name])


def _used(header: list[str], options: dict[str, Any]) -> list[str]:
    """The header's columns pandas returns (``usecols`` names), for the row checks."""
    usecols = options.get("usecols")
    if usecols is None or callable(usecols):
        return header
    wanted = {str(c) for c in usecols}
    return [h for h in header if h in wanted]


def _csv_text_options(path: Path, id_columns: IdColumns, options: dict[str, Any]) -> list[str]:
    """Read the identifier columns of a CSV file as text (``dtype`` str for them)."""
    names = _id_names(id_columns, _csv_header(path)) if id_columns is not None else []
    if names:
        dtype = options.get("dtype")
        if dtype is None:
            options["dtype"] = dict.fromkeys(names, str)
        elif isinstance(dtype, dict):
            options["dtype"] = dtype | dict.fromkeys(names, str)
    return names


def is_workbook(path: Path) -> bool:
    """Whether ``path`` is named as an Excel workbook (its content is checked when read)."""
    return path.suffix.lower() in WORKBOOK_SUFFIXES


def check_readable(path: Path) -> None:
    """Raise :class:`DataError` when ``path`` is missing, a folder without data, or empty."""
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_file() and path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty (expected a header row and data rows)")


def read_csv_table(
    path: Path, *, what: str = "CSV file", id_columns: IdColumns = None, **options: Any
) -> pd.DataFrame:
    """A whole CSV file (UTF-8, with or without a byte-order mark) as pandas reads it;
    ``id_columns`` as text exactly as written (see the module's docstring)."""
    check_readable(path)
    check_csv_header(path)
    names = _csv_text_options(path, id_columns, options)
    try:
        table = pd.read_csv(path, encoding="utf-8-sig", **options)
    except Exception as exc:  # pandas' parser errors, decoding errors, OS errors
        raise _csv_error(path, what, exc) from None
    _check_text(path, what)
    header = _csv_header(path)
    _check_header(path, header, what)
    _check_rows(path, table, _used(header, options), first_row=2)
    _ids_as_text(table, names)
    return table


def read_csv_chunks(
    path: Path,
    *,
    chunk_rows: int,
    what: str = "CSV file",
    id_columns: IdColumns = None,
    **options: Any,
) -> Iterator[pd.DataFrame]:
    """A CSV file in chunks of ``chunk_rows`` rows; any error in it is a :class:`DataError`;
    ``id_columns`` as text exactly as written."""
    check_readable(path)
    check_csv_header(path)
    names = _csv_text_options(path, id_columns, options)
    header: list[str] | None = None
    first_row = 2
    try:
        with pd.read_csv(path, encoding="utf-8-sig", chunksize=chunk_rows, **options) as reader:
            for chunk in reader:
                if header is None:
                    _check_text(path, what)
                    header = _csv_header(path)
                    _check_header(path, header, what)
                _check_rows(path, chunk, _used(header, options), first_row=first_row)
                _ids_as_text(chunk, names)
                first_row += len(chunk)
                yield chunk
    except DataError:
        raise
    except Exception as exc:
        raise _csv_error(path, what, exc) from None


def read_workbook_sheet(
    path: Path,
    *,
    sheet: str | int | None = None,
    what: str = "workbook",
    id_columns: IdColumns = None,
    **options: Any,
) -> pd.DataFrame:
    """One sheet of an Excel workbook (the first one unless ``sheet`` names another);
    ``id_columns`` as text exactly as written (a number cell 123 as "123")."""
    check_readable(path)
    with path.open("rb") as handle:
        start = handle.read(8)
    if not start.startswith(_WORKBOOK_SIGNATURES):
        raise DataError(
            f"{path}: not an Excel workbook, though named {path.suffix} (its content is "
            f"{_looks_like(start)}); save it from Excel as .xlsx, or as .csv if it is text"
        )
    if start.startswith(_ZIP_SIGNATURE):
        try:
            check_sheet_size(path, sheet)
        except DataError:
            raise
        except Exception:  # a damaged workbook: the reader below says so
            pass
    try:
        table = pd.read_excel(path, sheet_name=sheet if sheet is not None else 0, **options)
    except ImportError as exc:
        raise DataError(f"{path}: reading this kind of workbook needs a package ({exc})") from None
    except Exception as exc:  # openpyxl/xlrd raise many kinds of error on a damaged workbook
        if sheet is not None and "not found" in str(exc).lower():
            raise DataError(f"{path}: the workbook has no sheet {sheet!r}") from None
        raise _workbook_error(path, what, exc) from None
    _as_stored(table)
    names = _id_names(id_columns, [str(c) for c in table.columns])
    if not start.startswith(_ZIP_SIGNATURE):  # legacy .xls: pandas' view is all there is
        _ids_as_text(table, names)
        return table
    try:
        cells = _special_cells(path, sheet)
    except Exception as exc:  # the workbook opened above; its parts are damaged
        raise _workbook_error(path, what, exc) from None
    _check_formulas(path, cells.unsaved)
    header = [_header_text(c) for c in table.columns]
    if cells.header is not None:
        header = cells.header
        _check_header(path, header, what)
    _restore_errors(table, cells, header_rows=1 if options.get("header", 0) == 0 else 0)
    _check_rows(path, table, header, first_row=cells.first_row + 1, workbook=True)
    _ids_as_text(table, names)
    return table


def read_table(
    path: Path,
    *,
    sheet: str | int | None = None,
    what: str = "file",
    id_columns: IdColumns = None,
    **options: Any,
) -> pd.DataFrame:
    """A CSV file or one sheet of a workbook, chosen by the file's suffix; ``id_columns`` as
    text exactly as written."""
    if is_workbook(path):
        return read_workbook_sheet(path, sheet=sheet, what=what, id_columns=id_columns, **options)
    return read_csv_table(path, what=what, id_columns=id_columns, **options)


def _as_stored(table: pd.DataFrame) -> None:
    """Numbers as the workbook stores them: pandas turns a whole-valued cell into a Python int,
    so 1E+308 became a 309-digit integer; beyond 2**53 a workbook's numbers are floats."""
    for name in [c for c in table.columns if table[c].dtype == object]:
        values = table[name].to_numpy()
        huge = [
            i
            for i, v in enumerate(values)
            if type(v) is int and not -_EXACT_WHOLE < v < _EXACT_WHOLE
        ]
        if huge:
            column = table[name].copy()
            column.iloc[huge] = [float(values[i]) for i in huge]
            table[name] = column


#: Whole numbers a float holds exactly (a workbook stores every number as a float).
_EXACT_WHOLE = 2**53


# --- checks ------------------------------------------------------------------------------------


def _check_text(path: Path, what: str) -> None:
    """A NUL character (byte 0) marks a damaged or binary file, and no database keeps it.
    Lines are counted only to say where one is (a whole file's lines cost more than the
    search)."""
    offset = 0
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            at = block.find(b"\x00")
            if at >= 0:
                line = 1 + _newlines(path, offset) + block.count(b"\n", 0, at)
                raise DataError(
                    f"{path}: line {line} holds a NUL character (byte {offset + at + 1} is 0); "
                    f"expected text: the {what} is damaged or not a CSV file"
                )
            offset += len(block)


def _newlines(path: Path, size: int) -> int:
    """The line ends among the first ``size`` bytes of ``path``."""
    count = 0
    with path.open("rb") as handle:
        while size > 0:
            block = handle.read(min(size, 1 << 22))
            if not block:
                break
            count += block.count(b"\n")
            size -= len(block)
    return count


def _check_header(path: Path, header: list[str], what: str) -> None:
    """Two columns with the same name: refuse (which one holds the value?)."""
    seen: dict[str, int] = {}
    for position, name in enumerate(header, start=1):
        key = name.strip()
        if not key:
            continue
        if key in seen:
            raise DataError(
                f"{path}: columns {seen[key]} and {position} are both named {key!r}; expected "
                f"each column of the {what} to have a name of its own"
            )
        seen[key] = position


def _check_rows(
    path: Path, table: pd.DataFrame, header: list[str], *, first_row: int, workbook: bool = False
) -> None:
    """Rows pandas would shift, or that repeat the header (a second header row)."""
    if not isinstance(table.index, pd.RangeIndex):
        # pandas takes the extra leading cells of a first data row longer than the header as
        # row labels, shifting every value of the file by as many columns
        raise DataError(
            f"{path}: row {first_row} has more cells than the header row has columns "
            f"({len(header)}); expected one cell per column (a value with a comma needs quotes)"
        )
    repeated = _header_repeats(table, header)
    if len(repeated):
        rows = ", ".join(str(first_row + int(i)) for i in repeated[:_SHOWN])
        more = f" and {len(repeated) - _SHOWN} more" if len(repeated) > _SHOWN else ""
        where = "the sheet" if workbook else "the file"
        raise DataError(
            f"{path}: row(s) {rows}{more} repeat the header row; expected one header row at the "
            f"top of {where} and data below it (remove extra header rows)"
        )


def _header_repeats(table: pd.DataFrame, header: list[str]) -> np.ndarray:
    """Positions of rows whose cells equal their column names (most of them), compared exactly
    (a header pasted again is the same text) and column by column (fast on a million rows)."""
    named = [(i, name) for i, name in enumerate(header[: table.shape[1]]) if name.strip()]
    if not named or table.empty:
        return np.array([], dtype=int)
    first, name = named[0]
    candidates = np.flatnonzero(_equals(table.iloc[:, first], name))
    if not len(candidates):
        return candidates
    rows = table.iloc[candidates]
    hits = np.zeros(len(candidates), dtype=int)
    for position, name in named:
        hits += _equals(rows.iloc[:, position], name)
    needed = max(min(2, len(named)), math.ceil(_HEADER_REPEAT_SHARE * len(named)))
    return candidates[hits >= needed]


def _equals(cells: pd.Series, name: str) -> np.ndarray:
    """Which cells hold exactly ``name`` (text cells only; a number never equals a name)."""
    if not (cells.dtype == object or pd.api.types.is_string_dtype(cells.dtype)):
        return np.zeros(len(cells), dtype=bool)
    values = cells.to_numpy(dtype=object, na_value=None)
    return np.asarray(values == name, dtype=bool)


def _csv_header(path: Path) -> list[str]:
    """The header row of a CSV file as written (pandas renames repeated names to ``x.1``)."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            return next(csv.reader(handle), [])
    except csv.Error:  # a header cell longer than the csv module's limit (128 KiB)
        raise DataError(
            f"{path}: the header row holds a cell of more than {csv.field_size_limit()} "
            "characters; expected column names"
        ) from None


def _header_text(value: object) -> str:
    text = str(value)
    return "" if text.startswith("Unnamed: ") else text


# --- workbook cells pandas does not show -------------------------------------------------------

_MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_CELL_REF = re.compile(r"^([A-Z]+)(\d+)$")


class _SpecialCells:
    """Formula cells without a saved result, error cells and the header row of one sheet."""

    def __init__(self) -> None:
        self.unsaved: list[tuple[str, str]] = []  # (cell, formula)
        self.errors: list[tuple[int, int, str]] = []  # (sheet row, sheet column, text)
        self.header: list[str] | None = None
        self.first_row = 1  # the sheet row pandas reads as the header
        self.first_column = 1


def _special_cells(path: Path, sheet: str | int | None) -> _SpecialCells:
    """Scan the sheet's XML (only when it holds formulas or errors) and read its header row."""
    from openpyxl import load_workbook

    found = _SpecialCells()
    book = load_workbook(path, read_only=True, data_only=True, keep_links=False)
    try:
        target = book.worksheets[sheet or 0] if not isinstance(sheet, str) else book[sheet]
        part = getattr(target, "_worksheet_path", None)
        found.first_row = int(getattr(target, "min_row", 1) or 1)
        found.first_column = int(getattr(target, "min_column", 1) or 1)
        for row in target.iter_rows(min_row=found.first_row, max_row=found.first_row):
            found.header = [
                "" if getattr(cell, "value", None) is None else str(cell.value) for cell in row
            ]
    finally:
        book.close()
    if part is None:
        return found
    with zipfile.ZipFile(path) as archive:
        xml = archive.read(part.lstrip("/"))
    if not re.search(rb"<(?:\w+:)?f[\s>/]", xml) and b't="e"' not in xml:
        return found
    for _event, element in ElementTree.iterparse(_BytesSource(xml)):
        if element.tag != f"{{{_MAIN_NS}}}c":
            continue
        formula = element.find(f"{{{_MAIN_NS}}}f")
        value = element.find(f"{{{_MAIN_NS}}}v")
        inline = element.find(f"{{{_MAIN_NS}}}is")
        reference = element.get("r", "?")
        # a formula's saved result: <v>; an empty <v/> only for a formula giving empty text
        saved = inline is not None or (
            value is not None and (bool(value.text) or element.get("t") == "str")
        )
        if formula is not None and not saved:
            shown = "=" + formula.text if formula.text else "a formula shared with another cell"
            found.unsaved.append((reference, shown))
        elif element.get("t") == "e" and value is not None and value.text:
            match = _CELL_REF.match(reference)
            if match:
                column = _column_number(match.group(1))
                found.errors.append((int(match.group(2)), column, value.text))
        element.clear()
    return found


class _BytesSource:
    """A file-like view of bytes for ElementTree.iterparse."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._at = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size is None or size < 0 else self._at + size
        chunk = self._data[self._at : end].tobytes()
        self._at += len(chunk)
        return chunk


def _column_number(letters: str) -> int:
    number = 0
    for letter in letters:
        number = number * 26 + (ord(letter) - ord("A") + 1)
    return number


def _check_formulas(path: Path, unsaved: list[tuple[str, str]]) -> None:
    if not unsaved:
        return
    shown = ", ".join(f"{cell} ({formula})" for cell, formula in unsaved[:_SHOWN])
    more = f" and {len(unsaved) - _SHOWN} more" if len(unsaved) > _SHOWN else ""
    raise DataError(
        f"{path}: cell(s) {shown}{more} hold a formula whose result was never saved in the "
        "file; expected values: open the workbook in Excel and save it, or paste the "
        "formulas' results as values"
    )


def _restore_errors(table: pd.DataFrame, cells: _SpecialCells, *, header_rows: int) -> None:
    """Put error cells' text (``#DIV/0!``) where pandas left them empty."""
    for row, column, text in cells.errors:
        position = row - cells.first_row - header_rows
        offset = column - cells.first_column
        if 0 <= position < len(table) and 0 <= offset < table.shape[1]:
            name = table.columns[offset]
            if table[name].dtype != object:
                table[name] = table[name].astype(object)
            table.iloc[position, offset] = text


# --- messages ----------------------------------------------------------------------------------

_FIELDS = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")
_OPEN_QUOTE = re.compile(r"EOF inside string starting at row (\d+)")


def _csv_error(path: Path, what: str, exc: Exception) -> DataError:
    if isinstance(exc, pd.errors.EmptyDataError):
        return DataError(f"{path}: the file has no header row (expected a {what} with columns)")
    if isinstance(exc, UnicodeDecodeError):
        return DataError(
            f"{path}: not UTF-8 text (byte {exc.start + 1} cannot be read); save the {what} as "
            "CSV UTF-8"
        )
    if isinstance(exc, pd.errors.ParserError):
        fields = _FIELDS.search(str(exc))
        if fields:
            expected, line, saw = fields.groups()
            return DataError(
                f"{path}: line {line} has {saw} cells but the header row has {expected} "
                "columns; expected one cell per column (a value with a comma needs quotes)"
            )
        quote = _OPEN_QUOTE.search(str(exc))
        if quote:
            return DataError(
                f"{path}: the quoted value that starts on line {int(quote.group(1)) + 1} is "
                'never closed; expected a closing quote (") (is the file cut short?)'
            )
        return DataError(f"{path}: cannot read the {what} as CSV ({_plain(exc)})")
    return DataError(f"{path}: cannot read the {what} ({_plain(exc)})")


def _workbook_error(path: Path, what: str, exc: Exception) -> DataError:
    if isinstance(exc, zipfile.BadZipFile | EOFError | zlib.error):
        reason = (
            "the workbook is damaged: its compressed parts cannot be read (cut short while "
            "copying?)"
        )
    elif isinstance(exc, ElementTree.ParseError | KeyError) or "xml" in type(exc).__name__.lower():
        reason = "the workbook is damaged: a part of it is missing or is not what Excel writes"
    else:
        reason = f"the workbook is damaged or not an Excel workbook ({_plain(exc)})"
    return DataError(
        f"{path}: cannot read the {what}: {reason}; open it in Excel and save it again"
    )


def _plain(exc: Exception) -> str:
    text = str(exc).strip().rstrip(".") or type(exc).__name__
    text = text.replace("Error tokenizing data. C error: ", "")
    return text.replace("\n", " ")


def _looks_like(start: bytes) -> str:
    if start[:1] in (b"{", b"["):
        return "JSON"
    if start.startswith(b"<"):
        return "XML or HTML"
    if start.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")) or all(
        32 <= b < 127 or b in (9, 10, 13) for b in start
    ):
        return "text"
    return "of another kind"
