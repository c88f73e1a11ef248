"""The exact random-intercept REML fit gives statsmodels MixedLM's answer, to 1e-8.

Reference: the statsmodels path the mixed model took before the exact fit existed, computed in
the test (``fit_random_intercept`` forced to decline), on hand-made designs chosen to be awkward
(unbalanced, single-visit subjects, near the zero-variance boundary, very large between-subject
variance) and on the 5- and 30-subject simulated studies.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from statsmodels.regression.mixed_linear_model import MixedLM

from celltrial.efficacy import mixed, summarize_mixed_model
from celltrial.efficacy.reml import fit_random_intercept

NUMBERS = ["visit_day", "n", "estimate", "se", "effect", "ci_low", "ci_high", "p_value", "p_holm"]


def plain(monkeypatch: pytest.MonkeyPatch, *args, **kwargs) -> mixed.MixedModelResult:
    """The mixed model through statsmodels only (the code path before the exact fit)."""
    with monkeypatch.context() as patch:
        patch.setattr(mixed, "fit_random_intercept", lambda *a: None)
        return summarize_mixed_model(*args, **kwargs)


def assert_same(
    fast: mixed.MixedModelResult, slow: mixed.MixedModelResult, *, rtol: float = 1e-8
) -> None:
    """Same result; numbers to ``rtol`` (and 1e-8 absolute), variance components to 1e-6."""
    assert (fast.fitted, fast.converged, fast.n_subjects, fast.n_observations, fast.df) == (
        slow.fitted,
        slow.converged,
        slow.n_subjects,
        slow.n_observations,
        slow.df,
    )
    assert fast.caveats == slow.caveats
    assert list(fast.summary["visit"]) == list(slow.summary["visit"])
    for column in NUMBERS:
        np.testing.assert_allclose(
            fast.summary[column].to_numpy(float),
            slow.summary[column].to_numpy(float),
            rtol=rtol,
            atol=1e-8,
            err_msg=column,
        )
    # the variance components: statsmodels' optimiser stops at a gradient tolerance, ~1e-7
    # relative from the optimum the exact fit solves for (see test_exact_fit_is_the_optimum)
    for name in ("subject_variance", "residual_variance"):
        np.testing.assert_allclose(
            getattr(fast, name), getattr(slow, name), rtol=1e-6, err_msg=name
        )


def design(
    seed: int,
    *,
    subjects: int = 12,
    visits: int = 6,
    subject_sd: float = 0.6,
    missing: float = 0.0,
    scale: float = 50.0,
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    effect = np.linspace(0.0, -1.2, visits)
    logs = (
        np.log(scale)
        + rng.normal(0.0, subject_sd, subjects)[:, None]
        + effect[None, :]
        + rng.normal(0.0, 0.3, (subjects, visits))
    )
    frame = pd.DataFrame(
        {
            "subject_id": np.repeat([f"S{i:02d}" for i in range(subjects)], visits),
            "test": "CRP",
            "visit": np.tile([f"V{j}" for j in range(visits)], subjects),
            "visit_day": np.tile(np.arange(visits) * 3.0, subjects),
            "value": np.exp(logs).ravel(),
        }
    )
    keep = rng.random(len(frame)) >= missing
    keep[:: visits * 3] = True  # some baselines always present
    return frame[keep].reset_index(drop=True)


DESIGNS = {
    "balanced": lambda: design(1),
    "unbalanced, 25 % missing": lambda: design(2, subjects=20, missing=0.25),
    "subjects seen once": lambda: pd.concat(
        [design(3, subjects=10), design(4, subjects=4, visits=6).iloc[[0, 7, 14, 21]]],
        ignore_index=True,
    ).assign(subject_id=lambda f: f["subject_id"] + np.repeat(["", "b"], [60, 4])),
    "large between-subject variance": lambda: design(5, subject_sd=5.0, missing=0.1),
    "near the boundary": lambda: design(6, subjects=15, subject_sd=0.08, missing=0.1),
    "at the boundary": lambda: design(7, subjects=6, subject_sd=0.0),
    "two subjects": lambda: design(8, subjects=2, visits=4),
    "many subjects": lambda: design(9, subjects=120, visits=10, missing=0.05),
}


@pytest.mark.parametrize("name", list(DESIGNS))
@pytest.mark.parametrize("log", [True, False])
def test_same_results_as_statsmodels(name: str, log: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every number as before to 1e-7 relative: the old optimiser stopped at a gradient
    tolerance up to ~5e-8 from the REML optimum in standard errors (1e-8 absolute, and within
    1e-8 on the simulated studies: tests/efficacy/test_results_unchanged.py)."""
    frame = DESIGNS[name]()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fast = summarize_mixed_model(frame, log=log)
    slow = plain(monkeypatch, frame, log=log)
    if name == "near the boundary" and not log:
        # on the raw scale statsmodels' optimiser fails here (every method, |grad| = 2.4): the
        # old result was 'not converged', estimates withheld; the exact fit is the optimum
        assert not slow.converged and fast.converged and fast.fitted
        assert any("Gradient optimization failed" in c for c in slow.caveats)
        assert not any("warning" in c for c in fast.caveats)
        return
    assert_same(fast, slow, rtol=1e-7)


