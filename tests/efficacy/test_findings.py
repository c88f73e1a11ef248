"""The wording of findings on hand-made results: directions, intervals, what n allows."""

from __future__ import annotations

import re

import pandas as pd

from celltrial.efficacy.findings import (
    compute_direction_counts,
    format_number,
    state_paired_change,
)
from celltrial.efficacy.paired import compare_paired


def _state(before: list[float], after: list[float], **kw: object):
    comparison = compare_paired(before, after, log=bool(kw.pop("log", False)))
    d = [a - b for a, b in zip(before, after, strict=True)]
    counts = {
        "n_down": sum(x > 0 for x in d),
        "n_up": sum(x < 0 for x in d),
        "n_same": sum(x == 0 for x in d),
    }
    return state_paired_change(comparison, marker="CRP", unit="mg/L", visit="day 7", **counts, **kw)


def test_four_of_five_fall_with_the_n5_limit_stated() -> None:
    finding = _state([100, 90, 80, 70, 60], [20, 40, 50, 65, 62])
    text = finding.text
    assert text.startswith("CRP fell from baseline to day 7 in 4 of 5 patients (rose in 1)")
    assert "Hodges–Lehmann; exact 93.8 % CI" in text
    # celltrial.pvalues: two significant digits (0.125 → 0.13, 0.0625 → 0.063)
    assert "exact p = 0.13;" in text or "exact p = 0.13 " in text
    assert "cannot go below p = 0.063, even when all 5 change in the same direction" in text
    assert "the interval includes no change" in text
    assert finding.evidence == "no clear change"


def test_all_five_fall_is_direction_only_not_significance() -> None:
    finding = _state([100, 90, 80, 70, 60], [20, 40, 50, 65, 55])
    assert "in 5 of 5 patients" in finding.text
    assert "exact p = 0.063" in finding.text
    assert "includes no change" not in finding.text  # the 93.8 % CI excludes 0
    assert finding.evidence == "direction only"
    assert "improved" not in finding.text and "significant" not in finding.text


def test_mixed_directions_are_said_plainly() -> None:
    finding = _state([10, 10, 10, 10, 10, 10], [5, 6, 14, 15, 10, 10])
    assert "did not move one way" in finding.text
    assert "fell in 2, rose in 2, did not change in 2" in finding.text
    assert finding.evidence == "no clear change"


def test_too_few_pairs_gives_counts_only() -> None:
    finding = _state([10, 12], [5, 6])
    assert "too few to estimate" in finding.text and "p =" not in finding.text
    assert finding.evidence == "too few"
    empty = state_paired_change(
        compare_paired([], []), marker="CRP", unit="mg/L", visit="day 7", n_down=0, n_up=0
    )
    assert empty.evidence == "no data"


def test_large_n_nominal_vs_adjusted() -> None:
    before = [100.0 + i for i in range(12)]
    after = [b - 10 - i for i, b in enumerate(before)]
    nominal = _state(before, after, p_holm=0.2, n_tests=10)
    assert nominal.evidence == "nominal"
    assert "Holm-adjusted over the family of 10 comparisons p = 0.2" in nominal.text
    adjusted = _state(before, after, p_holm=0.004, n_tests=10)
    assert adjusted.evidence == "adjusted"
    assert "cannot go below" not in adjusted.text  # 12 pairs: p can reach 0.000488


def test_ratio_wording_and_favourable_direction() -> None:
    finding = _state([100, 80, 60, 120, 90], [10, 8, 12, 6, 9], log=True, favourable="down")
    assert "the direction hoped for" in finding.text
    assert "median ratio to baseline" in finding.text and "on log values" in finding.text
    assert "a ratio of 1" not in finding.text  # every ratio < 1: interval excludes 1


def test_format_number_uses_true_minus() -> None:
    assert format_number(-45.0) == "−45"
    assert format_number(0.0625, 3) == "0.0625"
    assert format_number(float("nan")) == "—"


def test_direction_counts_follow_the_paired_rows() -> None:
    t0 = pd.Timestamp("2020-02-10", tz="UTC")
    frame = pd.DataFrame(
        {
            "subject_id": ["A", "B", "C", "D"],
            "test": "CRP",
            "visit": ["Day 7", "Day 7", "Day 7", None],
            "time": t0 + pd.Timedelta(days=7),
            "baseline_time": t0,
            "baseline": [10.0, 10.0, 10.0, 10.0],
            "value": [5.0, 10.0, 12.0, 1.0],
        }
    )
    row = compute_direction_counts(frame).iloc[0]
    assert (row["n_down"], row["n_up"], row["n_same"]) == (1, 1, 1)


# --- issue 27: p-values through celltrial.pvalues; the pre-specified key visit ----------------

P_ZERO = re.compile(r"p\s*=\s*0(?![.\d])")


def test_a_tiny_p_is_never_p_equals_0() -> None:
    # 30 pairs all falling: exact two-sided p = 2 / 2^30 ≈ 1.9e-9; smallest possible the same
    before = [100.0 + i for i in range(30)]
    after = [b / 2 - i for i, b in enumerate(before)]
    finding = _state(before, after, p_holm=30 * 2 / 2**30, n_tests=30)
    assert not P_ZERO.search(finding.text), finding.text
    assert "exact p < 0.001" in finding.text
    assert "Holm-adjusted over the family of 30 comparisons: p < 0.001" in finding.text
    assert finding.evidence == "adjusted"


def test_p_just_at_and_below_0001() -> None:
    from celltrial.pvalues import format_p

    assert format_p(0.001) == "p = 0.001"  # boundary: shown as a number
    assert format_p(0.000999) == "p < 0.001"


def test_outside_the_holm_family_is_said() -> None:
    before = [100.0 + i for i in range(12)]
    after = [b - 10 - i for i, b in enumerate(before)]
    finding = _state(before, after, p_holm=float("nan"), n_tests=10)
    assert "outside the pre-specified Holm family: unadjusted" in finding.text
    assert finding.evidence == "nominal"


def test_key_visit_with_too_few_pairs_says_the_test_is_not_run() -> None:
    finding = _state([10, 12], [5, 6], prespecified=True)
    assert finding.text.startswith(
        "CRP: day 7 is the pre-specified key visit; only 2 patient(s) have both a baseline and "
        "a day 7 value — too few to estimate a change or run the test"
    )
    assert not P_ZERO.search(finding.text) and "p =" not in finding.text
    none = state_paired_change(
        compare_paired([], []),
        marker="CRP",
        unit="mg/L",
        visit="Day 14",
        n_down=0,
        n_up=0,
        prespecified=True,
    )
    assert none.text == (
        "CRP: Day 14 is the pre-specified key visit; no patient has both a baseline and a Day 14 "
        "value: the test is not run."
    )


def test_key_visit_with_three_pairs_runs_with_n_stated() -> None:
    finding = _state([10, 12, 14], [5, 6, 7], prespecified=True)
    assert finding.text.startswith(
        "CRP fell from baseline to day 7 (the pre-specified key visit) in 3 of 3 patients"
    )
    assert "exact p = 0.25" in finding.text  # 3 pairs, all one way: 2/2^3
