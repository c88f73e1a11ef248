"""Time and peak memory of `celltrial demo`, step by step, CPU and wall (issues 2 and 26).

Run: python benchmarks/bench_demo.py [--sizes 5 500] [--before DIR]

Each run is a fresh process running the command as a user runs it (wall time includes start-up);
CPU seconds are user + system of that process and the worker processes it started. For each size:
a first demo with an empty phantom-CT cache (``$CELLTRIAL_CACHE_DIR`` in a temporary folder), the
same with the CT phantoms measured in one process (``workers=1``, to see what the worker pool
gives on this machine), and a demo with the cache filled, as every demo after the first runs,
with the report's sections in worker processes (as shipped: a process started with the demo
imports their libraries meanwhile) and in one process ("report serial": what the workers give).
Beside them, in the same run: ``--before DIR``, the demo of an earlier checkout (``git worktree
add DIR <commit>``; its ``DIR/src`` is put first on the path), and an anchor of fixed work
(NumPy matrix products) that shows how loaded the machine is. The load average is printed.

Targets: 5 subjects under 5 s wall on an idle machine (issue 26), 500 under 60 s (issue 2).
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

CHILD = """
import json, resource, sys, time

def cpu():
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

t0, c0 = time.perf_counter(), cpu()
steps = []
from celltrial.cli import app
import celltrial.demo

real_run_demo = celltrial.demo.run_demo

def run_demo(*args, on_step, **kwargs):
    def step(name):
        steps.append((name, cpu(), time.perf_counter()))
        on_step(name)
    try:
        return real_run_demo(*args, on_step=step, **kwargs)
    finally:
        steps.append(("end", cpu(), time.perf_counter()))

celltrial.demo.run_demo = run_demo
if sys.argv[3] != "default":
    import celltrial.imaging.demo as ct
    ct.add_demo_scans.__kwdefaults__["workers"] = int(sys.argv[3])
if sys.argv[4] != "default":
    import celltrial.report.sections as sections
    sections.build_sections.__kwdefaults__["workers"] = int(sys.argv[4])
    if hasattr(celltrial.demo, "start_section_process"):  # (the early section process)
        celltrial.demo.start_section_process = (
            lambda url, workers=None: sections.start_section_process(url, workers=int(sys.argv[4]))
        )
steps.append(("start-up", c0, t0))
try:
    app(["demo", "--out", sys.argv[1], "--subjects", sys.argv[2]], standalone_mode=False)
finally:
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    parts = {
        name: {"cpu": c2 - c1, "wall": w2 - w1}
        for (name, c1, w1), (_, c2, w2) in zip(steps, steps[1:])
    }
    print(json.dumps({"peak_mib": peak_kib / 1024, "steps": parts}))
"""
ANCHOR = (
    "import numpy as np; a = np.random.default_rng(0).random((300, 300)); "
    "[a @ a for _ in range(200)]"
)
SHORT = {
    "start-up": "start",
    "create study": "create",
    "simulate cohort": "simulate",
    "load database": "load",
    "quantify chest CT": "CT",
    "analyse": "analyse",
    "write report": "report",
}


def child_env(cache: Path, source: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["CELLTRIAL_CACHE_DIR"] = str(cache)
    if source is not None:
        env["PYTHONPATH"] = str(source / "src")
    return env


def run(argv: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """CPU seconds (the process and its workers), wall seconds and the output of one child."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", *argv], capture_output=True, text=True, check=True, env=env
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall, done.stdout


def run_demo(
    size: int,
    cache: Path,
    workers: str,
    source: Path | None = None,
    report_workers: str = "default",
) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "study"
        argv = [CHILD, str(out), str(size), workers, report_workers]
        cpu, wall, stdout = run(argv, child_env(cache, source))
        figures = json.loads(stdout.strip().splitlines()[-1])
        figures.update(cpu=cpu, wall=wall)
        figures["report_kib"] = (out / "report.html").stat().st_size / 1024
        return figures


def show(label: str, f: dict) -> None:
    steps = "  ".join(
        f"{SHORT.get(name, name)} {part['cpu']:.2f}" for name, part in f["steps"].items()
    )
    report = f["steps"].get("write report")
    report_wall = f"  (report wall {report['wall']:.2f})" if report else ""
    print(
        f"{label:<40}{f['cpu']:>7.2f}{f['wall']:>7.2f}{f['peak_mib']:>7.0f}"
        f"{f['report_kib']:>8.0f}   {steps}{report_wall}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5])
    parser.add_argument("--before", type=Path, help="an earlier checkout to compare with")
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"{'':<40}{'CPU s':>7}{'wall s':>7}{'MiB':>7}{'rep KiB':>8}   CPU s by step "
        "(start-up = imports before the demo starts)"
    )
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as cache_root:
            cache = Path(cache_root)
            show(f"{size} subjects, empty CT cache", run_demo(size, cache / "a", "default"))
            show(f"{size} subjects, empty CT cache, workers=1", run_demo(size, cache / "b", "1"))
            show(f"{size} subjects, CT cache filled", run_demo(size, cache / "a", "default"))
            show(
                f"{size} subjects, filled, report serial",
                run_demo(size, cache / "a", "default", report_workers="1"),
            )
            if args.before is not None:
                show(
                    f"before: {size} subjects, CT cache filled",
                    run_demo(size, cache / "a", "default", args.before.resolve()),
                )
        cpu, wall, _ = run([ANCHOR], child_env(Path(tempfile.gettempdir()), None))
        print(f"{'anchor: 200 NumPy 300×300 products':<40}{cpu:>7.2f}{wall:>7.2f}")
    print(f"load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
