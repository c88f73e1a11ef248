"""CPU of the web app's refresh of the analyses after a write (what a write holds the server's
interpreter for before it is acknowledged), per kind of write, beside an earlier checkout.

Run: python benchmarks/bench_refresh.py [--subjects 20] [--new-subjects 8] [--repeat 15]
     [--rounds 2] [--before DIR]

Set-up (not timed): the study of ``bench_web.py`` (a simulated cohort, subjects newly enrolled
without infusions, a released lot), in SQLite in a temporary folder (the refresh is the same
Python work on either database; ``bench_web.py`` runs on PostgreSQL). Each checkout (this one,
and ``--before DIR``, another checkout's ``src``) runs in its own process on its own copy of the
study, the checkouts in turn, ``--rounds`` times.

In each process the analyses are made once, then for each kind of change — an adverse event added,
an infusion's volume edited, the first infusion of a new subject (its day 0 moves), that subject's
second infusion, a simulated subject's first infusion two hours later (its day 0 moves; it has
observations), the minute moved without a write (what a reader finds each minute) — the change is
made once and the refresh (:func:`~celltrial.services.monitoring.refresh_after_write`, the
dashboard included) is timed ``--repeat`` times from the same state before it (the analyses' cache
set back to it), in CPU milliseconds of the thread. The clock of the data revision is held at one
minute (moved on purpose for the last kind). Prints the median and the fastest per kind and
checkout, a same-run anchor (fixed pure-Python workload) and the load average.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KINDS = (
    "adverse event added",
    "infusion edited",
    "first infusion (day 0)",
    "second infusion",
    "first start edited",
    "new minute",
)


def anchor_ms() -> float:
    """CPU ms of a fixed pure-Python workload (SHA-256 chained 200,000 times)."""
    cpu = time.process_time()
    digest = b"celltrial"
    for _ in range(200_000):
        digest = hashlib.sha256(digest).digest()
    return 1000 * (time.process_time() - cpu)


def child(study_dir: Path, url: str, plan: dict, repeat: int) -> dict[str, list[float]]:
    """In the checkout's process: the refresh's CPU ms per kind of change."""
    from datetime import UTC, datetime, timedelta

    from celltrial.services import monitoring
    from celltrial.services.adverse_events import AdverseEventEntry, record_event
    from celltrial.services.infusions import (
        InfusionEntry,
        edit_infusion,
        entry_of,
        read_infusion,
        record_infusion,
    )
    from celltrial.study import open_study

    study = open_study(study_dir, db_url=url)
    minute = ["2026-12-07T10:00"]
    revision = monitoring.data_revision
    monitoring.data_revision = lambda s: (revision(s)[0], minute[0])
    now = datetime.now(UTC).replace(microsecond=0)
    living = plan["new_subjects"][0]

    def add_event() -> None:
        entry = AdverseEventEntry(
            term="Headache",
            onset_at=now - timedelta(hours=5),
            grade=1,
            relatedness="unlikely related",
            outcome="recovering",
        )
        record_event(study, living, entry, user="bench")

    def edit() -> None:
        _code, infusion_id = plan["infusions"][0]
        record = read_infusion(study, infusion_id)
        values = {k: v for k, v in entry_of(record).items() if k in InfusionEntry.__annotations__}
        values["volume_ml"] = (values.get("volume_ml") or 100.0) + 5.0
        if not values.get("completed") and not values.get("stop_reason"):
            values["stop_reason"] = "stopped"
        edit_infusion(
            study,
            infusion_id,
            InfusionEntry(**values),
            version=record.version,
            reason="volume corrected from the infusion chart",
            user="bench",
        )

    def infuse(number: int, days: int) -> None:
        code = plan["new_subjects"][1]
        started = now - timedelta(days=days)
        entry = InfusionEntry(
            lot_code=plan["lot"],
            vial_id=f"V-{code}-{number}",
            started_at=started,
            ended_at=started + timedelta(minutes=40),
            cells_given=3.0e7,
            volume_ml=100,
            label_subject_code=code,
        )
        record_infusion(study, code, entry, user="bench")

    def first_infusion() -> None:
        infuse(1, 6)

    def second_infusion() -> None:
        infuse(2, 3)

    def first_start_edited() -> None:
        """The first infusion of a simulated subject two hours later (its day 0 moves)."""
        _code, infusion_id = plan["infusions"][0]
        record = read_infusion(study, infusion_id)
        values = {k: v for k, v in entry_of(record).items() if k in InfusionEntry.__annotations__}
        for key in ("started_at", "ended_at"):
            if values.get(key) is not None:
                values[key] += timedelta(hours=2)
        if not values.get("completed") and not values.get("stop_reason"):
            values["stop_reason"] = "stopped"
        edit_infusion(
            study,
            infusion_id,
            InfusionEntry(**values | {"confirm_warnings": True}),
            version=record.version,
            reason="time corrected from the infusion chart",
            user="bench",
        )

    def next_minute() -> None:
        minute[0] = "2026-12-07T10:01"

    changes = dict(
        zip(
            KINDS,
            (add_event, edit, first_infusion, second_infusion, first_start_edited, next_minute),
            strict=True,
        )
    )
    monitoring.refresh_after_write(study)
    cpu: dict[str, list[float]] = {}
    for kind, change in changes.items():
        before = monitoring._cache[study.url]
        change()
        cpu[kind] = []
        for _ in range(repeat):
            monitoring._cache[study.url] = before
            monitoring._dashboards.clear()
            started = time.thread_time()
            monitoring.refresh_after_write(study)
            cpu[kind].append(1000 * (time.thread_time() - started))
    study.engine.dispose()
    return cpu


def run_checkout(source: Path | None, study: Path, url: str, plan: dict, args) -> dict:
    env = dict(os.environ)
    if source is not None:
        env["PYTHONPATH"] = str(source)
    command = [sys.executable, __file__, "--child", str(study), url, str(args.repeat)]
    done = subprocess.run(
        command, env=env, input=json.dumps(plan), capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        plan = json.loads(sys.stdin.read())
        print(json.dumps(child(Path(sys.argv[2]), sys.argv[3], plan, int(sys.argv[4]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=20)
    parser.add_argument("--new-subjects", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--before", type=Path, help="another checkout, run on a copy of the study")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_web import LOT, build_study, load_average

    checkouts: list[tuple[str, Path | None]] = [("now", None)]
    if args.before is not None:
        checkouts.append(("before", args.before.resolve() / "src"))
    with tempfile.TemporaryDirectory(prefix="bench_refresh_") as tmp:
        folder = Path(tmp)
        url = f"sqlite:///{folder / 'template' / 'study.db'}"
        (folder / "template").mkdir()
        plan = build_study(
            folder / "template" / "study",
            url,
            subjects=args.subjects,
            new_subjects=args.new_subjects,
            seed=args.seed,
        )
        plan["lot"] = LOT
        print(
            f"study: {args.subjects} simulated subjects + {args.new_subjects} new (SQLite); "
            f"{args.repeat} refreshes per kind, {args.rounds} round(s), checkouts in turn"
        )
        print(f"load average before: {load_average()}")
        anchors = [anchor_ms()]
        results: dict[str, dict[str, list[float]]] = {
            label: {k: [] for k in KINDS} for label, _ in checkouts
        }
        for round_number in range(args.rounds):
            for label, source in checkouts:
                copy = folder / f"{label}-{round_number}"
                shutil.copytree(folder / "template", copy)
                copy_url = f"sqlite:///{copy / 'study.db'}"
                for kind, values in run_checkout(
                    source, copy / "study", copy_url, plan, args
                ).items():
                    results[label][kind].extend(values)
                shutil.rmtree(copy)
        anchors.append(anchor_ms())
        print(f"load average after:  {load_average()}")
        print(f"anchor (fixed workload, same run): {anchors[0]:.0f} / {anchors[1]:.0f} ms CPU")
        labels = [label for label, _ in checkouts]
        header = "".join(f"{label + ' ' + what:>16}" for label in labels for what in ("p50", "min"))
        print(f"{'refresh CPU ms per change':<28}{header}")
        for kind in KINDS:
            cells = "".join(
                f"{statistics.median(results[label][kind]):>13.1f} ms"
                f"{min(results[label][kind]):>13.1f} ms"
                for label in labels
            )
            print(f"{kind:<28}{cells}")


if __name__ == "__main__":
    main()
