"""Benchmark of celltrial.external: 50 treated subjects against a 100,000-patient external cohort.

The external cohort scales the real Tongji cohort (``../shared/data/labs/tongji/``): each
simulated patient copies a random Tongji patient's timeline and markers with noise (log-normal
×exp(N(0, 0.15)) on values, ±12 h on times, ±3 years of age). Without the data set a simulated
stand-in is used (log-normal markers, 1-4 draws a day, outcome tied to the markers). Treated
subjects are the demo simulation (50 subjects). Prints CPU and wall seconds per stage (specify,
eligibility, match 1:3, compare), the total and peak memory, and beside them an anchor measured in
the same run: a plain pandas/scipy pass over the same frames (landmark grid, the last baseline
value of each marker by an as-of merge, the eligibility rules, the first eligible landmark,
Mahalanobis 1:3 nearest controls within sex × age band, the day-7 fold changes and a Welch test).
Target (issue 26): the whole comparison within 2× the plain pass.

    python benchmarks/bench_external.py [--controls 100000] [--treated 50] [--seed 2020]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from celltrial.cohort import simulate
from celltrial.external.analysis import summarize_external
from celltrial.external.balance import summarize_balance
from celltrial.external.eligibility import derive_control_landmarks, derive_treated_eligibility
from celltrial.external.matching import summarize_matching
from celltrial.external.spec import load_target_trial
from celltrial.protocol import resolve_protocol

TONGJI = Path(__file__).resolve().parents[2] / "shared" / "data" / "labs" / "tongji"
TESTS = ["LYM", "NEUT", "HSCRP", "DDIMER"]
T0 = pd.Timestamp("2020-01-20T00:00:00Z")


def _tongji_frames() -> tuple[pd.DataFrame, pd.DataFrame] | None:
    path = TONGJI / "time_series_375_prerpocess_en.xlsx"
    if not path.exists():
        return None
    from celltrial.external.cohorts import read_external_frames
    from celltrial.ingest import import_file
    from celltrial.study import init_study

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = init_study(Path(tmp) / "study", user="bench")
        import_file(study, path, register=True, cohort="tongji", user="bench")
        subjects, observations = read_external_frames(study, "tongji", tests=TESTS)
        study.engine.dispose()
    return subjects, observations


def _scale(subjects, observations, n: int, rng) -> tuple[pd.DataFrame, pd.DataFrame]:
    """n patients, each a noisy copy of a random real patient."""
    source = rng.integers(0, len(subjects), n)
    real = subjects.reset_index(drop=True)
    ids = np.array([f"X{i:06d}" for i in range(n)], dtype=object)
    shift = pd.Series(pd.to_timedelta(rng.integers(0, 30 * 24, n), unit="h"))
    admitted = pd.to_datetime(real["admitted"], utc=True).iloc[source].reset_index(drop=True)
    out_subjects = pd.DataFrame(
        {
            "subject_id": ids,
            "sex": real["sex"].to_numpy()[source],
            "age": np.clip(real["age"].to_numpy(float)[source] + rng.integers(-3, 4, n), 18, 99),
            "admitted": admitted + shift,
            "discharged": pd.to_datetime(real["discharged"], utc=True)
            .iloc[source]
            .reset_index(drop=True)
            + shift,
            "died": pd.to_datetime(real["died"], utc=True).iloc[source].reset_index(drop=True)
            + shift,
        }
    )
    obs = observations[["subject_id", "time", "test", "value"]].dropna(subset=["value"])
    position = pd.Series(np.arange(len(real)), index=real["subject_id"].astype(str))
    obs = obs.assign(source=obs["subject_id"].astype(str).map(position).to_numpy())
    groups = {k: v for k, v in obs.groupby("source").indices.items()}
    pieces_index, pieces_owner = [], []
    for i, s in enumerate(source):
        rows = groups.get(s)
        if rows is not None:
            pieces_index.append(rows)
            pieces_owner.append(np.full(len(rows), i))
    index = np.concatenate(pieces_index)
    owner = np.concatenate(pieces_owner)
    taken = obs.iloc[index]
    times = pd.to_datetime(taken["time"], utc=True).reset_index(drop=True) + pd.Series(
        shift.to_numpy()[owner]
    )
    jitter = pd.Series(pd.to_timedelta(rng.integers(-12 * 60, 12 * 60, len(index)), unit="m"))
    out_obs = pd.DataFrame(
        {
            "subject_id": ids[owner],
            "time": (times + jitter).to_numpy(),
            "test": taken["test"].to_numpy(),
            "value": taken["value"].to_numpy(float) * np.exp(rng.normal(0, 0.15, len(index))),
        }
    )
    return out_subjects, out_obs


def _stand_in(n: int, rng) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Simulated external cohort when the Tongji data are absent."""
    ids = np.array([f"X{i:06d}" for i in range(n)], dtype=object)
    admitted = T0 + pd.to_timedelta(rng.integers(0, 40 * 24, n), unit="h")
    severity = rng.normal(0, 1, n)
    stay = np.clip(rng.gamma(4, 3, n), 1, 40)
    dies = rng.random(n) < 1 / (1 + np.exp(-(severity - 0.2) * 2))
    end = admitted + pd.to_timedelta(stay * 24, unit="h")
    subjects = pd.DataFrame(
        {
            "subject_id": ids,
            "sex": np.where(rng.random(n) < 0.6, "M", "F"),
            "age": np.clip(rng.normal(59, 16, n).round(), 18, 95),
            "admitted": admitted,
            "discharged": pd.Series(end).where(~dies),
            "died": pd.Series(end).where(dies),
        }
    )
    draws = rng.integers(2, 9, n)
    owner = np.repeat(np.arange(n), draws)
    when = rng.uniform(0, 1, len(owner)) * stay[owner] * 24
    rows = []
    centre = {"LYM": (0.8, -0.35), "NEUT": (6.0, 0.35), "HSCRP": (50.0, 0.9), "DDIMER": (2.0, 0.8)}
    for test, (median, slope) in centre.items():
        values = median * np.exp(slope * severity[owner] + rng.normal(0, 0.4, len(owner)))
        rows.append(
            pd.DataFrame(
                {
                    "subject_id": ids[owner],
                    "time": admitted[owner] + pd.to_timedelta(when, unit="h"),
                    "test": test,
                    "value": values,
                }
            )
        )
    return subjects, pd.concat(rows, ignore_index=True)


