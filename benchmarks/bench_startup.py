"""Start-up of the command line (issue 26): `celltrial --help` and `celltrial status DIR`, each
beside an anchor measured in the same run, CPU seconds (user + system of the child process) and
wall seconds, the median of --repeat runs (target and anchor runs interleaved, so that load falls
on both alike).

Run: python benchmarks/bench_startup.py [--repeat 7] [--before DIR]

``--before DIR``: a checkout of an earlier celltrial (``git worktree add DIR <commit>``) whose
``DIR/src`` the same commands also run from, interleaved, so that before and after are measured
under the same load.

Targets: `--help` ≤ 0.25 s CPU (anchor: importing typer and rich alone, ~0.12 s);
`status DIR` of the 5-subject demo ≤ 0.8 s CPU (anchors: importing pandas, SQLAlchemy Core,
pydantic and PyYAML, the libraries status needs; the same with SQLAlchemy's ORM, which status
no longer imports; and `import celltrial.cli`).

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
        ["import pandas, sqlalchemy, pydantic, yaml"],
    ),
    "orm": (
        "anchor: the same and sqlalchemy.orm",
        ["import pandas, sqlalchemy.orm, pydantic, yaml"],
    ),
    "cli": ("anchor: import celltrial.cli", ["import celltrial.cli"]),
    "python": ("anchor: python -c pass", ["pass"]),
}
PAIRS = (("help", "typer+rich"), ("status", "libs"), ("status", "orm"), ("status", "cli"))
TARGETS = {"help": 0.25, "status": 0.8}


def child_env(source: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["COLUMNS"] = "100"
    if source is not None:
        env["PYTHONPATH"] = str(source / "src")
    return env


def run_once(argv: list[str], source: Path | None = None) -> tuple[float, float]:
    """CPU seconds (user + system) and wall seconds of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", *argv], check=True, capture_output=True, env=child_env(source)
    )
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
    parser.add_argument("--before", type=Path, help="an earlier checkout to compare with")
    args = parser.parse_args()
    sources: dict[str, Path | None] = {"": None}
    if args.before is not None:
        sources["before: "] = args.before.resolve()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as tmp:
        study = make_demo(Path(tmp))
        commands = {
            key: [a.replace("{dir}", str(study)) for a in argv] for key, (_, argv) in ROWS.items()
        }
        runs = [(prefix, key) for prefix in sources for key in ROWS]
        for prefix, key in runs:  # warm-up: bytecode caches written
            run_once(commands[key], sources[prefix])
        cpu: dict[str, list[float]] = {prefix + key: [] for prefix, key in runs}
        wall: dict[str, list[float]] = {prefix + key: [] for prefix, key in runs}
        for _ in range(args.repeat):
            for prefix, key in runs:
                c, w = run_once(commands[key], sources[prefix])
                cpu[prefix + key].append(c)
                wall[prefix + key].append(w)
    print(f"load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"median of {args.repeat} runs each, seconds")
    print(f"{'':<52}{'CPU':>7}{'wall':>7}  target (CPU)")
    for target, anchor in PAIRS:
        for prefix in sources:
            for key in (target, anchor):
                if prefix and key != target:
                    continue  # the anchors do not depend on celltrial's code
                label = prefix + ROWS[key][0]
                goal = f"  ≤ {TARGETS[key]:.2f}" if key == target and not prefix else ""
                print(
                    f"{label:<52}{statistics.median(cpu[prefix + key]):>7.3f}"
                    f"{statistics.median(wall[prefix + key]):>7.3f}{goal}"
                )
        print()
    print(
        f"{ROWS['python'][0]:<52}{statistics.median(cpu['python']):>7.3f}"
        f"{statistics.median(wall['python']):>7.3f}"
    )


if __name__ == "__main__":
    main()
