"""Fuzz every reader longer than the test suite does, and print what each one did.

    python scripts/fuzz_readers.py --examples 500 [--reader fhir --reader ct-dicom] [--seed 1]

For each reader (lab files long/wide as CSV and XLSX, REDCap, FHIR, protocol YAML, the
adverse-event CSV, CT as NIfTI, DICOM and display images, and whole real files damaged), feeds
``--examples`` damaged versions of made-up files and, when ``../shared/data`` is present, of the
real data sets, and prints per reader: inputs tried, clean imports, user errors (a celltrial
error naming the file) and anything else — other exceptions with their signature, messages
without the file, partial writes, hangs — with an example input for each. Exits 1 if any input
broke the contract. The same harness as ``tests/fuzz`` (``--seed`` varies the inputs; without
it the run is the same each time).
"""

from __future__ import annotations

import argparse
import collections
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=200, help="inputs per reader and seed set")
    parser.add_argument(
        "--reader", action="append", help="only these readers (repeatable); default: all"
    )
    parser.add_argument("--seed", type=int, default=None, help="vary the inputs (default: fixed)")
    parser.add_argument("--no-real", action="store_true", help="made-up files only")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (studies)")
    args = parser.parse_args()

    from hypothesis import HealthCheck, Phase, given, seed, settings

    from tests.fuzz.harness import CLEAN, FAILURES, USER_ERROR
    from tests.fuzz.paths import SHARED_DATA
    from tests.fuzz.targets import TARGETS

    warnings.simplefilter("ignore")
    logging.getLogger("nibabel").setLevel(logging.CRITICAL)
    names = args.reader or list(TARGETS)
    unknown = sorted(set(names) - set(TARGETS))
    if unknown:
        parser.error(f"unknown reader(s) {', '.join(unknown)}; known: {', '.join(TARGETS)}")
    work = Path(tempfile.mkdtemp(prefix="celltrial-fuzz-"))
    print(f"real data: {SHARED_DATA if SHARED_DATA.is_dir() else 'absent'}; work folder: {work}")
    broken = 0
    for name in names:
        target = TARGETS[name]
        for real in (False,) if args.no_real else (False, True):
            strategy = target.strategy(real=real)
            if strategy is None:
                continue
            context = target.context(work / f"{name}-{'real' if real else 'made-up'}")
            record, tally, problems, times = _recorder(target, context, FAILURES)
            run = settings(
                max_examples=args.examples,
                derandomize=args.seed is None,
                database=None,
                deadline=None,
                phases=(Phase.generate,),
                suppress_health_check=list(HealthCheck),
            )(given(case=strategy)(record))
            if args.seed is not None:
                run = seed(args.seed)(run)
            started = time.perf_counter()
            run()
            slowest = max(times)
            seeds = ", ".join(target.seeds(real=real))
            print(
                f"\n{name} ({'real' if real else 'made-up'} seeds: {seeds}): "
                f"{sum(tally.values())} inputs in {time.perf_counter() - started:.0f} s "
                f"(slowest {slowest:.2f} s) — clean {'imports' if target.study else 'reads'} "
                f"{tally[CLEAN]}, user errors {tally[USER_ERROR]}, other "
                f"{sum(v for k, v in tally.items() if k in FAILURES)}"
            )
            for (kind, detail), (count, example) in sorted(problems.items()):
                broken += count
                print(f"  {count} × {kind}: {detail}\n      e.g. {example}")
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'no input broke the contract' if not broken else f'{broken} input(s) broke it'}")
    return 1 if broken else 0


def _recorder(target, context, failures):
    """A function that runs one case and tallies its outcome, with the tallies it fills."""
    tally: collections.Counter[str] = collections.Counter()
    problems: dict[tuple[str, str], list] = {}
    times: list[float] = [0.0]

    def record(case) -> None:
        outcome = target.attempt(case, context)
        tally[outcome.kind] += 1
        times.append(outcome.seconds)
        if outcome.kind in failures:
            key = (outcome.kind, outcome.detail[:240])
            problems.setdefault(key, [0, repr(case)[:300]])[0] += 1

    return record, tally, problems, times


if __name__ == "__main__":
    sys.exit(main())
