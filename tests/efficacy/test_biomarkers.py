"""Per-visit summaries, AUC and time to normalisation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from celltrial.efficacy import (
    compute_auc,
    derive_baseline,
    summarize_auc,
    summarize_time_to_normal,
    summarize_visits,
)
from celltrial.errors import CelltrialError, DataError

from .handmade import T0, observations


def visit_rows(test: str, visit: str, values: list[float], day: float = 7.0) -> list[dict]:
    return [
        {
            "subject_id": f"S{i}",
            "test": test,
            "visit": visit,
            "visit_day": day,
            "value": v,
            "unscheduled": False,
        }
        for i, v in enumerate(values)
    ]


def test_visit_summary_by_hand() -> None:
    frame = observations(
        visit_rows("CRP", "day 7", [4.0, 1.0, 16.0, 2.0, 8.0])
        + visit_rows("CRP", "baseline", [100.0, 50.0], day=0.0)
        + visit_rows("SODIUM", "day 7", [140.0, 136.0, 138.0, np.nan])
        + [{"subject_id": "S0", "test": "CRP", "visit": None, "value": 999.0, "unscheduled": True}]
    )
    result = summarize_visits(frame)
    table = result.summary.set_index(["test", "visit"])
    crp = table.loc[("CRP", "day 7")]
    assert (crp["n"], crp["n_missing"], crp["n_subjects"]) == (5, 0, 5)
    assert (crp["median"], crp["min"], crp["max"]) == (4.0, 1.0, 16.0)
    assert (crp["q1"], crp["q3"]) == (2.0, 8.0)  # sorted 1 2 4 8 16, linear: positions 1 and 3
    assert crp["geometric_mean"] == pytest.approx(4.0)  # (1·2·4·8·16)^(1/5) = 2^(10/5)
    assert crp["mean"] == pytest.approx(6.2)
    sodium = table.loc[("SODIUM", "day 7")]
    assert (sodium["n"], sodium["n_missing"]) == (3, 1)
    assert math.isnan(sodium["geometric_mean"])  # sodium is not log-normal
    # visits sorted by nominal day; the unscheduled row is left out
    assert list(result.summary["visit"]) == ["baseline", "day 7", "day 7"]
    assert result.n_observations == 10
    assert any("fewer than 4" in c for c in result.caveats)


def test_quantile_method_choice() -> None:
    frame = observations(visit_rows("CRP", "d", [1.0, 2.0, 3.0, 4.0]))
    linear = summarize_visits(frame).summary.iloc[0]
    assert (linear["q1"], linear["q3"]) == (1.75, 3.25)  # R type 7
    sas = summarize_visits(frame, quantile_method="averaged_inverted_cdf").summary.iloc[0]
    assert (sas["q1"], sas["q3"]) == (1.5, 3.5)  # SAS QNTLDEF=5
    with pytest.raises(CelltrialError, match="quantile_method"):
        summarize_visits(frame, quantile_method="type7")


def test_geometric_mean_not_given_for_non_positive_values() -> None:
    frame = observations(visit_rows("CRP", "d", [0.0, 2.0, 3.0]))
    result = summarize_visits(frame)
    assert math.isnan(result.summary["geometric_mean"].iloc[0])
    assert any("≤ 0" in c for c in result.caveats)
    override = summarize_visits(
        observations(visit_rows("SODIUM", "d", [1.0, 4.0])), log_normal={"SODIUM": True}
    )
    assert override.summary["geometric_mean"].iloc[0] == pytest.approx(2.0)


def test_compute_auc_by_hand() -> None:
    # trapezoids: (0→2) 2·(4+2)/2 = 6; (2→3) 1·(2+6)/2 = 4
    assert compute_auc([0, 2, 3], [4, 2, 6]) == 10.0
    assert compute_auc([0, 1, 3], [4, np.nan, 6]) == 15.0  # gap bridged: 3·(4+6)/2
    assert math.isnan(compute_auc([1.0], [2.0]))
    with pytest.raises(DataError, match="increasing"):
        compute_auc([0, 2, 1], [1, 1, 1])


def test_summarize_auc_interval_duplicates_and_coverage() -> None:
    frame = observations(
        [
            {"subject_id": "S1", "study_day": d, "value": v}
            for d, v in [(-1, 100.0), (0, 4.0), (2, 1.0), (2, 3.0), (3, 6.0), (10, 0.0)]
        ]
        + [{"subject_id": "S2", "study_day": d, "value": v} for d, v in [(1, 2.0), (3, 2.0)]]
        + [{"subject_id": "S3", "study_day": 2.0, "value": 5.0}]
    )
    result = summarize_auc(frame, start_day=0, end_day=3)
    table = result.summary.set_index("subject_id")
    assert table.loc["S1", "auc"] == 10.0  # day 2 averaged to 2; day −1 and day 10 outside
    assert table.loc["S1", "auc_per_day"] == pytest.approx(10 / 3)
    assert table.loc["S1", "covers_interval"]
    assert table.loc["S2", "auc"] == 4.0 and not table.loc["S2", "covers_interval"]
    assert math.isnan(table.loc["S3", "auc"])
    assert any("averaged" in c for c in result.caveats)
    assert any("do not reach both" in c for c in result.caveats)


def lymphocytes(subject: str, values: list[tuple[float, float]], **extra) -> list[dict]:
    """(study day, value) pairs; day < 0 are before the first infusion at T0."""
    return [
        {
            "subject_id": subject,
            "test": "LYM",
            "study_day": d,
            "value": v,
            "time": T0 + pd.Timedelta(days=d, hours=1),
            **extra,
        }
        for d, v in values
    ]


def test_time_to_normalisation_edges_and_censoring() -> None:
    # catalogue LYM reference range 1.1–3.2 × 10^9/L
    frame = observations(
        lymphocytes("S1", [(-1, 0.5), (3, 1.0999), (7, 1.1), (14, 2.0)])  # at the edge: normal
        + lymphocytes("S2", [(-1, 0.6), (3, 0.9), (7, 1.05)])  # never: censored at day 7
        + lymphocytes("S3", [(-1, 1.5), (3, 0.8)])  # normal at baseline: not at risk
        + lymphocytes("S4", [(-1, 0.4), (3, 3.21), (7, 3.2)])  # above the range is not normal
        + lymphocytes("S5", [(-1, 0.9), (3, 0.95)], ref_low=0.9, ref_high=4.0)  # lab's range
    )
    first = pd.Series({s: T0 for s in ["S1", "S2", "S3", "S4", "S5"]})
    result = summarize_time_to_normal(derive_baseline(frame, first_infusion=first, window_days=2))
    table = result.summary.set_index("subject_id")
    assert table.loc["S1", "normalised"] and table.loc["S1", "day"] == 7
    assert not table.loc["S2", "normalised"] and table.loc["S2", "censored_day"] == 7
    assert not table.loc["S3", "abnormal_at_baseline"] and not table.loc["S3", "normalised"]
    assert table.loc["S4", "day"] == 7
    assert not table.loc["S5", "abnormal_at_baseline"]  # 0.9 is inside the lab's own range
    by_test = result.by_test.set_index("test").loc["LYM"]
    assert (by_test["n_abnormal_at_baseline"], by_test["n_normalised"]) == (3, 2)
    assert any("Kaplan–Meier" in c for c in result.caveats)


def test_time_to_normalisation_needs_baseline() -> None:
    with pytest.raises(DataError, match="derive_baseline"):
        summarize_time_to_normal(observations([{"value": 1.0}]))


def test_values_at_a_reporting_limit_are_flagged() -> None:
    rows = visit_rows("IL6", "day 7", [1.5, 20.0, 35.0])
    rows[0]["qualifier"] = "<"
    result = summarize_visits(observations(rows))
    assert any("1 value(s) were reported at a limit (<)" in c for c in result.caveats)
