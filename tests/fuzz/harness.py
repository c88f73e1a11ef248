"""Run one reader on one input and say what happened.

The contract every reader keeps: a clean import, or a :class:`CelltrialError` whose message
names the file; never another exception, never a hang, and after a refused import the study
database holds exactly what it held before.
"""

from __future__ import annotations

import contextlib
import resource
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from celltrial.errors import CelltrialError

CLEAN = "clean"
USER_ERROR = "user error"
CRASH = "other exception"
UNNAMED = "message without the file"
PARTIAL = "partial write"
SLOW = "too slow"
MEMORY = "too much memory"
#: Outcomes that break the contract.
FAILURES = (CRASH, UNNAMED, PARTIAL, SLOW, MEMORY)

#: Seconds one reader may take on one small input (the largest seeds read in well under 1 s).
TIME_LIMIT = 20.0
#: Growth of the process's peak memory one input may cause.
MEMORY_LIMIT_MB = 1024


@dataclass(frozen=True)
class Outcome:
    kind: str
    detail: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.kind not in FAILURES


class ReaderHung(Exception):
    """The reader ran past the time limit (raised in it by a timer)."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the block after ``seconds`` (main thread on POSIX; elsewhere only measured)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(
        signal, "setitimer"
    ):
        yield
        return

    def interrupt(_signum, _frame):
        raise ReaderHung(f"still running after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, interrupt)
    started = time.monotonic()
    outer, _interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer:  # a timer set outside (pytest-timeout…) keeps running
            left = outer - (time.monotonic() - started)
            signal.setitimer(signal.ITIMER_REAL, max(left, 0.001))


class Probe:
    """Row counts of a study's tables, to see that a refused import wrote nothing."""

    def __init__(self, engine) -> None:
        from celltrial.store.models import (
            AdverseEvent,
            AuditEvent,
            ImportBatch,
            Observation,
            Subject,
        )

        self.engine = engine
        self.models = (Subject, Observation, AdverseEvent, ImportBatch, AuditEvent)

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as connection:
            return {
                m.__tablename__: connection.scalar(select(func.count()).select_from(m))
                for m in self.models
            }


def signature(exc: BaseException) -> str:
    """Where an exception comes from: its type, the last frame in celltrial and the last frame."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/celltrial/" in f.filename.replace("\\", "/")]
    where = []
    for frame in (ours[-1] if ours else None, frames[-1] if frames else None):
        if frame is None:
            continue
        name = frame.filename.replace("\\", "/")
        for marker in ("/src/", "/site-packages/", "/lib/python"):
            if marker in name:
                name = name.split(marker, 1)[1]
                break
        text = f"{name}:{frame.lineno}"
        if text not in where:
            where.append(text)
    message = " ".join(str(exc).split())[:120]
    return f"{type(exc).__name__} at {' → '.join(where) or '?'}: {message}"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def attempt(
    call: Callable[[], object],
    *,
    names: list[str],
    probe: Probe | None = None,
    limit: float = TIME_LIMIT,
) -> Outcome:
    """Run ``call`` and classify what happened (see the module doc)."""
    before = probe.counts() if probe is not None else None
    peak = _peak_mb()
    start = time.perf_counter()
    outcome: Outcome
    try:
        with time_limit(limit):
            call()
    except CelltrialError as exc:
        seconds = time.perf_counter() - start
        message = str(exc)
        after = probe.counts() if probe is not None else None
        if after != before:
            changed = {k: (before[k], after[k]) for k in after if after[k] != before[k]}
            outcome = Outcome(PARTIAL, f"refused, yet rows changed {changed}: {message}", seconds)
        elif not any(name and name in message for name in names):
            outcome = Outcome(UNNAMED, message[:300], seconds)
        else:
            outcome = Outcome(USER_ERROR, message.splitlines()[0][:200], seconds)
    except ReaderHung as exc:
        outcome = Outcome(SLOW, signature(exc), time.perf_counter() - start)
    except Exception as exc:
        outcome = Outcome(CRASH, signature(exc), time.perf_counter() - start)
    else:
        outcome = Outcome(CLEAN, "", time.perf_counter() - start)
    if outcome.seconds > limit and outcome.kind not in FAILURES:
        outcome = Outcome(SLOW, f"{outcome.seconds:.1f} s ({outcome.kind})", outcome.seconds)
    grown = _peak_mb() - peak
    if grown > MEMORY_LIMIT_MB:
        outcome = Outcome(MEMORY, f"peak memory grew by {grown:.0f} MB ({outcome.kind})", 0.0)
    return outcome


def names_for(path: Path) -> list[str]:
    """What a message may name to point at ``path``: the file, or a folder and its files."""
    names = [path.name, str(path)]
    if path.is_dir():
        names += [p.name for p in path.iterdir()]
    return names
