"""Pieces every ``celltrial`` command shares: the consoles, the ``--db`` and ``--format`` options,
the wrapper that turns a :class:`~celltrial.errors.CelltrialError` into a one-paragraph message,
and :class:`Output`, which prints an analysis' tables for people (labelled, wrapped to the
terminal) or for machines (CSV, JSON).

Kept apart from :mod:`celltrial.cli` so that each command module can use them without importing
the command line that registers it. Data text is never read as Rich markup: both consoles have
markup off, and styled words are passed as (text, style) pairs to :func:`say`.
"""

from __future__ import annotations

import errno
import functools
import json
import math
import os
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterable
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from celltrial.errors import CelltrialError

console = Console(markup=False, highlight=False)
errors = Console(stderr=True, soft_wrap=True, markup=False, highlight=False)
F = TypeVar("F", bound=Callable[..., Any])
FORMATS = ("text", "csv", "json")
#: Exit status of a command stopped by a defect of celltrial (EX_SOFTWARE of sysexits.h).
INTERNAL_ERROR_STATUS = 70
#: Set to anything: unexpected errors are raised with their traceback (developers, tests).
DEBUG_ENV = "CELLTRIAL_DEBUG"
#: A word longer than this may be folded across lines of a table cell.
MAX_WORD_WIDTH = 18
#: A cell this short is never wrapped.
SHORT_CELL = 8

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="SQLAlchemy database URL (default: $CELLTRIAL_DATABASE_URL, else DIR/celltrial.db).",
        metavar="URL",
    ),
]
FormatOption = Annotated[
    str,
    typer.Option(
        "--format",
        help="text (tables for people, the default), csv or json (every table, for programs).",
        metavar="FORMAT",
    ),
]


def _hide_argument_types() -> None:
    """Help shows each argument by its metavar (``DIR``, ``IMAGE...``) and what it is for, not
    the Python type Typer would print beside it (``<path>``, ``<list[Path]>``)."""
    from typer.core import TyperArgument

    if hasattr(TyperArgument, "display_type_rich"):  # the Typer releases that print types
        TyperArgument.display_type_rich = lambda self, ctx: None  # type: ignore[method-assign]


_hide_argument_types()


def say(*parts: str | tuple[str, str]) -> None:
    """Print one line; parts are plain text or (text, Rich style) pairs, never markup. Long
    lines are left to the terminal to wrap, so a path or a number is never cut in two."""
    console.print(Text.assemble(*parts), soft_wrap=True)


def user_errors(function: F) -> F:
    """Print a :class:`CelltrialError` as a one-paragraph message and exit 1 (no traceback).

    Any other exception is a defect of celltrial: the user sees one message naming a file that
    holds the details, and the command exits with :data:`INTERNAL_ERROR_STATUS`
    (``$CELLTRIAL_DEBUG`` set: the exception is raised as it is, for developers and tests).
    """

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except CelltrialError as exc:
            errors.print(Text.assemble(("error:", "bold red"), " ", str(exc)))
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            errors.print(Text("interrupted", style="bold red"))
            raise typer.Exit(130) from None
        except OSError as exc:
            message = describe_os_error(exc)
            if message is None:
                raise _defect(exc) from None
            errors.print(Text.assemble(("error:", "bold red"), " ", message))
            raise typer.Exit(1) from None
        except Exception as exc:
            raise _defect(exc) from None

    return wrapper  # type: ignore[return-value]


def _defect(exc: Exception) -> BaseException:
    """What to raise for an exception that is a defect of celltrial: the exception itself for
    the command line's own exits and under ``$CELLTRIAL_DEBUG``, else (after one message naming
    a file of details) an exit with :data:`INTERNAL_ERROR_STATUS`."""
    if type(exc).__module__.split(".")[0] in ("typer", "click") or os.environ.get(DEBUG_ENV):
        return exc  # the command line's own exits and usage errors; or a developer asked
    saved = _save_details(exc)
    errors.print(
        Text.assemble(
            ("internal error:", "bold red"),
            f" celltrial could not finish this command ({type(exc).__name__}: "
            f"{_plain_text(exc)}). This is a defect in celltrial; the details are in "
            f"{saved}: please send that file to its maintainers.",
        )
    )
    return typer.Exit(INTERNAL_ERROR_STATUS)


