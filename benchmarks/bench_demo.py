"""Time and peak memory of `celltrial demo` for 5 and 500 simulated subjects.

Run: python benchmarks/bench_demo.py [--sizes 5 500]
Each size runs in a fresh process (the command as a user runs it); wall time includes start-up.
Targets (issue 2): 5 subjects under 5 s, 500 under 60 s, on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import json, resource, sys, time
t0 = time.perf_counter()
from celltrial.cli import app
try:
    app(["demo", "--out", sys.argv[1], "--subjects", sys.argv[2]], standalone_mode=False)
finally:
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": time.perf_counter() - t0, "peak_mib": peak_kib / 1024}))
"""


def run(size: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "study"
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(out), str(size)],
            capture_output=True,
            text=True,
            check=True,
        )
        wall = time.perf_counter() - started
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        figures["wall_seconds"] = wall
        figures["report_kib"] = (out / "report.html").stat().st_size / 1024
        return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 500])
    args = parser.parse_args()
    header = ("subjects", "wall s", "in-process s", "peak MiB", "report KiB")
    widths = (8, 7, 12, 8, 10)
    print("  ".join(f"{h:>{w}}" for h, w in zip(header, widths, strict=True)))
    for size in args.sizes:
        f = run(size)
        print(
            f"{size:>8}  {f['wall_seconds']:>7.2f}  {f['seconds']:>12.2f}  "
            f"{f['peak_mib']:>8.0f}  {f['report_kib']:>10.0f}"
        )


if __name__ == "__main__":
    main()
