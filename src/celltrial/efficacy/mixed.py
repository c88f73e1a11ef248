"""Linear mixed-effects model of one marker over all nominal visits (fold change vs baseline).

log(value) = visit effect (baseline visit = reference) + subject random intercept + error, fitted
by REML: exactly from per-subject sums (:mod:`celltrial.efficacy.reml`, the estimates statsmodels
``MixedLM`` gives, in milliseconds) where the between-subject variance is clearly above zero, else
with statsmodels ``MixedLM`` itself. Uses every observed visit of every subject (missing visits
are fine under missing-at-random), unlike the per-visit paired tests.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from celltrial.efficacy.multiplicity import compute_holm, multiplicity_caveat
from celltrial.efficacy.observations import (
    check_confidence,
    check_positive,
    is_log_normal,
    limit_caveat,
)
from celltrial.efficacy.reml import compute_group_sums, fit_random_intercept
from celltrial.errors import CelltrialError
from celltrial.frames import check_columns

SUMMARY_COLUMNS: tuple[str, ...] = (
    "visit",
    "visit_day",
    "n",
    "estimate",
    "se",
    "effect",
    "ci_low",
    "ci_high",
    "p_value",
    "p_holm",
)

#: Optimiser gradient tolerance: statsmodels' default leaves variance components ~1e-4 off the
#: REML optimum; this reaches it to ~1e-10 at little cost.
GRADIENT_TOLERANCE = 1e-8

#: Below this many subjects the result carries a small-sample caveat.
FEW_SUBJECTS = 10


@dataclass(frozen=True, eq=False)
class MixedModelResult:
    """Visit effects vs baseline from a random-intercept model (``summary``: one row per visit).

    ``estimate``/``se`` are on the model scale (log difference when ``log``); ``effect``,
    ``ci_low`` and ``ci_high`` on the reported scale: fold change vs baseline when ``log``,
    difference otherwise. ``fitted`` is False (and ``summary`` empty) when the model could not be
    fitted; ``caveats`` says why.
    """

    summary: pd.DataFrame
    test: str | None
    baseline_visit: str | None
    log: bool
    fitted: bool
    converged: bool
    n_subjects: int
    n_observations: int
    df: float
    subject_variance: float
    residual_variance: float
    confidence: float
    method: str
    assumptions: tuple[str, ...]
    caveats: tuple[str, ...]


_ASSUMPTIONS = (
    "subjects are independent; within a subject any two visits are equally correlated "
    "(random intercept = compound symmetry)",
    "residuals are normal with one variance at every visit, on the analysis scale",
    "missing visits are missing at random given the observed values",
)


def summarize_mixed_model(
    observations: pd.DataFrame,
    *,
    test: str | None = None,
    baseline_visit: str | None = None,
    log: bool | None = None,
    confidence: float = 0.95,
    log_normal: Mapping[str, bool] | None = None,
) -> MixedModelResult:
    """Fit value ~ visit + (1 | subject) for one test and report effects vs the baseline visit.

    Uses scheduled rows with a ``visit`` (see
    :func:`~celltrial.efficacy.visits.derive_nominal_visits`). ``test`` picks the marker when the
    frame holds several. ``baseline_visit`` defaults to the visit with the earliest
    ``visit_day``. ``log=None`` follows the catalogue's log-normal flag. Intervals and p-values
    are Wald t with between-within degrees of freedom (observations − subjects − visit parameters
    estimable within subjects; SAS DDFM=BETWITHIN), exact for balanced complete data. A model that
    cannot be fitted gives a result with ``fitted=False`` and the reason in ``caveats``.
    """
    confidence = check_confidence(confidence)
    check_columns(observations, ("subject_id", "visit", "value"), what="observation")
    rows = _select_rows(observations, test)
    test_name = test
    if test_name is None and "test" in rows.columns and rows["test"].nunique() == 1:
        test_name = str(rows["test"].iloc[0])
    use_log = (is_log_normal(test_name, log_normal) if test_name else False) if log is None else log
    values = rows["value"].to_numpy(float)
    if use_log:
        check_positive(values, what=f"{test_name or 'values'} (mixed model)")
        values = np.log(values)

    if rows.empty:
        what = f"test {test_name}" if test_name else "the frame"
        return _Partial(test_name, baseline_visit, use_log, confidence, rows).failed(
            f"no scheduled observations with a value for {what}"
        )
    levels = _visit_order(rows)
    if baseline_visit is None:
        if "visit_day" not in rows.columns:
            raise CelltrialError("give baseline_visit: the frame has no visit_day to find it by")
        baseline_visit = levels[0] if levels else None
    base = _Partial(test_name, baseline_visit, use_log, confidence, rows)

    if baseline_visit not in levels:
        return base.failed(f"baseline visit {baseline_visit!r} has no observations")
    others = [v for v in levels if v != baseline_visit]
    n_subjects = int(rows["subject_id"].nunique())
    if n_subjects < 2:
        return base.failed(f"{n_subjects} subject(s): the model needs at least 2")
    if not others:
        return base.failed("no visit after baseline has observations")

    visit = rows["visit"].to_numpy(dtype=object)
    dummies = np.column_stack([(visit == v).astype(float) for v in others])
    groups = pd.factorize(rows["subject_id"])[0]
    within_rank = _within_rank(dummies, groups)
    df = float(len(rows) - n_subjects - within_rank)
    if df < 1:
        return base.failed(
            f"{len(rows)} observations on {n_subjects} subjects and {len(levels)} visits leave "
            "no degrees of freedom for the within-subject error"
        )
    caveats: list[str] = []
    if within_rank < len(others):
        caveats.append(
            "some visit effects are not estimable within subjects (their subjects have no other "
            "visit): those rest on between-subject comparison only"
        )

    exog = np.column_stack([np.ones(len(rows)), dummies])
    fit, fit_caveats = _fit(values, exog, groups)
    caveats += fit_caveats
    if fit is None:
        return base.failed(*caveats)

    estimate = np.asarray(fit.fe_params)[1:]
    se = np.asarray(fit.bse_fe)[1:]
    quantile = float(stats.t.ppf(0.5 + confidence / 2.0, df))
    back = np.exp if use_log else (lambda x: x)
    with np.errstate(invalid="ignore", divide="ignore"):
        p_value = 2.0 * stats.t.sf(np.abs(estimate / se), df)
    counts = rows.groupby("visit", sort=False)["value"].size()
    days = _visit_days(rows)
    summary = pd.DataFrame(
        {
            "visit": others,
            "visit_day": [days.get(v, np.nan) for v in others],
            "n": [int(counts[v]) for v in others],
            "estimate": estimate,
            "se": se,
            "effect": back(estimate),
            "ci_low": back(estimate - quantile * se),
            "ci_high": back(estimate + quantile * se),
            "p_value": p_value,
            "p_holm": compute_holm(p_value),
        }
    )
    subject_variance = float(np.asarray(fit.cov_re)[0, 0])
    residual_variance = float(fit.scale)
    if np.isnan(se).any():
        caveats.append("some standard errors could not be computed (singular information matrix)")
    if subject_variance <= 1e-6 * residual_variance:
        caveats.append(
            "between-subject variance estimated as zero (boundary): the model treats the "
            "observations as independent"
        )
    note = limit_caveat(rows)
    if note:
        caveats.append(note)
    caveats += _general_caveats(n_subjects, len(others), use_log, 1.0 - confidence)
    return MixedModelResult(
        summary=summary,
        test=test_name,
        baseline_visit=baseline_visit,
        log=use_log,
        fitted=True,
        converged=bool(fit.converged),
        n_subjects=n_subjects,
        n_observations=len(rows),
        df=df,
        subject_variance=subject_variance,
        residual_variance=residual_variance,
        confidence=confidence,
        method=_method(use_log),
        assumptions=_ASSUMPTIONS,
        caveats=tuple(dict.fromkeys(caveats)),
    )


def _select_rows(observations: pd.DataFrame, test: str | None) -> pd.DataFrame:
    frame = observations
    if "test" in frame.columns:
        if test is not None:
            frame = frame[frame["test"] == test]
        elif frame["test"].nunique() > 1:
            names = ", ".join(sorted(map(str, frame["test"].unique())))
            raise CelltrialError(f"the frame holds several tests ({names}); choose one with test=")
    keep = frame["visit"].notna() & frame["value"].notna()
    if "unscheduled" in frame.columns:
        keep &= ~frame["unscheduled"].fillna(False).astype(bool)
    rows = frame.loc[keep].copy()
    rows["value"] = pd.to_numeric(rows["value"], errors="coerce").astype(float)
    return rows.reset_index(drop=True)


def _visit_days(rows: pd.DataFrame) -> dict[object, float]:
    if "visit_day" not in rows.columns:
        return {}
    return rows.groupby("visit", sort=False)["visit_day"].first().astype(float).to_dict()


def _visit_order(rows: pd.DataFrame) -> list[object]:
    """Visits by nominal day when known, else by label."""
    labels = list(pd.unique(rows["visit"]))
    days = _visit_days(rows)
    if days:
        return sorted(labels, key=lambda v: (days.get(v, np.inf), str(v)))
    return sorted(labels, key=str)


#: Eigenvalues of the centred dummies' Gram matrix below this fraction of the largest count as
#: zero: singular values below 1e-6 of the largest (rounding leaves ~1e-8 where they are zero;
#: a visit's centred column that is not zero has singular values near 1).
RANK_TOLERANCE = 1e-12


def _within_rank(dummies: np.ndarray, groups: np.ndarray) -> int:
    """Rank of the subject-centred visit dummies: visit effects estimable within subjects.

    From their Gram matrix D'D − Σ_subjects s s'/n (s: the subject's visit counts), k × k, not
    from an SVD of the N × k matrix: the same rank for a fraction of the time.
    """
    if not dummies.size:
        return 0
    counts = np.bincount(groups).astype(float)
    sums = compute_group_sums(dummies, groups, len(counts))
    gram = dummies.T @ dummies - (sums / counts[:, None]).T @ sums
    eigenvalues = np.linalg.eigvalsh((gram + gram.T) / 2.0)
    largest = float(eigenvalues.max(initial=0.0))
    if largest <= 0.0:
        return 0
    return int(np.count_nonzero(eigenvalues > largest * RANK_TOLERANCE))


def _fit(values: np.ndarray, exog: np.ndarray, groups: np.ndarray) -> tuple[Any, list[str]]:
    """REML fit; warnings become caveats and fitting failures a caveat instead of a crash.

    The exact random-intercept fit where it is certainly statsmodels' answer without a warning,
    statsmodels ``MixedLM`` everywhere else (boundary, several optima, ill-conditioned data).
    """
    exact = fit_random_intercept(values, exog, groups)
    if exact is not None:
        return exact, []
    from statsmodels.regression.mixed_linear_model import MixedLM

    caveats: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fit = MixedLM(values, exog, groups=groups).fit(reml=True, gtol=GRADIENT_TOLERANCE)
        except (np.linalg.LinAlgError, ValueError, FloatingPointError, ZeroDivisionError) as exc:
            fit = None
            caveats.append(f"model could not be fitted: {type(exc).__name__}: {exc}")
    for item in caught:
        caveats.append(f"model fitting warning ({item.category.__name__}): {item.message}")
    if fit is not None and not fit.converged:
        caveats.append("the optimiser did not converge: estimates may be unreliable")
    return fit, caveats


def _general_caveats(n_subjects: int, n_visits: int, log: bool, alpha: float) -> list[str]:
    out = [
        "intervals are Wald t with between-within degrees of freedom; no Kenward–Roger "
        "small-sample correction is available in statsmodels"
    ]
    if n_subjects < FEW_SUBJECTS:
        out.append(
            f"only {n_subjects} subjects: variance components are poorly estimated and the "
            "intervals lean on the model's assumptions; read them with the individual trajectories"
        )
    note = multiplicity_caveat(n_visits, alpha=alpha, what="visits vs baseline")
    if note:
        out.append(note)
    if log:
        out.append("effects are ratios of geometric means (fold changes) vs the baseline visit")
    return out


def _method(log: bool) -> str:
    scale = "natural-log values" if log else "values"
    effect = "fold change = exp(coefficient)" if log else "difference = coefficient"
    return (
        f"linear mixed-effects model on {scale} (REML, maximised exactly; the estimates of "
        "statsmodels MixedLM): nominal visit as a "
        f"factor with the baseline visit as reference, random intercept per subject; {effect}; "
        "Wald t intervals and p-values with between-within degrees of freedom; Holm-adjusted "
        "p-values over the visits"
    )


@dataclass(frozen=True, eq=False)
class _Partial:
    """What is known before fitting, to build a not-fitted result."""

    test: str | None
    baseline_visit: str | None
    log: bool
    confidence: float
    rows: pd.DataFrame

    def failed(self, *reasons: str) -> MixedModelResult:
        return MixedModelResult(
            summary=pd.DataFrame({c: [] for c in SUMMARY_COLUMNS}),
            test=self.test,
            baseline_visit=self.baseline_visit,
            log=self.log,
            fitted=False,
            converged=False,
            n_subjects=int(self.rows["subject_id"].nunique()),
            n_observations=len(self.rows),
            df=float("nan"),
            subject_variance=float("nan"),
            residual_variance=float("nan"),
            confidence=self.confidence,
            method=_method(self.log),
            assumptions=_ASSUMPTIONS,
            caveats=tuple(dict.fromkeys(("model not fitted", *reasons))),
        )
