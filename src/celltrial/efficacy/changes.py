"""Baseline vs each post-baseline visit, for every marker: many paired comparisons at once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType

import numpy as np
import pandas as pd

from celltrial.efficacy.multiplicity import HolmFamily, compute_holm_family, multiplicity_caveat
from celltrial.efficacy.observations import check_confidence, is_log_normal, limit_caveat
from celltrial.efficacy.paired import PairedComparison, compare_paired
from celltrial.efficacy.signedrank import ZeroMethod
from celltrial.frames import check_columns


@dataclass(frozen=True, eq=False)
class PairedChangeSummary:
    """One row per test × visit (``summary``); the full results in ``comparisons``."""

    summary: pd.DataFrame
    comparisons: Mapping[tuple[str, object], PairedComparison]
    n_tests: int
    confidence: float
    method: str
    caveats: tuple[str, ...]
    #: The comparisons ``p_holm`` adjusts over (``n_tests`` of them).
    family: HolmFamily | None = None

    def restricted_to(self, tests: Sequence[str]) -> PairedChangeSummary:
        """The same results (Holm p over the same family) shown for ``tests`` only."""
        keep = set(tests)
        summary = self.summary[self.summary["test"].isin(keep)].reset_index(drop=True)
        comparisons = {k: v for k, v in self.comparisons.items() if k[0] in keep}
        return replace(self, summary=summary, comparisons=MappingProxyType(comparisons))


def summarize_paired_changes(
    observations: pd.DataFrame,
    *,
    confidence: float = 0.95,
    log_normal: Mapping[str, bool] | None = None,
    zero_method: ZeroMethod = "wilcox",
    family: Sequence[str] | None = None,
) -> PairedChangeSummary:
    """Compare each subject's baseline with their value at every later nominal visit, per test.

    Needs the columns of :func:`~celltrial.efficacy.baseline.derive_baseline` and a ``visit``
    (see :func:`~celltrial.efficacy.visits.derive_nominal_visits`). Uses scheduled rows after the
    baseline time; log-normal markers (catalogue flag or ``log_normal`` overrides) are compared as
    ratios. Each comparison is :func:`~celltrial.efficacy.paired.compare_paired`; ``p_holm``
    adjusts over the comparisons of the ``family`` markers (default: every test in this call;
    see :class:`~celltrial.efficacy.multiplicity.HolmFamily`), NaN for the others.
    """
    confidence = check_confidence(confidence)
    check_columns(
        observations,
        ("subject_id", "test", "time", "value", "baseline", "baseline_time", "visit"),
        what="observation (run derive_baseline and derive_nominal_visits first)",
    )
    keep = observations["visit"].notna() & observations["baseline"].notna()
    keep &= (observations["time"] > observations["baseline_time"]).fillna(False).astype(bool)
    if "unscheduled" in observations.columns:
        keep &= ~observations["unscheduled"].fillna(False).astype(bool)
    columns = ["test", "visit", "value", "baseline"]
    has_day = "visit_day" in observations.columns
    rows = observations.loc[keep, columns + (["visit_day"] if has_day else [])].copy()
    rows["visit"] = rows["visit"].astype(object)
    if not has_day:
        rows["visit_day"] = np.nan
    rows = rows.sort_values(["test", "visit_day"], kind="stable")

    comparisons: dict[tuple[str, object], PairedComparison] = {}
    records = []
    for (test, visit), group in rows.groupby(["test", "visit"], sort=False):
        log = is_log_normal(str(test), log_normal)
        result = compare_paired(
            group["baseline"].to_numpy(float),
            group["value"].to_numpy(float),
            log=log,
            confidence=confidence,
            zero_method=zero_method,
        )
        comparisons[(str(test), visit)] = result
        records.append(
            {
                "test": test,
                "visit": visit,
                "visit_day": group["visit_day"].iloc[0],
                "scale": result.scale,
                "n": result.n,
                "n_missing": result.n_missing,
                "hodges_lehmann": result.hodges_lehmann,
                "ci_low": result.ci[0],
                "ci_high": result.ci[1],
                "ci_level": result.ci_level,
                "p_value": result.p_value,
                "min_p_value": result.min_p_value,
                "t_estimate": result.t_test.estimate,
                "t_ci_low": result.t_test.ci[0],
                "t_ci_high": result.t_test.ci[1],
                "t_p_value": result.t_test.p_value,
            }
        )
    summary = pd.DataFrame.from_records(records)
    markers = tuple(family) if family is not None else tuple(dict.fromkeys(rows["test"]))
    if summary.empty:
        summary = pd.DataFrame(columns=["test", "visit", "visit_day", "p_value", "p_holm"])
    adjusted, holm_family = compute_holm_family(summary, markers=markers)
    if "p_holm" not in summary:
        summary.insert(summary.columns.get_loc("p_value") + 1, "p_holm", adjusted)
    n_tests = holm_family.size

    caveats: list[str] = []
    note = multiplicity_caveat(n_tests, alpha=1.0 - confidence)
    if note:
        caveats.append(note)
    outside = sorted(set(map(str, summary["test"])) - set(markers))
    if outside:
        caveats.append(
            f"{', '.join(outside)}: outside the pre-specified Holm family, p-values unadjusted "
            "(exploratory)"
        )
    if n_tests:
        blocked = int((summary["min_p_value"] > 1.0 - confidence).sum())
        if blocked:
            caveats.append(
                f"{blocked} of {n_tests} comparisons have too few pairs to reach p < "
                f"{1.0 - confidence:g} whatever the effect (see min_p_value)"
            )
        if (summary["ci_level"] < confidence - 1e-12).any():
            caveats.append("some intervals fall short of the nominal level (see ci_level)")
    used = keep
    if "is_baseline" in observations.columns:
        used = used | observations["is_baseline"].fillna(False).astype(bool)
    note = limit_caveat(observations.loc[used])
    if note:
        caveats.append(note)
    if comparisons:
        caveats.append("each comparison's own caveats are in comparisons[(test, visit)].caveats")
    return PairedChangeSummary(
        summary=summary,
        comparisons=MappingProxyType(comparisons),
        n_tests=n_tests,
        confidence=confidence,
        method=(
            "per test and post-baseline nominal visit: baseline vs visit value in the same "
            "subjects, Wilcoxon signed-rank test with Hodges–Lehmann estimate and exact interval "
            "(ratios for log-normal markers), secondary paired t-test; Holm adjustment over "
            f"the family of {n_tests} comparisons (pre-specified markers × post-baseline visits)"
        ),
        caveats=tuple(caveats),
        family=holm_family,
    )