#: Operating-system errors the user (or the machine) can fix, with what to say about them.
_OS_ERRORS = {
    errno.ENOSPC: "no space left on the disk",
    errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "the disk is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}


def describe_os_error(exc: OSError) -> str | None:
    """One sentence for an operating-system error a user can act on (full disk, read-only
    disk, no permission), naming the file; None for any other (a defect)."""
    what = _OS_ERRORS.get(exc.errno or -1)
    if what is None:
        return None
    where = f" writing {exc.filename}" if exc.filename else ""
    return (
        f"{what}{where}; the command stopped (a study's database keeps only what was "
        "complete: nothing half-written is stored). Make room or fix the permission, then run it "
        "again."
    )


def _plain_text(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] + ("…" if len(text) > 200 else "")


def _save_details(exc: BaseException) -> Path:
    """Write the traceback of an unexpected error to a file of its own; its path."""
    stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
    handle, name = tempfile.mkstemp(prefix=f"celltrial-error-{stamp}-", suffix=".txt")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(f"celltrial {_version()} — {' '.join(sys.argv)}\n\n")
        out.write("".join(traceback.format_exception(exc)))
    return Path(name)


def _version() -> str:
    from celltrial import __version__

    return __version__


def cell_text(value: Any) -> str:
    """A table cell as people read it: 3 significant digits, — for missing, words for codes."""
    from celltrial.labels import value_label

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalars
        return cell_text(value.item())
    if isinstance(value, float):
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        return f"{value:.3g}" if abs(value) < 1e6 else f"{value:,.0f}"
    if isinstance(value, datetime | date):
        return (
            value.isoformat(sep=" ", timespec="minutes")
            if isinstance(value, datetime)
            else str(value)
        )
    if isinstance(value, list | tuple | set | frozenset):
        return ", ".join(cell_text(v) for v in value)
    text = str(value)
    if text in ("nan", "NaT", "<NA>", "None"):
        return "—"
    return value_label(text).replace(" %", "\u00a0%")  # a number keeps its per cent sign


#: Table columns holding p-values: in text they print through :func:`celltrial.pvalues.p_number`
#: ("<0.001", never "0"); CSV and JSON keep the number.
P_VALUE_COLUMNS = frozenset({"p_value", "p_holm", "min_p_value", "t_p_value"})


def is_p_value_column(name: str) -> bool:
    """Whether a table column holds p-values (by its name)."""
    return name in P_VALUE_COLUMNS or name.endswith("_p_value")


def _machine_value(value: Any) -> Any:
    if value is None:
        return None
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple | set | frozenset):
        return [_machine_value(v) for v in value]
    if isinstance(value, str) and value in ("nan", "NaT", "<NA>"):
        return None
    return value


def _unbreakable(text: str) -> int:
    """How narrow a cell may get: a short cell ("Day 10") stays on one line, a long one may
    wrap between its words."""
    if len(text) <= SHORT_CELL:
        return len(text)
    return max((len(w) for w in text.split()), default=1)


def column_widths(headers: list[str], rows: list[list[str]], available: int) -> list[int]:
    """Widths of a table's columns within ``available`` characters: each column's full width
    when all fit, else at least its longest word (up to :data:`MAX_WORD_WIDTH`), the rest shared
    by how much more each needs, so that text wraps between words and nothing is cut off."""
    natural, shortest = [], []
    for i, header in enumerate(headers):
        texts = [r[i] for r in rows]
        full = max([len(t) for t in texts] + [max(map(len, header.split()), default=1)])
        word = max([len(w) for w in header.split()] + [_unbreakable(t) for t in texts] + [1])
        natural.append(max(full, 1))
        shortest.append(max(1, min(word, MAX_WORD_WIDTH, full)))
    available = max(available, len(headers))
    if sum(natural) <= available:
        return natural
    if sum(shortest) >= available:  # too narrow for whole words: the widest columns give way
        widths = list(shortest)
        while sum(widths) > available and max(widths) > 1:
            widths[widths.index(max(widths))] -= 1
        return widths
    spare = available - sum(shortest)
    wants = [n - s for n, s in zip(natural, shortest, strict=True)]
    total = sum(wants)
    widths = [s + int(spare * w / total) for s, w in zip(shortest, wants, strict=True)]
    return widths


