"""Benchmark: CTCAE lab grading of 10,000,000 observations against a naive numpy pass.

A plain script that prints figures (not a test). The data: 14 tests graded by 18 terms on the
low and high side (hyperglycemia has no numeric criteria), mixed units (bilirubin, creatinine,
hemoglobin and glucose half in conventional units), 5 % of rows without a normal range,
baselines for the baseline-dependent terms (ALT, AST, bilirubin, creatinine, fibrinogen), rows
in random order as a store returns them.

What is timed is what a user runs: ``derive_lab_grades(frame, baselines=…)``, frame in, frame
with both sides' grades, terms and reasons out. Generating the data is not timed; the criteria
are compiled once before timing (a few milliseconds, once per process). A further line times
what the study analysis runs (``first_infusion=…`` too: rows over 30 days, the first infusion on
day 2, values before it graded against LLN/ULN) with 5 % of the baselines missing (graded as if
normal and flagged, conventions.yaml).

The naive pass it is compared with grades the same values the cheapest way numpy can: for each
row, look up the absolute thresholds of its test *in its unit* on both sides (4 per side, from
small tables indexed by the row's test and unit codes, ``table[key]``), count the thresholds
passed. It knows no ULN/LLN, baselines, missing ranges or "not gradable" — what any grading of
these rows must at least cost. That is the honest comparison (``ratio``): both produce two
grades per row from each row's own thresholds. For reference the script also prints a one-side
pass (half the output: one term per row instead of two) and a pass with one fixed set of
thresholds for every row (which does not grade these values at all: a creatinine in mg/dL and a
platelet count get the same thresholds).

Each figure is the best of ``--repeat`` runs, by wall clock and by this process's CPU time; on
a shared machine (other processes on the cores) the CPU figures are the ones to compare.

Run: ``python benchmarks/bench_grading.py [--rows N] [--repeat R]``.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd

from celltrial.errors import UnitError
from celltrial.safety import compute_lab_grades, derive_lab_grades, load_ctcae_criteria
from celltrial.safety.criteria import CriteriaTable
from celltrial.safety.evaluate import _factor

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


def with_first_infusions(
    obs: pd.DataFrame, baselines: pd.DataFrame, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """``obs`` with times over 30 days, first infusions on day 2, 5 % of baselines dropped."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2020-02-01", tz="UTC")
    seconds = rng.integers(0, 30 * 86400, len(obs))
    timed = obs.assign(time=start + pd.to_timedelta(seconds, unit="s"))
    subjects = obs["subject_id"].cat.categories
    first = pd.Series(start + pd.Timedelta(days=2), index=subjects)
    kept = baselines[rng.random(len(baselines)) >= 0.05].reset_index(drop=True)
    return timed, kept, first


def naive_tables(
    criteria: CriteriaTable, tests: pd.Index, units: pd.Index
) -> dict[str, np.ndarray]:
    """Per side, 4 absolute thresholds per (test, unit) key (NaN: none), from the criteria.

    A grade's absolute threshold in that unit where it has one, else its multiple of the test's
    typical LLN/ULN (the naive pass knows no per-row ranges); a grade without either takes the
    next higher grade's, so the number of thresholds passed is the grade. Key = test code ×
    units + unit code.
    """
    limits = {t[0]: t for t in TESTS}
    tables = {}
    for direction in ("low", "high"):
        table = np.full((4, len(tests) * len(units)), np.nan)
        for i, test in enumerate(tests):
            term = criteria.for_test(str(test), direction)
            if term is None or not term.numeric:
                continue
            for j, unit in enumerate(units):
                try:
                    compiled = criteria.compile(term, str(unit))
                except UnitError:
                    continue
                spec = limits[str(test)]
                conv = spec[3] if str(unit) == spec[2] else 1.0
                for rc in compiled.criteria:
                    kind = rc.criterion.kind
                    if kind == "absolute":
                        number = rc.number
                    elif kind in ("x_uln", "x_lln"):
                        number = _factor(rc) * conv * spec[5 if kind == "x_uln" else 4]
                    else:
                        continue
                    cell = table[rc.grade - 1, i * len(units) + j]
                    if np.isnan(cell) or (number < cell) == (direction == "high"):
                        table[rc.grade - 1, i * len(units) + j] = number
        for g in (2, 1, 0):  # a grade without a threshold: the next higher one's (count = grade)
            table[g] = np.where(np.isnan(table[g]), table[g + 1], table[g])
        tables[direction] = table
    return tables


