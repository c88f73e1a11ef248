"""Import 1,000,000 long rows into SQLite: celltrial's validated import vs a naive bulk load.

celltrial: read in chunks, parse qualifiers, convert units, check subjects/times/ranges, detect
duplicates, idempotent insert inside one audited batch. Naive: ``pandas.read_csv`` +
``DataFrame.to_sql`` of the same file, no checks at all, into a table of its own (5 text columns,
no index, no foreign key). Floor: reading the file plus SQLite storing the same rows, prepared
beforehand, the way celltrial stores them (its table, foreign keys and indexes): what no import
into celltrial's schema can undercut. Each runs in its own process so that
peak memory (max RSS) is its own. Prints CPU seconds (user + system, every thread) and wall
seconds of each, rows/s, the ratio and peak memory. Target (issue 26): celltrial ≥ 1.5× the
naive load's speed (CPU and, on an idle machine, wall). Also prints how long celltrial's
write step holds the study's write lock (other writers wait that long).

    python benchmarks/bench_ingest.py [--rows 1000000] [--before DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

TESTS = [
    ("CRP", "mg/L", 50.0),
    ("LYM", "10^9/L", 1.0),
    ("IL6", "pg/mL", 30.0),
    ("DDIMER", "mg/L", 2.0),
    ("NEUT", "10^9/L", 5.0),
    ("LDH", "U/L", 300.0),
    ("CRP", "mg/dL", 5.0),
    ("LYM", "cells/uL", 1000.0),
]


def make_file(path: Path, rows: int, seed: int = 1) -> None:
    """A long CSV: 2,000 subjects, hourly draws, 8 test/unit pairs, some '<' qualifiers."""
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(TESTS), rows)
    names = np.array([t[0] for t in TESTS])[pick]
    units = np.array([t[1] for t in TESTS])[pick]
    scale = np.array([t[2] for t in TESTS])[pick]
    values = np.round(rng.lognormal(0, 0.5, rows) * scale, 3).astype(str)
    values[rng.random(rows) < 0.01] = "<0.5"
    index = np.arange(rows)
    subject = index % 2000
    hours = index // 2000
    times = pd.Timestamp("2020-02-01 00:00") + pd.to_timedelta(hours * 3600 + pick, unit="s")
    pd.DataFrame(
        {
            "subject_id": np.char.add("P", subject.astype(str)),
            "time": times.strftime("%Y-%m-%d %H:%M:%S"),
            "test": names,
            "value": values,
            "unit": units,
        }
    ).to_csv(path, index=False)


def _cpu() -> float:
    """CPU seconds of this process so far (user + system, all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_celltrial(path: Path, work: Path) -> dict:
    from contextlib import contextmanager

    from celltrial.ingest import import_file, importer
    from celltrial.study import init_study

    write_step = {"seconds": 0.0, "cpu": 0.0}
    session = importer.study_session

    @contextmanager
    def timed_session(*args, **kwargs):
        """The write step: from the write transaction's start to its commit (the time other
        writers of the study wait)."""
        cpu, start = _cpu(), time.perf_counter()
        with session(*args, **kwargs) as opened:
            yield opened
        write_step["seconds"] += time.perf_counter() - start
        write_step["cpu"] += _cpu() - cpu

    importer.study_session = timed_session
    study = init_study(work / "study", user="bench")
    cpu, start = _cpu(), time.perf_counter()
    result = import_file(study, path, register=True, cohort="bench", user="bench")
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "cpu": _cpu() - cpu,
        "stored": result.counts["inserted"],
        "report": result.report.counts,
        "write_seconds": write_step["seconds"],
        "write_cpu": write_step["cpu"],
    }


def run_naive(path: Path, work: Path) -> dict:
    from sqlalchemy import create_engine

    engine = create_engine(f"sqlite:///{work / 'naive.db'}")
    cpu, start = _cpu(), time.perf_counter()
    frame = pd.read_csv(path)
    frame.to_sql("observation", engine, index=False, chunksize=50_000)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "cpu": _cpu() - cpu, "stored": len(frame)}


