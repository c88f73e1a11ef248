"""SDTM export of a large study: rows per second and peak memory (RSS), beside an anchor measured
in the same run: the same observations read at once (store.frames.read_observations) and written
with pandas ``to_csv``.

    python benchmarks/bench_export.py [--subjects 590] [--format csv|dataset-json]

Each measure runs in a fresh process, so that its peak RSS is its own (ru_maxrss is a
process-wide high-water mark).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def build(folder: Path, n_subjects: int) -> int:
    from celltrial.cohort import simulate
    from celltrial.protocol import DEFAULT_PROTOCOL, load_builtin_protocol
    from celltrial.store.database import study_session
    from celltrial.store.loading import load_simulated_cohort
    from celltrial.study import init_study

    protocol = load_builtin_protocol(DEFAULT_PROTOCOL)
    cohort = simulate(protocol, n_subjects, seed=2020)
    study = init_study(folder, user="bench")
    with study_session(study.engine, user="bench", reason="benchmark") as session:
        load_simulated_cohort(session, study.study_id, cohort)
    return len(cohort.observations)


def measure(kind: str, folder: Path, out: Path, fmt: str) -> None:
    """Run in a child process: print seconds, peak RSS before and after."""
    from celltrial.study import open_study

    study = open_study(folder, read_only=True)
    if kind == "export":
        import celltrial.efficacy.analysis  # noqa: F401  (imports are not the export's memory)
        from celltrial.export import export_sdtm
    else:
        import pandas as pd  # noqa: F401

        from celltrial.store import frames
    before = _rss_mb()
    start = time.perf_counter()
    if kind == "export":
        export_sdtm(study, out, fmt=fmt)
    else:
        infusions = frames.read_infusions(study.engine, study.study_id)
        observations = frames.read_observations(
            study.engine,
            study.study_id,
            zone=study.protocol.study.zone,
            first_infusion=frames.first_infusions(infusions),
        )
        out.mkdir(parents=True, exist_ok=True)
        observations.to_csv(out / "observations.csv", index=False)
    print(f"{time.perf_counter() - start:.3f} {before:.1f} {_rss_mb():.1f}")


def _child(kind: str, folder: Path, out: str, fmt: str) -> str:
    """Run one step in a fresh process (this one stays small: a forked process starts with its
    parent's peak RSS); its standard output."""
    command = [sys.executable, __file__, "--format", fmt, "--child", kind, str(folder), out]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=590)
    parser.add_argument("--format", default="csv", choices=["csv", "dataset-json"])
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, folder, out = args.child
        if kind == "build":
            print(build(Path(folder), int(out)))
        else:
            measure(kind, Path(folder), Path(out), args.format)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "study"
        start = time.perf_counter()
        rows = int(_child("build", folder, str(args.subjects), args.format))
        print(
            f"study: {args.subjects} subjects, {rows} observations, built in "
            f"{time.perf_counter() - start:.1f} s"
        )
        for kind, label in (
            ("anchor", "anchor: read_observations + pandas to_csv"),
            ("export", f"celltrial export (SDTM DM/EX/AE/LB/VS, {args.format})"),
        ):
            output = _child(kind, folder, str(Path(tmp) / kind), args.format)
            seconds, before, after = map(float, output.split())
            print(
                f"{label}: {seconds:.1f} s ({rows / seconds:,.0f} rows/s), peak RSS "
                f"{after:.0f} MB ({after - before:+.0f} MB over the {before:.0f} MB before it, "
                f"{(after - before) * 1024 * 1024 / rows:.0f} bytes/row)"
            )


if __name__ == "__main__":
    main()