class Output:
    """Where an analysis command's tables and notes go, in the ``--format`` the user chose.

    ``text``: Rich tables with human headers, folded (never cut) to the terminal's width.
    ``csv``: each table as CSV under a ``# title`` line, notes as ``# note:`` lines.
    ``json``: one document at :meth:`close` with every table (columns and rows) and note.
    """

    def __init__(self, fmt: str) -> None:
        if fmt not in FORMATS:
            raise CelltrialError(f"unknown --format {fmt!r}; expected {', '.join(FORMATS)}")
        self.format = fmt
        self._document: dict[str, Any] = {"title": None, "tables": [], "notes": []}

    def title(self, text: str) -> None:
        """The command's heading (bold in text; the document's title in JSON)."""
        if self.format == "text":
            console.print(Text(text, style="bold"))
        elif self.format == "csv":
            console.print(f"# {text}", soft_wrap=True)
        else:
            self._document["title"] = text

    def table(
        self,
        frame: Any,
        title: str,
        *,
        labels: dict[str, str] | None = None,
        styles: dict[str, Callable[[Any], str | None]] | None = None,
    ) -> None:
        """One table; ``labels`` override the shared column labels, ``styles`` colour cells."""
        from celltrial.labels import column_label

        columns = [str(c) for c in frame.columns]
        headers = [(labels or {}).get(c) or column_label(c) for c in columns]
        rows = list(frame.itertuples(index=False, name=None))
        if self.format == "json":
            self._document["tables"].append(
                {
                    "title": title,
                    "columns": columns,
                    "labels": headers,
                    "rows": [[_machine_value(v) for v in row] for row in rows],
                }
            )
            return
        if self.format == "csv":
            out = frame.copy()
            out.columns = columns
            console.print(f"# {title}", soft_wrap=True)
            console.file.write(out.to_csv(index=False))
            console.print()
            return
        from celltrial.pvalues import p_number

        p_columns = [is_p_value_column(c) for c in columns]
        texts = [
            [
                p_number(_machine_value(v)) if is_p else cell_text(v)
                for v, is_p in zip(row, p_columns, strict=True)
            ]
            for row in rows
        ]
        table = Table(
            title=title,
            title_justify="left",
            box=box.SIMPLE_HEAD,
            show_edge=False,
            padding=(0, 1, 0, 0),
            pad_edge=False,
        )
        # a column's width counts its padding (one space on the right); columns are separated
        # by one space more
        widths = column_widths(headers, texts, console.width - 2 * len(headers) + 1)
        for header, width in zip(headers, widths, strict=True):
            table.add_column(header, overflow="fold", width=width + 1)
        for row, text_row in zip(rows, texts, strict=True):
            cells = []
            for column, value, text in zip(columns, row, text_row, strict=True):
                style = (styles or {}).get(column)
                cells.append(Text(text, style=(style(value) if style else None) or ""))
            table.add_row(*cells)
        console.print(table)

    def notes(self, heading: str, lines: Iterable[str]) -> None:
        """A bulleted list under ``heading`` (findings, caveats)."""
        lines = list(lines)
        if not lines:
            return
        if self.format == "json":
            self._document["notes"].append({"heading": heading, "lines": lines})
        elif self.format == "csv":
            for line in lines:
                console.print(f"# {heading.lower()}: {line}", soft_wrap=True)
        else:
            console.print(Text(heading, style="bold"))
            for line in lines:
                console.print(Text(f"• {line}"))

    def line(self, *parts: str | tuple[str, str]) -> None:
        """A sentence for people (a note in CSV and JSON)."""
        text = "".join(p if isinstance(p, str) else p[0] for p in parts)
        if self.format == "text":
            say(*parts)
        elif self.format == "csv":
            console.print(f"# {text}", soft_wrap=True)
        else:
            self._document["notes"].append({"heading": "", "lines": [text]})

    def close(self) -> None:
        """Print the JSON document (nothing to do for text and CSV)."""
        if self.format == "json":
            console.file.write(json.dumps(self._document, ensure_ascii=False, indent=1) + "\n")
