"""Holm adjustment by hand; the multiplicity caveat; many paired comparisons at once."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from celltrial.efficacy import (
    compare_paired,
    compute_holm,
    derive_baseline,
    multiplicity_caveat,
    summarize_paired_changes,
)

from .handmade import T0, observations


def test_holm_by_hand() -> None:
    # sorted 0.01, 0.02, 0.04 × 3, 2, 1 → 0.03, 0.04, 0.04 (monotone); NaN is not a test
    adjusted = compute_holm([0.04, np.nan, 0.01, 0.02])
    assert np.isnan(adjusted[1])
    assert adjusted[[2, 3, 0]] == pytest.approx([0.03, 0.04, 0.04])
    assert compute_holm([0.6, 0.7]).tolist() == [1.0, 1.0]


def test_multiplicity_caveat_only_for_several_tests() -> None:
    assert multiplicity_caveat(1) is None
    assert "16 tests" in (multiplicity_caveat(16) or "")


def test_paired_changes_pairs_baseline_with_each_visit() -> None:
    rows = []
    crp = {"S1": (100.0, 50.0, 20.0), "S2": (80.0, 20.0, 10.0), "S3": (60.0, 30.0, np.nan)}
    for subject, (base, d3, d7) in crp.items():
        for visit, day, value in (("baseline", -1, base), ("day 3", 3, d3), ("day 7", 7, d7)):
            rows.append(
                {
                    "subject_id": subject,
                    "test": "CRP",
                    "visit": visit,
                    "visit_day": day,
                    "unscheduled": False,
                    "value": value,
                    "time": T0 + pd.Timedelta(days=day),
                }
            )
    rows.append(
        {
            "subject_id": "S1",
            "test": "CRP",
            "visit": None,
            "unscheduled": True,
            "value": 1.0,
            "time": T0 + pd.Timedelta(days=4),
        }
    )
    frame = derive_baseline(
        observations(rows), first_infusion=pd.Series(dict.fromkeys(crp, T0)), window_days=2
    )
    result = summarize_paired_changes(frame)
    summary = result.summary.set_index("visit")
    assert list(summary.index) == ["day 3", "day 7"]
    day3 = compare_paired([100.0, 80.0, 60.0], [50.0, 20.0, 30.0], log=True)
    assert summary.loc["day 3", "hodges_lehmann"] == pytest.approx(day3.hodges_lehmann)
    assert summary.loc["day 3", "scale"] == "ratio"  # CRP is log-normal in the catalogue
    assert (summary.loc["day 7", "n"], summary.loc["day 7", "n_missing"]) == (2, 1)
    assert list(summary["p_holm"]) == pytest.approx(list(compute_holm(summary["p_value"])))
    assert result.n_tests == 2
    assert any("2 tests (markers × visits)" in c for c in result.caveats)
    assert any("too few pairs" in c for c in result.caveats)
    assert result.comparisons[("CRP", "day 3")].n == 3