def _arrays(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    visits = sorted(frame["visit"].unique())
    dummies = [(frame["visit"] == v).to_numpy(float) for v in visits[1:]]
    exog = np.column_stack([np.ones(len(frame)), *dummies])
    groups = pd.factorize(frame["subject_id"])[0]
    return np.log(frame["value"].to_numpy(float)), exog, groups


@pytest.mark.parametrize(
    "name",
    [
        "balanced",
        "unbalanced, 25 % missing",
        "subjects seen once",
        "large between-subject variance",
        "many subjects",
    ],
)
def test_exact_fit_is_the_optimum(name: str) -> None:
    """Interior fits take the exact path; there statsmodels' own code, started at the exact
    variance ratio, returns the same estimates and standard errors (its Hessian, written out),
    and by its own code the REML likelihood is no lower, and the score no further from zero,
    than at the point its optimiser stops."""
    y, exog, groups = _arrays(DESIGNS[name]())
    exact = fit_random_intercept(y, exog, groups)
    assert exact is not None
    model = MixedLM(y, exog, groups=groups)
    at_exact = model.fit(reml=True, gtol=1e-8, start_params=np.array([np.sqrt(exact.gamma)]))
    np.testing.assert_allclose(exact.fe_params, at_exact.fe_params, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(exact.bse_fe, at_exact.bse_fe, rtol=1e-10)
    np.testing.assert_allclose(exact.cov_re, at_exact.cov_re, rtol=1e-10)
    assert exact.scale == pytest.approx(at_exact.scale, rel=1e-10)
    stopped = MixedLM(y, exog, groups=groups).fit(reml=True, gtol=1e-8)
    gamma_stopped = float(stopped.cov_re_unscaled[0, 0])
    at_exact, at_stop = np.array([np.sqrt(exact.gamma)]), np.array([np.sqrt(gamma_stopped)])
    highest = model.loglike(at_exact)
    assert highest >= model.loglike(at_stop) - 1e-13 * abs(highest)  # (rounding)
    assert abs(model.score(at_exact)[0]) <= max(abs(model.score(at_stop)[0]), 1e-9 * len(y))
    assert exact.gamma == pytest.approx(gamma_stopped, rel=1e-5)


@pytest.mark.parametrize("name", ["at the boundary", "near the boundary"])
def test_boundary_fits_are_left_to_statsmodels(name: str) -> None:
    y, exog, groups = _arrays(DESIGNS[name]())
    assert fit_random_intercept(y, exog, groups) is None


def test_optimum_where_statsmodels_fails() -> None:
    """The raw-scale near-boundary design: statsmodels' optimisers all stop short; the exact
    variance ratio has a higher REML likelihood and a zero score by statsmodels' own code."""
    y, exog, groups = _arrays(DESIGNS["near the boundary"]())
    y = np.exp(y)
    exact = fit_random_intercept(y, exog, groups)
    assert exact is not None
    model = MixedLM(y, exog, groups=groups)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        failed = model.fit(reml=True, gtol=1e-8)
    assert not failed.converged
    at_exact = np.array([np.sqrt(exact.gamma)])
    stopped = np.array([np.sqrt(failed.cov_re_unscaled[0, 0])])
    assert model.loglike(at_exact) > model.loglike(stopped)
    assert abs(model.score(at_exact)[0]) < 1e-9 * len(y)


def test_declines_what_it_cannot_fit() -> None:
    y, exog, groups = _arrays(design(10))
    assert fit_random_intercept(y, np.column_stack([exog, exog[:, 1]]), groups) is None  # rank
    assert fit_random_intercept(y[:5], exog[:5], groups[:5]) is None  # fewer rows than columns
    one_each = np.arange(len(y))  # every row its own subject: γ not identifiable
    assert fit_random_intercept(y, exog, one_each) is None


@pytest.mark.parametrize("name", list(DESIGNS))
def test_within_rank_as_by_svd(name: str) -> None:
    """The within-subject rank from the k × k Gram matrix is the SVD rank of the N × k centred
    dummies (numpy's matrix_rank, what the degrees of freedom were computed with before)."""
    frame = DESIGNS[name]()
    # also a design whose last visits are seen only by subjects seen once (rank-deficient)
    lonely = frame.assign(
        subject_id=np.where(frame["visit"].isin(["V4", "V5"]), "x" + frame.index.astype(str), "")
    )
    lonely["subject_id"] = lonely["subject_id"].where(
        lonely["subject_id"] != "", frame["subject_id"]
    )
    for f in (frame, lonely):
        _, exog, groups = _arrays(f)
        dummies = exog[:, 1:]
        counts = np.bincount(groups).astype(float)
        means = np.vstack([np.bincount(groups, weights=c) for c in dummies.T]).T / counts[:, None]
        expected = int(np.linalg.matrix_rank(dummies - means[groups]))
        assert mixed._within_rank(dummies, groups) == expected
    assert mixed._within_rank(dummies[:, :0], groups) == 0
