"""Benchmark of celltrial.efficacy: every summary, paired test and mixed model on a large study.

8 markers × 500 subjects × 30 time points (seeded numpy data, ~5 % missing draws, some
off-schedule and repeated draws). Prints CPU and wall seconds per stage, the total and peak
memory, and beside them an anchor measured in the same run: the same 8 mixed models fitted with
plain pandas + statsmodels ``MixedLM`` (REML, the gradient tolerance celltrial used), and the
largest difference between the two in every reported number. Target (issue 26): total < 5 s.

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


def timed(
    label: str, results: dict[str, tuple[float, float]], action: Callable[[], object]
) -> object:
    """Run ``action``; record (CPU seconds of this process, wall seconds) under ``label``."""
    cpu, wall = time.process_time(), time.perf_counter()
    value = action()
    results[label] = (time.process_time() - cpu, time.perf_counter() - wall)
    return value


def plain_statsmodels(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Anchor: each marker's model with pandas + statsmodels alone, as celltrial fitted it
    before (same rows, visit dummies vs the earliest visit, REML, gtol 1e-8)."""
    from scipy import stats
    from statsmodels.regression.mixed_linear_model import MixedLM

    out = {}
    for code in MARKERS:
        rows = frame[(frame["test"] == code) & frame["visit"].notna() & frame["value"].notna()]
        rows = rows[~rows["unscheduled"].fillna(False).astype(bool)].reset_index(drop=True)
        order = rows.groupby("visit")["visit_day"].first().sort_values(kind="stable").index
        others = list(order[1:])
        exog = np.column_stack(
            [np.ones(len(rows))] + [(rows["visit"] == v).to_numpy(float) for v in others]
        )
        groups = pd.factorize(rows["subject_id"])[0]
        fit = MixedLM(np.log(rows["value"].to_numpy(float)), exog, groups=groups).fit(
            reml=True, gtol=1e-8
        )
        estimate, se = np.asarray(fit.fe_params)[1:], np.asarray(fit.bse_fe)[1:]
        out[code] = pd.DataFrame(
            {
                "visit": others,
                "estimate": estimate,
                "se": se,
                "p_value": 2 * stats.t.sf(np.abs(estimate / se), 1.0e9),
            }
        )
    return out


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
    seconds: dict[str, tuple[float, float]] = {}
    total_cpu, total_start = time.process_time(), time.perf_counter()
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
    total = (time.process_time() - total_cpu, time.perf_counter() - total_start)
    anchor: dict[str, tuple[float, float]] = {}
    reference = timed("anchor", anchor, lambda: plain_statsmodels(frame))

    width = max(map(len, seconds)) + 2
    print(f"  {'stage':<{width}}  {'CPU':>8}  {'wall':>8}")
    for label, (cpu, wall) in seconds.items():
        print(f"  {label:<{width}}  {cpu:7.3f}s  {wall:7.3f}s")
    print(f"  {'total':<{width}}  {total[0]:7.3f}s  {total[1]:7.3f}s   (target < 5 s)")
    cpu, wall = anchor["anchor"]
    print(
        f"  {'anchor: same 8 models, plain':<{width}}  {cpu:7.3f}s  {wall:7.3f}s   "
        "(pandas + statsmodels MixedLM alone)"
    )
    n_tests = paired.n_tests  # type: ignore[attr-defined]
    fitted = sum(m.fitted and m.converged for m in models)  # type: ignore[attr-defined]
    print(f"paired comparisons: {n_tests}; mixed models fitted and converged: {fitted}/8")
    worst = {"estimate": 0.0, "se": 0.0}
    for code, model in zip(MARKERS, models, strict=True):
        mine = model.summary.set_index("visit")  # type: ignore[attr-defined]
        theirs = reference[code].set_index("visit")
        for column in worst:
            diff = np.abs(mine.loc[theirs.index, column] - theirs[column]).max()
            worst[column] = max(worst[column], float(diff))
    print(
        "largest difference from the anchor's fits: "
        + ", ".join(f"{k} {v:.1e}" for k, v in worst.items())
    )
    load = os.getloadavg()
    print(f"load average during the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory: {peak:.0f} MB")


if __name__ == "__main__":
    main()
