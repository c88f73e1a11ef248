"""Multiplicity: Holm-adjusted p-values and the caveat every multi-test result carries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike


def compute_holm(p_values: ArrayLike) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values; NaN stays NaN and is not counted as a test.

    Controls the family-wise error rate under any dependence between the tests.
    """
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    present = np.flatnonzero(~np.isnan(p))
    m = present.size
    if m == 0:
        return adjusted
    order = present[np.argsort(p[present], kind="stable")]
    scaled = p[order] * (m - np.arange(m))
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted


def multiplicity_caveat(
    n_tests: int, *, alpha: float = 0.05, what: str = "markers × visits"
) -> str | None:
    """The caveat for ``n_tests`` unadjusted tests of ``what``, or ``None`` for a single test."""
    if n_tests <= 1:
        return None
    return (
        f"{n_tests} tests ({what}) were run; unadjusted p-values are descriptive: at "
        f"α = {alpha:g} about {n_tests * alpha:.1f} would fall below α by chance alone if nothing "
        "changed. Holm-adjusted p-values (family-wise error over these tests) are given alongside."
    )


@dataclass(frozen=True)
class HolmFamily:
    """The comparisons one Holm adjustment runs over, so that every output states the same one.

    The family is every baseline-vs-visit comparison (with a p-value) of the pre-specified
    efficacy markers (``markers``) at the post-baseline nominal visits (``visits``), whatever
    subset of markers a command shows: ``celltrial efficacy --test CRP`` and the report give CRP
    the same Holm p. Comparisons of other markers are outside the family (no Holm p).
    """

    markers: tuple[str, ...]
    visits: tuple[str, ...]
    size: int

    def describe(self, labels: Mapping[str, str] | None = None) -> str:
        """E.g. "Holm family: 45 baseline-vs-visit comparisons — 8 markers (D-dimer, CRP, …)
        × the post-baseline visits with pairs (Day 1, Day 3, …)"."""
        names = [(labels or {}).get(m, m) for m in self.markers]
        return (
            f"Holm family: {self.size} baseline-vs-visit comparison{'s' if self.size != 1 else ''}"
            f" — {len(names)} pre-specified efficacy marker{'s' if len(names) != 1 else ''} "
            f"({', '.join(names)}) × the post-baseline visits with pairs "
            f"({', '.join(self.visits)}); the same family in the report and the command line"
        )


def compute_holm_family(
    summary: pd.DataFrame, *, markers: Sequence[str]
) -> tuple[np.ndarray, HolmFamily]:
    """Holm-adjusted p-values of ``summary`` (columns test, visit, p_value) over the family of
    ``markers``' comparisons: NaN outside the family or where p is missing."""
    inside = summary["test"].isin(list(markers)).to_numpy(bool)
    p = summary["p_value"].to_numpy(float)
    adjusted = np.full(p.shape, np.nan)
    adjusted[inside] = compute_holm(p[inside])
    members = summary[inside & ~np.isnan(p)]
    if "visit_day" in members:
        members = members.sort_values("visit_day", kind="stable")
    family = HolmFamily(
        markers=tuple(m for m in markers if m in set(members["test"])),
        visits=tuple(dict.fromkeys(str(v) for v in members["visit"])),
        size=len(members),
    )
    return adjusted, family
