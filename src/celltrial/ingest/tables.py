"""Tabular files as sites send them (CSV, Excel workbooks), read with errors a user can act on.

Every reader of a CSV or workbook goes through here, so an empty file, a text file named
``.xlsx``, a file in another encoding or a broken workbook ends in one :class:`DataError` that
names the file and says what was expected, never in a pandas or openpyxl traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from celltrial.errors import DataError

WORKBOOK_SUFFIXES = (".xlsx", ".xlsm", ".xls")
#: The first bytes of the workbook formats: Office Open XML (a zip) and the legacy OLE2 .xls.
_WORKBOOK_SIGNATURES = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")


def is_workbook(path: Path) -> bool:
    """Whether ``path`` is named as an Excel workbook (its content is checked when read)."""
    return path.suffix.lower() in WORKBOOK_SUFFIXES


def check_readable(path: Path) -> None:
    """Raise :class:`DataError` when ``path`` is missing, a folder without data, or empty."""
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_file() and path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty (expected a header row and data rows)")


def read_csv_table(path: Path, *, what: str = "CSV file", **options: Any) -> pd.DataFrame:
    """A whole CSV file (UTF-8, with or without a byte-order mark) as pandas reads it."""
    check_readable(path)
    try:
        return pd.read_csv(path, encoding="utf-8-sig", **options)
    except Exception as exc:  # pandas' parser errors, decoding errors, OS errors
        raise _csv_error(path, what, exc) from None


def read_csv_chunks(
    path: Path, *, chunk_rows: int, what: str = "CSV file", **options: Any
) -> Iterator[pd.DataFrame]:
    """A CSV file in chunks of ``chunk_rows`` rows; any error in it is a :class:`DataError`."""
    check_readable(path)
    try:
        with pd.read_csv(path, encoding="utf-8-sig", chunksize=chunk_rows, **options) as reader:
            yield from reader
    except DataError:
        raise
    except Exception as exc:
        raise _csv_error(path, what, exc) from None


def read_workbook_sheet(
    path: Path, *, sheet: str | int | None = None, what: str = "workbook", **options: Any
) -> pd.DataFrame:
    """One sheet of an Excel workbook (the first one unless ``sheet`` names another)."""
    check_readable(path)
    with path.open("rb") as handle:
        start = handle.read(8)
    if not start.startswith(_WORKBOOK_SIGNATURES):
        raise DataError(
            f"{path}: not an Excel workbook, though named {path.suffix} (its content is "
            f"{_looks_like(start)}); save it from Excel as .xlsx, or as .csv if it is text"
        )
    try:
        return pd.read_excel(path, sheet_name=sheet if sheet is not None else 0, **options)
    except ImportError as exc:
        raise DataError(f"{path}: reading this kind of workbook needs a package ({exc})") from None
    except Exception as exc:  # openpyxl/xlrd raise many kinds of error on a damaged workbook
        if sheet is not None and "not found" in str(exc).lower():
            raise DataError(f"{path}: the workbook has no sheet {sheet!r}") from None
        raise DataError(f"{path}: cannot read the {what} ({_plain(exc)})") from None


def read_table(
    path: Path, *, sheet: str | int | None = None, what: str = "file", **options: Any
) -> pd.DataFrame:
    """A CSV file or one sheet of a workbook, chosen by the file's suffix."""
    if is_workbook(path):
        return read_workbook_sheet(path, sheet=sheet, what=what, **options)
    return read_csv_table(path, what=what, **options)


def _csv_error(path: Path, what: str, exc: Exception) -> DataError:
    if isinstance(exc, pd.errors.EmptyDataError):
        return DataError(f"{path}: the file has no header row (expected a {what} with columns)")
    if isinstance(exc, UnicodeDecodeError):
        return DataError(
            f"{path}: not UTF-8 text (byte {exc.start + 1} cannot be read); save the {what} as "
            "CSV UTF-8"
        )
    if isinstance(exc, pd.errors.ParserError):
        return DataError(f"{path}: cannot read the {what} as CSV ({_plain(exc)})")
    return DataError(f"{path}: cannot read the {what} ({_plain(exc)})")


def _plain(exc: Exception) -> str:
    text = str(exc).strip().rstrip(".") or type(exc).__name__
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
