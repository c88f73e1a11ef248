"""Benchmark of celltrial.efficacy: every summary, paired test and mixed model on a large study.

8 markers × 500 subjects × 30 time points (seeded numpy data, ~5 % missing draws, some
off-schedule and repeated draws). Prints seconds per stage, the total and peak memory.
Target: total under 10 s on 2 cores.

    python benchmarks/bench_efficacy.py [--subjects 500] [--seed 20200210]
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from celltrial.efficacy import (
    derive_baseline,
    derive_change_from_baseline,
    derive_nominal_visits,
    summarize_auc,
    summarize_mixed_model,
    summarize_paired_changes,
    summarize_time_to_normal,
    summarize_visits,
)

MARKERS = {  # code: (baseline geometric mean, daily log trend)
    "DDIMER": (5.0, -0.06),
    "CRP": (80.0, -0.12),
    "IL6": (40.0, -0.08),
    "LYM": (0.6, 0.03),
    "NEUT": (8.0, -0.03),
    "CD4": (250.0, 0.04),
    "CD19": (80.0, 0.02),
    "CD1656": (90.0, 0.03),
}
VISIT_DAYS = [-1, *range(1, 30)]  # 30 nominal time points


def make_study(subjects: int, seed: int) -> tuple[pd.DataFrame, pd.Series, pd.DataFrame]:
    """Observation frame, first-infusion times and the visit table."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"S{i:04d}" for i in range(subjects)])
    start = pd.Timestamp("2020-02-01 09:00", tz="UTC")
    first = start + pd.to_timedelta(rng.integers(0, 60, subjects), unit="D")
    first_infusion = pd.Series(first, index=ids)

    days = np.array(VISIT_DAYS, dtype=float)
    n_days = days.size
    frames = []
    for code, (centre, trend) in MARKERS.items():
        subject_level = rng.normal(0.0, 0.5, subjects)[:, None]
        subject_slope = rng.normal(0.0, 0.02, subjects)[:, None]
        shift = rng.choice([-1, 0, 0, 0, 0, 0, 0, 0, 1], size=(subjects, n_days))
        shift[:, 0] = 0  # baseline draw on day −1
        actual = days[None, :] + shift
        log_value = (
            np.log(centre)
            + subject_level
            + (trend + subject_slope) * np.maximum(actual, 0)
            + rng.normal(0.0, 0.25, (subjects, n_days))
        )
        value = np.exp(log_value)
        value[rng.random((subjects, n_days)) < 0.05] = np.nan
        hours = rng.integers(6, 18, (subjects, n_days))
        time = first.tz_convert(None).to_numpy()[:, None] + (
            (actual * 24 + hours - 9).astype("timedelta64[h]")
        )
        frames.append(
            pd.DataFrame(
                {
                    "subject_id": np.repeat(ids, n_days),
                    "time": pd.DatetimeIndex(time.ravel()).tz_localize("UTC"),
                    "study_day": actual.ravel(),
                    "test": code,
                    "value": value.ravel(),
                    "ref_low": np.nan,
                    "ref_high": np.nan,
                }
            )
        )
    observations = pd.concat(frames, ignore_index=True)
    # repeated draws: 2 % of rows drawn again 3 hours later
    repeats = observations.sample(frac=0.02, random_state=seed).copy()
    repeats["time"] += pd.Timedelta(hours=3)
    observations = pd.concat([observations, repeats], ignore_index=True)
    visits = pd.DataFrame(
        {
            "visit": [f"day {d}" for d in VISIT_DAYS],
            "day": VISIT_DAYS,
            "window_before": [1] + [0] * (n_days - 1),
            "window_after": [0] * n_days,
        }
    )
    visits.loc[visits["day"] >= 7, ["window_before", "window_after"]] = 0
    return observations, first_infusion, visits


def timed(label: str, results: dict[str, float], action: Callable[[], object]) -> object:
    start = time.perf_counter()
    value = action()
    results[label] = time.perf_counter() - start
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=500)
    parser.add_argument("--seed", type=int, default=20200210)
    args = parser.parse_args()

    observations, first_infusion, visits = make_study(args.subjects, args.seed)
    print(
        f"data: {len(MARKERS)} markers × {args.subjects} subjects × {len(VISIT_DAYS)} time points"
        f" = {len(observations):,} rows (incl. repeats); cpus available: {os.cpu_count()}"
    )
    seconds: dict[str, float] = {}
    total_start = time.perf_counter()
    frame = timed(
        "derive_nominal_visits", seconds, lambda: derive_nominal_visits(observations, visits)
    )
    frame = timed(
        "derive_baseline + change",
        seconds,
        lambda: derive_change_from_baseline(
            derive_baseline(frame, first_infusion=first_infusion, window_days=2)
        ),
    )
    timed(
        "summarize_visits (value, fold change)",
        seconds,
        lambda: (summarize_visits(frame), summarize_visits(frame, column="fold_change")),
    )
    timed(
        "summarize_auc (days 0–28)", seconds, lambda: summarize_auc(frame, start_day=0, end_day=28)
    )
    timed("summarize_time_to_normal", seconds, lambda: summarize_time_to_normal(frame))
    paired = timed("summarize_paired_changes", seconds, lambda: summarize_paired_changes(frame))
    models = timed(
        "summarize_mixed_model × 8",
        seconds,
        lambda: [summarize_mixed_model(frame, test=code) for code in MARKERS],
    )
    total = time.perf_counter() - total_start

    width = max(map(len, seconds))
    for label, value in seconds.items():
        print(f"  {label:<{width}}  {value:7.3f} s")
    print(f"  {'total':<{width}}  {total:7.3f} s   (target < 10 s)")
    n_tests = paired.n_tests  # type: ignore[attr-defined]
    fitted = sum(m.fitted and m.converged for m in models)  # type: ignore[attr-defined]
    print(f"paired comparisons: {n_tests}; mixed models fitted and converged: {fitted}/8")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory: {peak:.0f} MB")


if __name__ == "__main__":
    main()
