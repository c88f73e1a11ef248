"""Mixed model: balanced cross-check against per-visit mean log differences; graceful failure."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from celltrial.efficacy import summarize_mixed_model
from celltrial.errors import CelltrialError, DataError


def balanced(seed: int, subjects: int = 6, visits: int = 4, subject_sd: float = 0.8):
    rng = np.random.default_rng(seed)
    effect = np.array([0.0, -0.3, -0.7, -1.0, -1.2, -1.3])[:visits]
    logs = (
        np.log(50.0)
        + rng.normal(0.0, subject_sd, subjects)[:, None]
        + effect[None, :]
        + rng.normal(0.0, 0.25, (subjects, visits))
    )
    frame = pd.DataFrame(
        [
            {
                "subject_id": f"S{i}",
                "test": "CRP",
                "visit": f"V{j}",
                "visit_day": 7.0 * j,
                "value": float(np.exp(logs[i, j])),
                "unscheduled": False,
            }
            for i in range(subjects)
            for j in range(visits)
        ]
    )
    return frame, logs


@pytest.mark.parametrize("seed", [7, 8])
def test_balanced_design_equals_repeated_measures_anova(seed: int) -> None:
    frame, logs = balanced(seed)
    result = summarize_mixed_model(frame)
    s, v = logs.shape
    # fixed effects = per-visit mean log differences from baseline
    expected = (logs[:, 1:] - logs[:, [0]]).mean(axis=0)
    assert result.fitted and result.converged and result.log
    assert result.baseline_visit == "V0"
    assert result.summary["estimate"].to_numpy() == pytest.approx(expected, abs=1e-6)
    assert result.summary["effect"].to_numpy() == pytest.approx(np.exp(expected), rel=1e-6)
    # interval: two-way ANOVA error mean square, df (s−1)(v−1), SE = √(2·MSE/s)
    residual = logs - logs.mean(1, keepdims=True) - logs.mean(0, keepdims=True) + logs.mean()
    df = (s - 1) * (v - 1)
    mse = (residual**2).sum() / df
    se = np.sqrt(2 * mse / s)
    half = stats.t.ppf(0.975, df) * se
    assert result.df == df
    assert result.residual_variance == pytest.approx(mse, rel=1e-7)
    assert result.summary["se"].to_numpy() == pytest.approx(np.full(v - 1, se), rel=1e-7)
    assert result.summary["ci_low"].to_numpy() == pytest.approx(np.exp(expected - half), rel=1e-7)
    assert result.summary["ci_high"].to_numpy() == pytest.approx(np.exp(expected + half), rel=1e-7)
    assert (result.n_subjects, result.n_observations) == (s, s * v)
    assert list(result.summary["n"]) == [s] * (v - 1)
    assert any("3 tests (visits vs baseline)" in c for c in result.caveats)


def test_missing_visits_and_unscheduled_rows() -> None:
    frame, _ = balanced(3, subjects=8)
    frame = frame.drop(index=[5, 10]).reset_index(drop=True)
    extra = frame.iloc[[0]].assign(unscheduled=True, value=1e6)
    result = summarize_mixed_model(pd.concat([frame, extra], ignore_index=True))
    assert result.fitted and result.n_observations == 30
    assert result.df == 30 - 8 - 3


def test_graceful_when_model_cannot_be_fitted() -> None:
    frame, _ = balanced(1)
    one_subject = summarize_mixed_model(frame[frame["subject_id"] == "S0"])
    assert not one_subject.fitted and one_subject.summary.empty
    assert any("at least 2" in c for c in one_subject.caveats)
    only_baseline = summarize_mixed_model(frame[frame["visit"] == "V0"])
    assert not only_baseline.fitted
    assert any("no visit after baseline" in c for c in only_baseline.caveats)
    # 2 subjects × 2 visits: 4 observations − 2 subjects − 1 visit effect = 1 df: fits;
    # one more missing value leaves none
    tiny = frame[frame["visit"].isin(["V0", "V1"]) & frame["subject_id"].isin(["S0", "S1"])]
    assert summarize_mixed_model(tiny).df == 1
    none_left = summarize_mixed_model(tiny.iloc[:3])
    assert not none_left.fitted and any("degrees of freedom" in c for c in none_left.caveats)
    absent = summarize_mixed_model(frame, baseline_visit="screening")
    assert not absent.fitted and any("screening" in c for c in absent.caveats)


def test_fitting_warnings_become_caveats_never_printed(capsys: pytest.CaptureFixture) -> None:
    frame, _ = balanced(2, subjects=5, subject_sd=0.0)  # no subject effect: boundary fit
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any escaping warning fails the test
        result = summarize_mixed_model(frame)
    assert result.fitted
    assert any("boundary" in c or "warning" in c for c in result.caveats)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_choice_of_test_scale_and_errors() -> None:
    frame, _ = balanced(4)
    two = pd.concat([frame, frame.assign(test="LYM")], ignore_index=True)
    with pytest.raises(CelltrialError, match="several tests"):
        summarize_mixed_model(two)
    raw = summarize_mixed_model(two, test="LYM", log=False)
    assert not raw.log and raw.test == "LYM"
    diffs = frame.pivot(index="subject_id", columns="visit", values="value")
    assert raw.summary["effect"].iloc[0] == pytest.approx((diffs["V1"] - diffs["V0"]).mean())
    with pytest.raises(DataError, match="log scale"):
        summarize_mixed_model(frame.assign(value=frame["value"].where(frame.index != 3, 0.0)))
    with pytest.raises(CelltrialError, match="baseline_visit"):
        summarize_mixed_model(frame.drop(columns="visit_day"))
    assert summarize_mixed_model(frame.drop(columns="visit_day"), baseline_visit="V0").fitted


def test_absent_test_is_not_fitted() -> None:
    frame, _ = balanced(5)
    result = summarize_mixed_model(frame, test="IL6")
    assert not result.fitted and result.n_observations == 0
    assert any("no scheduled observations" in c for c in result.caveats)
