"""What one test study's database costs the test suite (tests/store/backends.py): made empty and
migrated by ``init_study`` against copied from the run's migrated template, and, on PostgreSQL,
dropped while the test waits against dropped in the background. Interleaved rounds, so that load
falls on both ways alike; each figure beside an anchor (fixed pure-Python work) measured in the
same run, and the load average.

Run: python benchmarks/bench_test_databases.py [--rounds 5]
PostgreSQL rows need $CELLTRIAL_TEST_POSTGRES_URL (as for the tests). Their server column is the
CPU of the whole local server (read from /proc: the postmaster and its processes), so other
clients' work counts in it: it is meaningful on an otherwise idle server only; - when unknown.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.store.backends

from tests.store import backends

POSTMASTER_PID = Path("/var/run/postgresql/15-main.pid")


def cpu() -> float:
    """CPU seconds (user + system) of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def server_cpu() -> float | None:
    """CPU seconds of the local PostgreSQL server's processes (ended ones included), if known."""
    try:
        pid = int(POSTMASTER_PID.read_text().split()[0])
        ticks = os.sysconf("SC_CLK_TCK")
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total = sum(int(x) for x in fields[11:15])  # own and reaped children's user + system
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            try:
                child_fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue
            total += int(child_fields[11]) + int(child_fields[12])
        return total / ticks
    except (OSError, ValueError, IndexError):
        return None


def anchor() -> float:
    """CPU seconds of a fixed pure-Python loop."""
    start = time.process_time()
    total = 0
    for i in range(3_000_000):
        total += i * i
    return time.process_time() - start


def one_study(backend: str, folder: Path, *, migrated: bool) -> Callable[[], None]:
    """Make a study as the test fixtures do; returns what ends it (drops the database)."""
    from celltrial.study import init_study

    stack = ExitStack()
    url = stack.enter_context(backends.fresh_database(backend, folder, migrated=migrated))
    init_study(folder / "study", user="bench", db_url=url).engine.dispose()
    return stack.close


def measure(backend: str, root: Path, n: int, *, migrated: bool, wait_drop: bool) -> dict:
    folder = root / f"{backend}-{migrated}-{wait_drop}-{n}"
    folder.mkdir()
    c0, s0, w0 = cpu(), server_cpu(), time.perf_counter()
    end = one_study(backend, folder, migrated=migrated)
    end()
    if wait_drop:
        backends.DROPPER.wait()  # as before: the test waited for DROP DATABASE
    s1 = server_cpu()
    return {
        "cpu": cpu() - c0,
        "server": None if s0 is None or s1 is None else s1 - s0,
        "wall": time.perf_counter() - w0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    ways = [("sqlite", False, False), ("sqlite", True, False)]
    if os.environ.get(backends.POSTGRES_ENV):
        ways += [("postgresql", False, True), ("postgresql", True, False)]
    else:
        print(f"PostgreSQL rows skipped: ${backends.POSTGRES_ENV} is not set")
    print(f"load average before: {os.getloadavg()[0]:.2f}   anchor: {anchor():.3f} CPU-s")
    results: dict[tuple, list[dict]] = {way: [] for way in ways}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for backend, migrated, _wait in ways:  # warm-up: imports, the templates made once
            measure(backend, root, -1, migrated=migrated, wait_drop=True)
        anchors = []
        for n in range(rounds):
            anchors.append(anchor())
            for way in ways:
                backend, migrated, wait_drop = way
                results[way].append(
                    measure(backend, root, n, migrated=migrated, wait_drop=wait_drop)
                )
        backends.close_test_databases()
    print(f"{'one study, median of ' + str(rounds):<58} {'CPU-s':>7} {'server':>7} {'wall s':>7}")
    for (backend, migrated, wait_drop), rows in results.items():
        how = "template copy" if migrated else "empty + every migration"
        drop = (
            ", drop waited for"
            if wait_drop
            else (", drop in background" if backend != "sqlite" else "")
        )
        # the whole server's CPU, other clients' included: shown for the PostgreSQL rows only
        server = [r["server"] for r in rows if r["server"] is not None and backend != "sqlite"]
        print(
            f"{backend + ': ' + how + drop:<58} {statistics.median(r['cpu'] for r in rows):7.3f} "
            f"{(f'{statistics.median(server):7.2f}' if server else '      -')} "
            f"{statistics.median(r['wall'] for r in rows):7.2f}"
        )
    print(f"anchor (median of {rounds}, same run): {statistics.median(anchors):.3f} CPU-s")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
