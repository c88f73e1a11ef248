"""Pieces every ``celltrial`` command shares: the consoles, the ``--db`` option and the wrapper
that turns a :class:`~celltrial.errors.CelltrialError` into a one-paragraph message.

Kept apart from :mod:`celltrial.cli` so that each command module can use them without importing
the command line that registers it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from celltrial.errors import CelltrialError

console = Console()
errors = Console(stderr=True, soft_wrap=True)
F = TypeVar("F", bound=Callable[..., Any])

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="SQLAlchemy database URL (default: $CELLTRIAL_DATABASE_URL, else DIR/celltrial.db).",
    ),
]


def user_errors(function: F) -> F:
    """Print a :class:`CelltrialError` as a one-paragraph message and exit 1 (no traceback)."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except CelltrialError as exc:
            errors.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]
