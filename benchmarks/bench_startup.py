"""Start-up of the command line (issue 26): `celltrial --help` and `celltrial status DIR`, each
beside an anchor measured in the same run, CPU seconds (user + system of the child process) and
wall seconds, the median of --repeat runs (target and anchor runs interleaved, so that load falls
on both alike).

Run: python benchmarks/bench_startup.py [--repeat 7]

Targets: `--help` ≤ 0.25 s CPU (anchor: importing typer and rich alone, ~0.12 s);
`status DIR` of the 5-subject demo ≤ 0.8 s CPU (anchors: importing pandas, SQLAlchemy, pydantic
and PyYAML, the libraries status needs; and `import celltrial.cli`).

Each command runs in a fresh Python process as a user runs it, with bytecode caches written and
used (as after `pip install`; PYTHONDONTWRITEBYTECODE is dropped for the children), after one
warm-up run. The load average is printed before and after.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = "from celltrial.cli import app; app(prog_name='celltrial')"
ROWS = {
    "help": ("celltrial --help", [CLI, "--help"]),
    "typer+rich": (
        "anchor: import typer + rich",
        ["import typer, typer.main, rich.console, rich.progress, rich.table, rich.text"],
    ),
    "status": ("celltrial status DIR", [CLI, "status", "{dir}"]),
    "libs": (
        "anchor: import pandas, sqlalchemy, pydantic, yaml",
        ["import pandas, sqlalchemy.orm, pydantic, yaml"],
    ),
    "cli": ("anchor: import celltrial.cli", ["import celltrial.cli"]),
    "python": ("anchor: python -c pass", ["pass"]),
}
PAIRS = (("help", "typer+rich"), ("status", "libs"), ("status", "cli"))
TARGETS = {"help": 0.25, "status": 0.8}


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["COLUMNS"] = "100"
    return env


def run_once(argv: list[str]) -> tuple[float, float]:
    """CPU seconds (user + system) and wall seconds of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", *argv], check=True, capture_output=True, env=child_env())
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def make_demo(folder: Path) -> Path:
    out = folder / "demo"
    subprocess.run(
        [sys.executable, "-c", CLI, "demo", "--out", str(out)],
        check=True,
        capture_output=True,
        env=child_env(),
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as tmp:
        study = make_demo(Path(tmp))
        commands = {
            key: [a.replace("{dir}", str(study)) for a in argv] for key, (_, argv) in ROWS.items()
        }
        for argv in commands.values():  # warm-up: bytecode caches written
            run_once(argv)
        cpu: dict[str, list[float]] = {key: [] for key in ROWS}
        wall: dict[str, list[float]] = {key: [] for key in ROWS}
        for _ in range(args.repeat):
            for key, argv in commands.items():
                c, w = run_once(argv)
                cpu[key].append(c)
                wall[key].append(w)
    print(f"load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"median of {args.repeat} runs each, seconds")
    print(f"{'':<52}{'CPU':>7}{'wall':>7}  target (CPU)")
    for target, anchor in PAIRS:
        for key in (target, anchor):
            label = ROWS[key][0]
            goal = f"  ≤ {TARGETS[key]:.2f}" if key == target and key in TARGETS else ""
            print(
                f"{label:<52}{statistics.median(cpu[key]):>7.3f}"
                f"{statistics.median(wall[key]):>7.3f}{goal}"
            )
        print()
    print(
        f"{ROWS['python'][0]:<52}{statistics.median(cpu['python']):>7.3f}"
        f"{statistics.median(wall['python']):>7.3f}"
    )


if __name__ == "__main__":
    main()