def naive(
    values: np.ndarray,
    test_codes: np.ndarray,
    unit_codes: np.ndarray,
    n_units: int,
    tables: dict[str, np.ndarray],
    sides: tuple[str, ...] = ("low", "high"),
) -> list[np.ndarray]:
    """The naive pass: each row's thresholds looked up by its (test, unit), compared, counted."""
    key = test_codes.astype(np.intp) * n_units + unit_codes
    grades = []
    for side in sides:
        grade = np.zeros(len(values), dtype=np.int8)
        for thresholds in tables[side]:
            if side == "low":
                grade += values < thresholds[key]
            else:
                grade += values > thresholds[key]
        grades.append(grade)
    return grades


def naive_fixed(values: np.ndarray, thresholds: tuple[float, ...]) -> np.ndarray:
    """One fixed set of thresholds for every row, whatever its test and unit (not grading)."""
    grade = np.zeros(len(values), dtype=np.int8)
    for t in thresholds:
        grade += values > t
    return grade


def best_of(repeat: int, fn) -> tuple[float, float]:
    """Best wall-clock and best CPU time (this process) of ``repeat`` runs, in seconds.

    Everything here is single-threaded, so on a quiet machine both agree; on a shared one the
    CPU time is what the code costs and the wall time what another process left of a core.
    """
    wall, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return min(wall), min(cpu)


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
    grouped = obs.sort_values(["test", "unit"], kind="stable", ignore_index=True)
    values = obs["value"].to_numpy()
    test_codes = obs["test"].cat.codes.to_numpy()
    unit_codes = obs["unit"].cat.codes.to_numpy()
    n_units = len(obs["unit"].cat.categories)
    tables = naive_tables(criteria, obs["test"].cat.categories, obs["unit"].cat.categories)
    derive_lab_grades(obs.head(1000), criteria=criteria, baselines=baselines)  # compile criteria

    def ours() -> pd.DataFrame:
        return derive_lab_grades(obs, criteria=criteria, baselines=baselines)

    print(f"load average before timing: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    t_naive = best_of(args.repeat, lambda: naive(values, test_codes, unit_codes, n_units, tables))
    t_frame = best_of(args.repeat, ours)
    t_naive_one = best_of(
        args.repeat,
        lambda: naive(values, test_codes, unit_codes, n_units, tables, sides=("high",)),
    )
    t_fixed = best_of(args.repeat, lambda: naive_fixed(values, (1.0, 3.0, 5.0, 20.0)))
    t_grouped = best_of(
        args.repeat, lambda: derive_lab_grades(grouped, criteria=criteria, baselines=baselines)
    )
    timed, kept, first = with_first_infusions(obs, baselines, seed=8)
    t_timed = best_of(
        args.repeat,
        lambda: derive_lab_grades(timed, criteria=criteria, baselines=kept, first_infusion=first),
    )
    # the array path: one term, one unit, no frame (ALT, ULN 40, baseline normal)
    uln = np.full(n, 40.0)
    flag = np.zeros(n)
    t_array = best_of(
        args.repeat,
        lambda: compute_lab_grades(
            "Alanine aminotransferase increased",
            values,
            "U/L",
            uln=uln,
            baseline_abnormal=flag,
            criteria=criteria,
        ),
    )
    load = os.getloadavg()[0]

    graded = ours()
    terms = set(graded["term_low"].dropna().unique()) | set(graded["term_high"].dropna().unique())
    not_gradable = int(
        (graded["grade_low"].isna() & graded["term_low"].notna()).sum()
        + (graded["grade_high"].isna() & graded["term_high"].notna()).sum()
    )
    print(f"terms graded: {len(terms)}; not-gradable term results: {not_gradable:,}")
    rate = {
        "derive_lab_grades, frame in store order (shuffled)": t_frame,
        "derive_lab_grades, frame grouped by test and unit": t_grouped,
        "derive_lab_grades, + day 0, 5 % of baselines missing": t_timed,
        "naive pass, both sides, thresholds per (test, unit)": t_naive,
        "naive pass, one side only (reference)": t_naive_one,
        "naive pass, one fixed threshold set (reference)": t_fixed,
        "compute_lab_grades, one term (ALT), arrays": t_array,
    }
    print(f"{'':<54} {'wall':>8} {'cpu':>8}  (M rows/s)")
    for label, (wall, cpu) in rate.items():
        print(f"{label:<54} {n / wall / 1e6:8.1f} {n / cpu / 1e6:8.1f}")
    for clock, i in (("wall", 0), ("cpu", 1)):
        print(
            f"ratio ours / naive (both sides), {clock}: {t_naive[i] / t_frame[i]:.2f} "
            f"(target >= 0.5); grouped frame {t_naive[i] / t_grouped[i]:.2f}; "
            f"vs one-side naive {t_naive_one[i] / t_frame[i]:.2f}; "
            f"vs fixed thresholds {t_fixed[i] / t_frame[i]:.2f}"
        )
    print(f"load average after timing: {load:.2f}")


if __name__ == "__main__":
    main()