def run_floor(path: Path, work: Path) -> dict:
    """What any import into celltrial's schema costs at least: reading the file, and SQLite
    storing the rows as celltrial does (same table and columns, foreign keys on, multi-row
    statements, indexes dropped and rebuilt, one commit). The rows are prepared beforehand, not
    timed: no parsing, validation, conversion or duplicate check."""
    from celltrial.ingest.storage import ROWS_PER_STATEMENT
    from celltrial.store.audit import begin_batch
    from celltrial.store.database import study_session
    from celltrial.store.models import Subject
    from celltrial.study import init_study

    study = init_study(work / "study", user="bench")
    cpu, start = _cpu(), time.perf_counter()
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    read_seconds = time.perf_counter() - start
    read_cpu = _cpu() - cpu

    codes, subjects = pd.factorize(frame["subject_id"])
    with study_session(study.engine, user="bench") as session:
        batch = begin_batch(session, kind="bench", source=str(path))
        added = [Subject(study_id=study.study_id, code=str(code)) for code in subjects]
        session.add_all(added)
        session.flush()
        batch_id, subject_ids = batch.id, np.array([s.id for s in added])
    stamps = pd.to_datetime(frame["time"]).dt.strftime("%Y-%m-%d %H:%M:%S.000000")
    values = pd.to_numeric(frame["value"], errors="coerce")
    rows = list(
        zip(
            subject_ids[codes].tolist(),
            stamps.tolist(),
            frame["test"].tolist(),
            frame["value"].tolist(),
            frame["unit"].tolist(),
            values.where(values.notna(), None).tolist(),
            range(2, len(frame) + 2),
            strict=True,
        )
    )
    per = ROWS_PER_STATEMENT
    full = len(rows) - len(rows) % per
    statements = [[x for row in rows[i : i + per] for x in row] for i in range(0, full, per)]
    head = (
        "INSERT INTO observation (subject_id, time, test, raw_value, raw_unit, value, "
        "source_row, qualifier, unit, ref_low, ref_high, import_batch_id, source, specimen, "
        "version) VALUES "
    )
    one = f"(?, ?, ?, ?, ?, ?, ?, '', 'mg/L', NULL, NULL, {batch_id}, 'long.csv', NULL, 1)"

    connection = study.engine.raw_connection()
    cursor = connection.cursor()
    indexes = cursor.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' "
        "AND tbl_name = 'observation' AND sql IS NOT NULL"
    ).fetchall()
    cpu, start = _cpu(), time.perf_counter()
    for name, _sql in indexes:
        cursor.execute(f'DROP INDEX "{name}"')
    cursor.executemany(head + ", ".join([one] * per), statements)
    cursor.executemany(head + one, rows[full:])
    for _name, sql in indexes:
        cursor.execute(sql)
    connection.commit()
    store_seconds = time.perf_counter() - start
    store_cpu = _cpu() - cpu
    connection.close()
    return {
        "seconds": read_seconds + store_seconds,
        "cpu": read_cpu + store_cpu,
        "read_seconds": read_seconds,
        "store_seconds": store_seconds,
        "stored": len(rows),
    }


def _peak_mib() -> float:
    """This process's peak resident memory (VmHWM: reset at exec, unlike ru_maxrss)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(which: str, path: str, work: str) -> None:
    run = {"celltrial": run_celltrial, "naive": run_naive, "floor": run_floor}[which]
    out = run(Path(path), Path(work))
    out["peak_mib"] = _peak_mib()
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--before",
        metavar="DIR",
        help="also import with an earlier checkout's celltrial (DIR/src), in the same run",
    )
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    start_load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        path = work / "long.csv"
        make_file(path, args.rows)
        figures = {}
        runs = ["naive", "floor", "celltrial"] + (["before"] if args.before else [])
        for which in runs:
            folder = work / which
            folder.mkdir()
            env = dict(os.environ)
            if which == "before":
                env["PYTHONPATH"] = str(Path(args.before).resolve() / "src")
            done = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    "celltrial" if which == "before" else which,
                    str(path),
                    str(folder),
                ],
                check=True,
                capture_output=True,
                text=True,
                env=env,
            )
            figures[which] = json.loads(done.stdout.strip().splitlines()[-1])
    rows = args.rows
    for which, f in figures.items():
        print(
            f"{which:>9}: {f['cpu']:7.2f} s CPU {f['seconds']:7.2f} s wall  "
            f"{rows / f['seconds']:>10,.0f} rows/s  "
            f"peak {f['peak_mib']:7.1f} MiB  stored {f['stored']:,}"
        )
    naive, ours = figures["naive"], figures["celltrial"]
    print(
        f"    ratio: celltrial is {naive['cpu'] / ours['cpu']:.2f}x (CPU), "
        f"{naive['seconds'] / ours['seconds']:.2f}x (wall) the naive load's speed (target >= 1.5)"
    )
    floor = figures["floor"]
    print(
        f"    floor: reading the file {floor['read_seconds']:.2f} s + SQLite storing the rows in "
        f"celltrial's schema (insert, indexes, commit) {floor['store_seconds']:.2f} s; no "
        f"import into this schema can beat {figures['naive']['seconds'] / floor['seconds']:.2f}x "
        "the naive load without storing less"
    )
    for which in ("celltrial", "before") if args.before else ("celltrial",):
        f = figures[which]
        print(
            f"    write step of {which} (the study's write lock held): "
            f"{f['write_seconds']:.2f} s wall, {f['write_cpu']:.2f} s CPU "
            f"of its {f['seconds']:.2f} s wall"
        )
    print(f"  results: {figures['celltrial']['report']}")
    load = os.getloadavg()
    print(
        f"load average (1, 5, 15 min) before the run: {start_load[0]:.2f} {start_load[1]:.2f} "
        f"{start_load[2]:.2f}; after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (2 cores: above 2, "
        "the wall times are inflated; compare the CPU seconds)"
    )


if __name__ == "__main__":
    main()
