"""Saying that a write waits for another writer, so that a command never seems to hang.

A write to a SQLite study waits for another writer (an import, the web app) to finish. The
command line registers a notice (:func:`notify_write_waits`) and prints "waiting for the study
database…" when a write is about to wait; the web app registers none (it answers "study busy"
when the wait runs out). Light on purpose: the command line imports it before any command runs.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

_notice: Callable[[str], None] | None = None


def notify_write_waits(notice: Callable[[str], None] | None) -> None:
    """Have ``notice`` called with a sentence whenever a write to a SQLite study must wait for
    another writer before it starts (None: writes wait silently)."""
    global _notice
    _notice = notice


def say_if_write_waits(engine: Any, *, busy_seconds: int) -> None:
    """Tell the registered notice when another connection holds ``engine``'s write lock now.

    A probe on a connection of its own tries to take the lock without waiting and lets go at
    once; the write itself then waits as usual, up to ``busy_seconds``.
    """
    if _notice is None or engine.dialect.name != "sqlite":
        return
    path = engine.url.database
    if not path or path == ":memory:" or not Path(path).is_file():
        return
    probe = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.execute("ROLLBACK")
    except sqlite3.OperationalError as exc:
        text = str(exc).lower()
        if "locked" in text or "busy" in text:
            _notice(
                "waiting for the study database: another import or the web app is writing "
                f"(up to {busy_seconds} s)…"
            )
    finally:
        probe.close()
