"""Time to write the study report (HTML and PDF) for the 5-subject demo and for 100 subjects.

Run: python benchmarks/bench_report.py [--sizes 5 100]
The study is built first (not timed); then `write_report(..., report_format="both")` is timed, and
HTML alone for comparison. Targets (issue 6): 5 subjects under 10 s, 100 subjects under 60 s,
both formats, on 2 cores.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from celltrial.demo import run_demo
from celltrial.report import write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 100])
    args = parser.parse_args()
    print(f"{'subjects':>8}  {'html s':>7}  {'html+pdf s':>10}  {'pdf pages KiB':>13}")
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            demo = run_demo(Path(tmp) / "study", n_subjects=size, seed=2020)
            started = time.perf_counter()
            write_report(demo.study, out=Path(tmp) / "html-only", report_format="html")
            html_seconds = time.perf_counter() - started
            started = time.perf_counter()
            paths = write_report(demo.study, out=Path(tmp) / "both", report_format="both")
            both_seconds = time.perf_counter() - started
            pdf = next(p for p in paths if p.suffix == ".pdf")
            print(
                f"{size:>8}  {html_seconds:>7.2f}  {both_seconds:>10.2f}  "
                f"{pdf.stat().st_size / 1024:>13.0f}"
            )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory of this process: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