def _stage(name: str, timings: dict[str, tuple[float, float]], function, *args, **kwargs):
    cpu, start = time.process_time(), time.perf_counter()
    result = function(*args, **kwargs)
    timings[name] = (time.process_time() - cpu, time.perf_counter() - start)
    print(f"{name:<36}{timings[name][0]:8.2f} s CPU {timings[name][1]:8.2f} s wall", flush=True)
    return result


def plain_pass(treated, treated_obs, subjects, observations, spec) -> dict[str, float]:
    """Anchor: the comparison's data work in plain pandas/scipy, none of celltrial's checks,
    caveats, sensitivity or reporting; returns the Welch p-value of each marker's day-7 fold
    change, so that nothing is optimised away."""
    from scipy import stats
    from scipy.spatial.distance import cdist

    window = pd.Timedelta(hours=spec.time_zero.baseline_window_hours)
    step = pd.Timedelta(hours=spec.time_zero.landmark_step_hours)
    k = spec.time_zero.max_landmarks + 1
    n = len(subjects)
    end = subjects[["discharged", "died"]].min(axis=1)
    grid = pd.DataFrame(
        {
            "subject_id": np.repeat(subjects["subject_id"].astype(str).to_numpy(), k),
            "time_zero": subjects["admitted"].repeat(k).reset_index(drop=True)
            + pd.Series(np.tile(np.arange(k), n) * step),
            "end": end.repeat(k).reset_index(drop=True),
        }
    )
    grid = grid[grid["time_zero"] < grid["end"]].drop(columns="end").sort_values("time_zero")
    t_grid = pd.DataFrame(
        {"subject_id": treated["subject_id"].astype(str), "time_zero": treated["first_infusion"]}
    ).dropna()
    t_grid = t_grid.assign(time_zero=t_grid["time_zero"].astype(grid["time_zero"].dtype))
    arms = {
        "external": (grid, observations),
        "treated": (t_grid.sort_values("time_zero"), treated_obs),
    }
    frames = {}
    for arm, (left, obs) in arms.items():
        obs = obs.assign(subject_id=obs["subject_id"].astype(str))
        for marker in spec.baseline_markers:
            rows = obs[obs["test"] == spec.test_of(marker, arm)][["subject_id", "time", "value"]]
            rows = rows.dropna().sort_values("time")
            rows = rows.assign(time=rows["time"].astype(left["time_zero"].dtype))
            left = pd.merge_asof(
                left,
                rows.rename(columns={"value": marker}),
                left_on="time_zero",
                right_on="time",
                by="subject_id",
                allow_exact_matches=False,
                tolerance=window,
            ).drop(columns="time")
        frames[arm] = left
    info = subjects.assign(subject_id=subjects["subject_id"].astype(str)).set_index("subject_id")
    controls = frames["external"]
    controls = controls[
        (controls["LYM"] < 0.8) & (controls["CRP"] > 40) & controls["NEUT"].notna()
    ].drop_duplicates("subject_id")
    controls = controls.join(info[["age", "sex"]], on="subject_id")
    cases = frames["treated"].join(
        treated.assign(subject_id=treated["subject_id"].astype(str)).set_index("subject_id")[
            ["age", "sex"]
        ],
        on="subject_id",
    )
    cases = cases[(cases["LYM"] < 0.8) & (cases["CRP"] > 40) & cases["NEUT"].notna()]
    columns = ["age", "LYM", "NEUT", "CRP"]
    logged = {c: (np.log if c != "age" else np.asarray) for c in columns}
    x_c = np.column_stack([logged[c](controls[c].to_numpy(float)) for c in columns])
    x_t = np.column_stack([logged[c](cases[c].to_numpy(float)) for c in columns])
    inverse = np.linalg.inv(np.cov(np.vstack([x_c, x_t]).T))
    band = lambda a: np.digitize(a, spec.matching.age_bands)  # noqa: E731
    matched = []
    for i, (sex, age) in enumerate(zip(cases["sex"], cases["age"], strict=True)):
        pool = np.flatnonzero(
            (controls["sex"].to_numpy() == sex) & (band(controls["age"].to_numpy()) == band(age))
        )
        if len(pool):
            d = cdist(x_t[i : i + 1], x_c[pool], "mahalanobis", VI=inverse)[0]
            matched += list(controls["subject_id"].to_numpy()[pool[np.argsort(d)[:3]]])
    p_values = {}
    for marker in spec.outcomes.trajectory_markers:
        folds = []
        for ids, zero, obs, arm in (
            (cases["subject_id"], cases, treated_obs, "treated"),
            (pd.Series(matched), controls, observations, "external"),
        ):
            rows = obs[
                (obs["test"] == spec.test_of(marker, arm))
                & obs["subject_id"].astype(str).isin(set(ids))
            ]
            t0 = rows["subject_id"].astype(str).map(zero.set_index("subject_id")["time_zero"])
            days = (pd.to_datetime(rows["time"], utc=True) - pd.to_datetime(t0, utc=True)).dt
            day7 = rows[(days.total_seconds() / 86400).round().between(6, 8)]
            first7 = day7.groupby(day7["subject_id"].astype(str))["value"].first()
            base = zero.set_index("subject_id")[marker] if marker in zero else first7 * np.nan
            folds.append(np.log(first7 / base.reindex(first7.index)).dropna().to_numpy())
        p_values[marker] = float(stats.ttest_ind(*folds, equal_var=False).pvalue)
    return p_values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--controls", type=int, default=100_000)
    parser.add_argument("--treated", type=int, default=50)
    parser.add_argument("--seed", type=int, default=2020)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)

    real = _tongji_frames()
    if real is None:
        print(f"Tongji data absent ({TONGJI}): simulated stand-in external cohort")
        subjects, observations = _stand_in(args.controls, rng)
    else:
        subjects, observations = _scale(*real, args.controls, rng)
    protocol, _ = resolve_protocol(None)
    cohort = simulate(protocol, args.treated, seed=args.seed)
    first = cohort.infusions.groupby("subject_id")["start_time"].min()
    treated = cohort.subjects.assign(first_infusion=cohort.subjects["subject_id"].map(first))
    print(
        f"external cohort: {len(subjects):,} patients, {len(observations):,} values; "
        f"treated: {len(treated)} subjects, {len(cohort.observations):,} values"
    )

    timings: dict[str, tuple[float, float]] = {}
    spec = _stage("specify (load + validate)", timings, load_target_trial)
    t_frame = _stage(
        "eligibility: treated",
        timings,
        derive_treated_eligibility,
        treated,
        cohort.observations,
        spec=spec,
    )
    c_frame = _stage(
        "eligibility: external landmarks",
        timings,
        derive_control_landmarks,
        subjects,
        observations,
        spec=spec,
    )
    baseline = pd.concat([t_frame, c_frame], ignore_index=True)
    matching = _stage("match 1:3 (Mahalanobis)", timings, summarize_matching, baseline, spec=spec)
    _stage(
        "balance",
        timings,
        summarize_balance,
        baseline,
        matching,
        variables=spec.balance.variables,
    )
    result = _stage(
        "whole comparison (no sensitivity)",
        timings,
        summarize_external,
        treated,
        cohort.observations,
        subjects,
        observations,
        spec=spec,
        cohort="bench",
        sensitivity=False,
    )
    _stage(
        "anchor: plain pandas/scipy pass",
        timings,
        plain_pass,
        treated,
        cohort.observations,
        subjects,
        observations,
        spec,
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"eligible controls {result.eligibility_external.n_eligible:,} of {len(subjects):,}; "
        f"treated eligible {result.eligibility_treated.n_eligible} of {len(treated)}; matched "
        f"{result.matching.n_matched_treated} treated to {result.matching.n_controls_matched} "
        f"controls"
    )
    whole = timings["whole comparison (no sensitivity)"]
    anchor = timings["anchor: plain pandas/scipy pass"]
    print(
        f"{'whole comparison / plain pass':<36}{whole[0] / anchor[0]:8.2f} × CPU "
        f"{whole[1] / anchor[1]:6.2f} × wall   (target ≤ 2×)"
    )
    print(f"{'peak memory':<36}{peak:8.0f} MB  (target < 2048 MB)")
    load = os.getloadavg()
    print(f"load average during the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    sys.exit(0)


if __name__ == "__main__":
    main()
