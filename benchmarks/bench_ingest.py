"""Import 1,000,000 long rows into SQLite: celltrial's validated import vs a naive bulk load.

celltrial: read in chunks, parse qualifiers, convert units, check subjects/times/ranges, detect
duplicates, idempotent insert inside one audited batch. Naive: ``pandas.read_csv`` +
``DataFrame.to_sql`` of the same file, no checks at all. Each runs in its own process so that
peak memory (max RSS) is its own. Prints rows/s of both, the ratio and peak memory.

    python benchmarks/bench_ingest.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import json
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


def run_celltrial(path: Path, work: Path) -> dict:
    from celltrial.ingest import import_file
    from celltrial.study import init_study

    study = init_study(work / "study", user="bench")
    start = time.perf_counter()
    result = import_file(study, path, register=True, cohort="bench", user="bench")
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "stored": result.counts["inserted"], "report": result.report.counts}


def run_naive(path: Path, work: Path) -> dict:
    from sqlalchemy import create_engine

    engine = create_engine(f"sqlite:///{work / 'naive.db'}")
    start = time.perf_counter()
    frame = pd.read_csv(path)
    frame.to_sql("observation", engine, index=False, chunksize=50_000)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "stored": len(frame)}


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
    run = run_celltrial if which == "celltrial" else run_naive
    out = run(Path(path), Path(work))
    out["peak_mib"] = _peak_mib()
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        path = work / "long.csv"
        make_file(path, args.rows)
        figures = {}
        for which in ("naive", "celltrial"):
            folder = work / which
            folder.mkdir()
            done = subprocess.run(
                [sys.executable, __file__, "--child", which, str(path), str(folder)],
                check=True,
                capture_output=True,
                text=True,
            )
            figures[which] = json.loads(done.stdout.strip().splitlines()[-1])
    rows = args.rows
    for which, f in figures.items():
        print(
            f"{which:>9}: {f['seconds']:7.2f} s  {rows / f['seconds']:>10,.0f} rows/s  "
            f"peak {f['peak_mib']:7.1f} MiB  stored {f['stored']:,}"
        )
    ratio = figures["naive"]["seconds"] / figures["celltrial"]["seconds"]
    print(f"    ratio: celltrial is {ratio:.2f}x the naive load's rows/s (target >= 2)")
    print(f"  results: {figures['celltrial']['report']}")


if __name__ == "__main__":
    main()
