"""Coverage of the external comparison's 95 % intervals under the null, at the sizes celltrial
meets (2 vs 2 to 5 vs 15 subjects per arm).

Change from baseline: log-normal marker values (baseline and day 7 share a subject effect), the
same distribution in both arms. Compared: the Welch t interval on the log scale that
``summarize_changes`` uses (unweighted, and with 1:3 matching weights), the stratified percentile
bootstrap it replaced, and the arm × day mixed model (``summarize_arm_model``, fewer replicates:
one fit per replicate). Mortality: exact coverage (every outcome enumerated) of the Newcombe risk
difference and Koopman risk ratio intervals under equal risks.

    python benchmarks/bench_external_coverage.py [--replicates 20000] [--bootstrap 1000]
        [--mixed 300] [--seed 2020]

Anchor: every interval should cover ≥ 0.93 (nominal 0.95); the bootstrap is shown as the
reference of what was replaced.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd
from scipy import stats

from celltrial.external.compare import summarize_arm_model
from celltrial.external.intervals import (
    compute_koopman_ratio,
    compute_newcombe_difference,
    compute_welch_difference,
)

SIZES = [(2, 2), (3, 3), (3, 7), (5, 15), (2, 6), (3, 9)]
ANCHOR = 0.93


def _values(rng, replicates: int, n: int, days: int) -> np.ndarray:
    """(replicates, n, days) log-normal values: subject effect, day effect, day-to-day noise."""
    subject = rng.normal(0.0, 0.8, (replicates, n, 1))
    trend = np.log(60.0) + np.linspace(0.0, -1.4, days)[None, None, :]
    return np.exp(trend + subject + rng.normal(0.0, 0.4, (replicates, n, days)))


def _folds(rng, replicates: int, n: int) -> np.ndarray:
    v = _values(rng, replicates, n, 2)
    return np.log(v[..., 1] / v[..., 0])


def _bootstrap_coverage(t, c, w, resamples: int, rng, chunk: int = 200) -> float:
    covered = []
    for start in range(0, len(t), chunk):
        tt, cc = t[start : start + chunk], c[start : start + chunk]
        r, n1, n2 = len(tt), tt.shape[1], cc.shape[1]
        it = rng.integers(0, n1, (r, resamples, n1))
        ic = rng.integers(0, n2, (r, resamples, n2))
        mt = np.take_along_axis(tt[:, None, :], it, axis=2).mean(-1)
        cv = np.take_along_axis(cc[:, None, :], ic, axis=2)
        wc = w[ic]
        mc = (cv * wc).sum(-1) / wc.sum(-1)
        low, high = np.quantile(mt - mc, [0.025, 0.975], axis=1)
        covered.append((low <= 0) & (high >= 0))
    return float(np.concatenate(covered).mean())


def _mixed_coverage(rng, n1: int, n2: int, replicates: int) -> tuple[float, int]:
    days = [0, 3, 7]
    hits, fitted = 0, 0
    for _ in range(replicates):
        rows = []
        for arm, n in (("treated", n1), ("external", n2)):
            v = _values(rng, 1, n, len(days))[0]
            for i in range(n):
                for j, d in enumerate(days):
                    rows.append(
                        {
                            "subject_id": f"{arm[0]}{i}",
                            "arm": arm,
                            "marker": "CRP",
                            "nominal_day": d,
                            "value": v[i, j],
                        }
                    )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = summarize_arm_model(pd.DataFrame(rows), marker="CRP")
        if not model.fitted:
            continue
        row = model.summary.set_index("day").loc[7]
        if not np.isfinite(row["ci_low"]):
            continue
        fitted += 1
        hits += bool(row["ci_low"] <= 1.0 <= row["ci_high"])
    return (hits / fitted if fitted else float("nan")), fitted


def _exact_proportions(n1: int, n2: int, p: float) -> tuple[float, float]:
    rd = rr = total = 0.0
    for x1 in range(n1 + 1):
        for x2 in range(n2 + 1):
            prob = stats.binom.pmf(x1, n1, p) * stats.binom.pmf(x2, n2, p)
            low, high = compute_newcombe_difference(x1, n1, x2, n2)
            rd += prob * (low <= 0.0 <= high)
            low, high = compute_koopman_ratio(x1, n1, x2, n2)
            if not np.isnan(low):
                total += prob
                rr += prob * (low <= 1.0 <= high)
    return rd, rr / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=20_000)
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamples per replicate")
    parser.add_argument("--bootstrap-replicates", type=int, default=2000)
    parser.add_argument("--mixed", type=int, default=300, help="mixed-model replicates")
    parser.add_argument("--seed", type=int, default=2020)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    print(f"change from baseline, day 7 vs baseline, null; anchor: coverage ≥ {ANCHOR}")
    print(
        f"{'size':<9}{'Welch':>8}{'Welch 1:3 w':>13}{'bootstrap':>11}{'mixed model':>13}"
        f"{'(fits)':>8}"
    )
    for n1, n2 in SIZES:
        t = _folds(rng, args.replicates, n1)
        c = _folds(rng, args.replicates, n2)
        r = compute_welch_difference(t, c)
        welch = float(((r["low"] <= 0) & (r["high"] >= 0)).mean())
        w = np.full(n2, 1 / 3)
        w[: max(n2 // 4, 1)] = 1.0  # some controls reused (matching with replacement)
        rw = compute_welch_difference(t, c, control_weights=w)
        weighted = float(((rw["low"] <= 0) & (rw["high"] >= 0)).mean())
        k = args.bootstrap_replicates
        boot = _bootstrap_coverage(t[:k], c[:k], np.ones(n2), args.bootstrap, rng)
        mixed, fits = _mixed_coverage(rng, n1, n2, args.mixed) if args.mixed else (np.nan, 0)
        print(
            f"{f'{n1} vs {n2}':<9}{welch:>8.3f}{weighted:>13.3f}{boot:>11.3f}{mixed:>13.3f}"
            f"{fits:>8d}",
            flush=True,
        )
    print()
    print("28-day mortality, exact coverage under equal risks p (risk difference / risk ratio)")
    print(f"{'size':<9}" + "".join(f"{f'p = {p:g}':>16}" for p in (0.1, 0.3, 0.5)))
    for n1, n2 in SIZES:
        cells = [_exact_proportions(n1, n2, p) for p in (0.1, 0.3, 0.5)]
        print(f"{f'{n1} vs {n2}':<9}" + "".join(f"{rd:>9.3f} / {rr:.3f}" for rd, rr in cells))
    print(f"\n{'seconds':<9}{time.perf_counter() - start:8.1f}")


if __name__ == "__main__":
    main()
