"""Benchmark: CTCAE lab grading of 10,000,000 observations against a naive numpy pass.

A plain script that prints figures (not a test). The data: 14 tests graded by 20 terms on the
low and high side, mixed units (creatinine, glucose, hemoglobin half in conventional units), 5 %
of rows without a normal range, baselines for the baseline-dependent terms (ALT, AST, bilirubin,
creatinine, fibrinogen). The naive pass compares every value with one fixed set of absolute
thresholds: what any grading must at least cost.

Run: ``python benchmarks/bench_grading.py [--rows N] [--repeat R]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from celltrial.safety import compute_lab_grades, derive_lab_grades, load_ctcae_criteria

# test, canonical unit, conventional unit (or None), factor canonical→conventional, LLN, ULN, mean
TESTS = (
    ("ALT", "U/L", None, 1.0, 0.0, 40.0, 45.0),
    ("AST", "U/L", None, 1.0, 0.0, 40.0, 45.0),
    ("BILI", "umol/L", "mg/dL", 1 / 17.1, 0.0, 21.0, 15.0),
    ("CREAT", "umol/L", "mg/dL", 1 / 88.4, 45.0, 104.0, 90.0),
    ("HGB", "g/L", "g/dL", 0.1, 115.0, 175.0, 120.0),
    ("LYM", "10^9/L", None, 1.0, 1.1, 3.2, 1.0),
    ("NEUT", "10^9/L", None, 1.0, 1.8, 6.3, 5.0),
    ("PLAT", "10^9/L", None, 1.0, 125.0, 350.0, 180.0),
    ("K", "mmol/L", None, 1.0, 3.5, 5.3, 4.2),
    ("SODIUM", "mmol/L", None, 1.0, 135.0, 145.0, 138.0),
    ("GLUC", "mmol/L", "mg/dL", 18.016, 3.9, 6.1, 6.0),
    ("ALB", "g/L", None, 1.0, 35.0, 52.0, 33.0),
    ("FIBRINO", "g/L", None, 1.0, 2.0, 4.0, 3.5),
    ("CK", "U/L", None, 1.0, 0.0, 190.0, 150.0),
)
BASELINE_TESTS = ("ALT", "AST", "BILI", "CREAT", "FIBRINO")


def make_observations(n: int, n_subjects: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(TESTS), n)
    lln = np.array([t[4] for t in TESTS])[which]
    uln = np.array([t[5] for t in TESTS])[which]
    mean = np.array([t[6] for t in TESTS])[which]
    value = mean * rng.lognormal(0.0, 0.45, n)
    conventional = rng.random(n) < 0.5
    has_conv = np.array([t[2] is not None for t in TESTS])[which] & conventional
    factor = np.array([t[3] for t in TESTS])[which]
    value = np.where(has_conv, value * factor, value)
    lln = np.where(has_conv, lln * factor, lln)
    uln = np.where(has_conv, uln * factor, uln)
    no_range = rng.random(n) < 0.05
    lln[no_range] = np.nan
    uln[no_range] = np.nan
    units = list(dict.fromkeys([t[1] for t in TESTS] + [t[2] for t in TESTS if t[2]]))
    unit_code = np.array([units.index(t[1]) for t in TESTS])[which]
    conv_code = np.array([units.index(t[2]) if t[2] else -1 for t in TESTS])[which]
    unit_code = np.where(has_conv, conv_code, unit_code)
    subjects = [f"S{i:05d}" for i in range(n_subjects)]
    obs = pd.DataFrame(
        {
            "subject_id": pd.Categorical.from_codes(rng.integers(0, n_subjects, n), subjects),
            "test": pd.Categorical.from_codes(which, [t[0] for t in TESTS]),
            "value": value,
            "unit": pd.Categorical.from_codes(unit_code, units),
            "ref_low": lln,
            "ref_high": uln,
        }
    )
    # baselines in canonical units (mixed-unit rows of a subject then compare against the
    # wrong unit; the benchmark measures speed, not clinical sense)
    rows = [
        (s, t[0], t[6] * rng.lognormal(0.0, 0.3), t[4], t[5])
        for s in subjects
        for t in TESTS
        if t[0] in BASELINE_TESTS
    ]
    baselines = pd.DataFrame(
        rows, columns=["subject_id", "test", "baseline", "ref_low", "ref_high"]
    )
    return obs, baselines


def naive(values: np.ndarray, thresholds: tuple[float, ...]) -> np.ndarray:
    """A single pass of absolute thresholds: grade = number of thresholds exceeded."""
    grade = np.zeros(len(values), dtype=np.int8)
    for t in thresholds:
        grade += values > t
    return grade


def naive_by_test(values: np.ndarray, test_codes: np.ndarray) -> np.ndarray:
    """The same pass with each row's 4 thresholds looked up by its test (tiny tables)."""
    rng = np.random.default_rng(0)
    tables = np.sort(rng.random((4, len(TESTS))) * 100, axis=0)
    grade = np.zeros(len(values), dtype=np.int8)
    for table in tables:
        grade += values > table.take(test_codes)
    return grade


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--subjects", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n = args.rows
    criteria = load_ctcae_criteria()
    print(f"building {n:,} observations of {len(TESTS)} tests …", flush=True)
    obs, baselines = make_observations(n, args.subjects, seed=7)
    values = obs["value"].to_numpy()
    test_codes = obs["test"].cat.codes.to_numpy()
    derive_lab_grades(obs.head(1000), criteria=criteria, baselines=baselines)  # warm caches

    t_naive = best_of(args.repeat, lambda: naive(values, (1.0, 3.0, 5.0, 20.0)))
    t_frame = best_of(
        args.repeat, lambda: derive_lab_grades(obs, criteria=criteria, baselines=baselines)
    )
    # the array path: one term, rows already grouped (what derive_lab_grades runs per term)
    alt = values * 0 + values  # same values graded as ALT with ULN 40, baseline normal
    uln = np.full(n, 40.0)
    flag = np.zeros(n)
    t_array = best_of(
        args.repeat,
        lambda: compute_lab_grades(
            "Alanine aminotransferase increased",
            alt,
            "U/L",
            uln=uln,
            baseline_abnormal=flag,
            criteria=criteria,
        ),
    )
    grouped = obs.sort_values(["test", "unit"], kind="stable", ignore_index=True)
    t_grouped = best_of(
        args.repeat, lambda: derive_lab_grades(grouped, criteria=criteria, baselines=baselines)
    )
    mixed_naive = best_of(args.repeat, lambda: naive_by_test(values, test_codes))
    graded = derive_lab_grades(obs, criteria=criteria, baselines=baselines)
    terms = set(graded["term_low"].dropna().unique()) | set(graded["term_high"].dropna().unique())
    not_gradable = int(
        (graded["grade_low"].isna() & graded["term_low"].notna()).sum()
        + (graded["grade_high"].isna() & graded["term_high"].notna()).sum()
    )
    print(f"terms graded: {len(terms)}; not-gradable term results: {not_gradable:,}")
    rate = {
        "naive numpy pass, 4 fixed absolute thresholds": t_naive,
        "naive numpy pass, 4 thresholds looked up per test": mixed_naive,
        "compute_lab_grades, one term (ALT), arrays": t_array,
        "derive_lab_grades, frame in store order (shuffled)": t_frame,
        "derive_lab_grades, frame grouped by test": t_grouped,
    }
    for label, seconds in rate.items():
        print(f"{label:<52} {n / seconds / 1e6:8.1f} M rows/s")
    print(
        f"ratio to the fixed naive pass: array {t_naive / t_array:.2f}, "
        f"frame {t_naive / t_frame:.2f}, grouped frame {t_naive / t_grouped:.2f}"
    )


if __name__ == "__main__":
    main()
