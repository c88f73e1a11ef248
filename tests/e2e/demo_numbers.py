"""Every number the 5-subject demo computes, flattened to ``{path: number}``, to prove that speed
work changes no result (issue 26).

The numbers are those of the result objects the report is made from, not of the HTML (whose
layout may change): the subjects, infusions and CT results as stored, the study overview, the
safety and efficacy analyses, and an external comparison of the demo's treated subjects with a
seeded simulated external cohort (the demo itself has none). Texts are left out (wording may
change); times count as seconds since 1970.

Record the reference (only when a result is meant to change, saying why in the commit)::

    python -m tests.e2e.demo_numbers tests/e2e/data/demo5_numbers.json.gz
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
import re
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tests.external.simulated_cohort import simulated_external_cohort

#: The analyses' "as of" time: a fixed instant long after the demo's simulated study.
TODAY = pd.Timestamp("2026-01-01T00:00:00Z")
#: The reference recorded before the speed work of issue 26.
REFERENCE = Path(__file__).parent / "data" / "demo5_numbers.json.gz"


def flatten_numbers(value: Any, path: str = "", out: dict[str, float | None] | None = None) -> dict:
    """``{path: number}`` for every number inside ``value`` (dataclasses, mappings, sequences,
    frames, arrays); NaN and missing times are None; texts are skipped."""
    out = {} if out is None else out
    if value is None or isinstance(value, str | bytes):
        return out
    if isinstance(value, bool | np.bool_):
        out[path] = float(bool(value))
    elif isinstance(value, int | float | np.integer | np.floating):
        number = float(value)
        out[path] = None if math.isnan(number) else number
    elif isinstance(value, pd.Timestamp):
        out[path] = None if pd.isna(value) else value.timestamp()
    elif isinstance(value, pd.Timedelta):
        out[path] = None if pd.isna(value) else value.total_seconds()
    elif value is pd.NaT or value is pd.NA:
        out[path] = None
    elif isinstance(value, pd.DataFrame):
        frame = value if isinstance(value.index, pd.RangeIndex) else value.reset_index()
        for column in frame.columns:
            for row, cell in enumerate(frame[column].tolist()):
                flatten_numbers(cell, f"{path}[{row}].{column}", out)
    elif isinstance(value, pd.Series):
        flatten_numbers(value.to_frame(), path, out)
    elif isinstance(value, np.ndarray):
        for index, cell in enumerate(value.tolist()):
            flatten_numbers(cell, f"{path}[{index}]", out)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            if field.compare:
                flatten_numbers(getattr(value, field.name), f"{path}.{field.name}", out)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            flatten_numbers(item, f"{path}.{key}", out)
    elif isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        for index, item in enumerate(items):
            flatten_numbers(item, f"{path}[{index}]", out)
    return out


def external_stand_in(seed: int = 7, n: int = 300) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A seeded simulated external cohort (admission, outcome, four markers a few times each)."""
    return simulated_external_cohort(n, seed, start=pd.Timestamp("2020-02-01T00:00:00Z"))


def collect_demo_numbers(directory: str | Path) -> dict[str, float | None]:
    """Every number of the demo study in ``directory`` (see the module's docstring)."""
    from celltrial.efficacy.analysis import summarize_efficacy
    from celltrial.external.analysis import summarize_external
    from celltrial.external.spec import load_target_trial
    from celltrial.overview import summarize_study
    from celltrial.safety.analysis import analyse_safety
    from celltrial.store.frames import read_ct_results
    from celltrial.study import open_study, read_study_frames

    study = open_study(directory, read_only=True)
    try:
        frames = read_study_frames(study)
        ext_subjects, ext_observations = external_stand_in()
        results = {
            "frames": {
                "subjects": frames.subjects,
                "infusions": frames.infusions,
                "imaging": frames.imaging,
                "ct_results": read_ct_results(study.engine, study.study_id),
            },
            "overview": summarize_study(study.protocol, frames, today=TODAY),
            "safety": analyse_safety(study.protocol, frames),
            "efficacy": summarize_efficacy(frames, study.protocol, today=TODAY),
            "external": summarize_external(
                frames.subjects,
                frames.observations,
                ext_subjects,
                ext_observations,
                spec=load_target_trial(),
                cohort="stand-in",
            ),
        }
    finally:
        study.engine.dispose()
    return flatten_numbers(results)


#: Numbers compared more loosely, and why. The mixed models' variance components: statsmodels'
#: optimiser stopped ~1e-7 (relative) short of the REML optimum that the exact fit of
#: ``celltrial.efficacy.reml`` reaches (commit 0f5e43e, tests/efficacy/test_results_unchanged.py);
#: the estimates, standard errors, intervals and p-values built on them still agree to 1e-8.
LOOSER = {re.compile(r"^\.efficacy\.mixed\.[^.]+\.(subject|residual)_variance$"): 1e-6}


def compare_numbers(
    reference: Mapping[str, float | None], current: Mapping[str, float | None], *, tol: float = 1e-8
) -> list[str]:
    """The differences (at most 20 listed): a number missing, or apart by more than ``tol`` ×
    max(1, |reference|) (:data:`LOOSER` for a few). Numbers only in ``current`` (new results) are
    not differences."""
    problems = []
    for path, expected in reference.items():
        if path not in current:
            problems.append(f"{path}: missing (was {expected})")
            continue
        got = current[path]
        if expected is None or got is None:
            if expected is not got:
                problems.append(f"{path}: {got} (was {expected})")
        elif abs(got - expected) > _tolerance(path, tol) * max(1.0, abs(expected)):
            problems.append(f"{path}: {got!r} (was {expected!r})")
    return problems[:20] + ([f"… {len(problems) - 20} more"] if len(problems) > 20 else [])


def _tolerance(path: str, tol: float) -> float:
    return next((loose for pattern, loose in LOOSER.items() if pattern.match(path)), tol)


def read_reference(path: Path = REFERENCE) -> dict[str, float | None]:
    """The recorded numbers."""
    return json.loads(gzip.decompress(path.read_bytes()))["numbers"]


def main() -> None:
    """Run ``celltrial demo`` (5 subjects) in a temporary folder and write its numbers."""
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else REFERENCE
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "demo"
        subprocess.run(
            [sys.executable, "-m", "celltrial.cli", "demo", "--out", str(out)], check=True
        )
        numbers = collect_demo_numbers(out)
    revision = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    target.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(
        {"recorded_at_commit": revision, "numbers": numbers}, indent=0, sort_keys=True
    )
    target.write_bytes(gzip.compress(text.encode("utf-8") + b"\n", mtime=0))
    print(f"{len(numbers)} numbers written to {target}")


if __name__ == "__main__":
    main()
