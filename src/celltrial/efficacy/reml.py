"""Exact REML fit of the random-intercept linear model, in closed form per subject.

y = Xβ + u_subject + ε, u ~ N(0, γσ²), ε ~ N(0, σ²). With one random intercept each subject's
covariance is σ²(I + γ11'), whose inverse and determinant are closed forms (Sherman–Morrison), so
the REML likelihood profiled over β and σ² is a function of γ alone, computed from per-subject
sums without a loop over subjects. Its derivative is solved for γ to machine precision (Brent),
and the standard errors are statsmodels MixedLM's own: the inverse of the same observed Hessian
(with respect to β and γ, σ² profiled), written out for this model.

Why: ``MixedLM.fit`` spends ~1 s per 15,000-row model looping over subjects in Python for every
likelihood, score and Hessian evaluation; this gives the same estimates in milliseconds. It is
used only where the answer is certainly the one statsmodels gives without a warning: an interior
optimum (γ > 0, the only root of the score on a grid of γ), a between-subject variance well away
from statsmodels' boundary warning (0.01), a well-conditioned information matrix and a negative
Hessian diagonal. Anywhere else :func:`fit_random_intercept` returns None and the caller fits
with statsmodels, so boundary fits, warnings and failures stay statsmodels' own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize

#: statsmodels warns "The MLE may be on the boundary of the parameter space" below this
#: between-subject variance; fits within twice of it are left to statsmodels.
STATSMODELS_BOUNDARY = 0.01

#: The exact path is used only at a variance ratio γ in this range (a scale-free quantity), well
#: away from the ratio below which the mixed model says the variance is zero (1e-6).
GAMMA_RANGE = (1e-4, 1e6)

#: Score signs are checked at these variance ratios: more than one sign change (several local
#: optima) leaves the fit to statsmodels.
GAMMA_GRID = np.logspace(-5, 7, 25)

#: Largest condition number of X'V⁻¹X accepted.
MAX_CONDITION = 1e10


@dataclass(frozen=True)
class RandomInterceptFit:
    """The estimates ``summarize_mixed_model`` reads, named as on statsmodels' results."""

    fe_params: np.ndarray
    bse_fe: np.ndarray
    cov_re: np.ndarray  # 1 × 1: the between-subject variance γσ²
    scale: float  # σ²
    gamma: float
    converged: bool = True


def compute_group_sums(matrix: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Column sums of ``matrix`` (N × k) within each group code 0…n_groups−1: n_groups × k."""
    return np.column_stack(
        [np.bincount(groups, weights=column, minlength=n_groups) for column in matrix.T]
    ).reshape(n_groups, matrix.shape[1])


class _Sums:
    """Per-subject sums of one data set, and the profiled REML pieces at a variance ratio γ."""

    def __init__(self, y: np.ndarray, exog: np.ndarray, groups: np.ndarray):
        self.y, self.exog, self.groups = y, exog, groups
        n_groups = int(groups.max()) + 1
        self.n = np.bincount(groups, minlength=n_groups).astype(float)
        self.col_sums = compute_group_sums(exog, groups, n_groups)  # s_i = X_i'1
        self.xtx = exog.T @ exog
        self.xty = np.einsum("ni,n->i", exog, y)
        self.y_sums = np.bincount(groups, weights=y, minlength=n_groups)
        self.df = len(y) - exog.shape[1]  # REML: N − p

    def at(self, gamma: float) -> _Pieces:
        c = 1.0 / (1.0 + self.n * gamma)  # V_i⁻¹1 = c_i 1
        w = gamma * c  # V_i⁻¹ = I − w_i 11'
        s = self.col_sums
        xtvix = self.xtx - (s * w[:, None]).T @ s
        xtviy = self.xty - np.einsum("gi,g->i", s, w * self.y_sums)
        beta = np.linalg.solve(xtvix, xtviy)
        resid = self.y - np.einsum("ni,i->n", self.exog, beta)
        e = np.bincount(self.groups, weights=resid, minlength=len(self.n))  # 1'r_i
        rvir = float(np.sum(resid * resid) - np.sum(w * e**2))  # Σ r_i'V_i⁻¹r_i
        return _Pieces(gamma, c, xtvix, beta, e, rvir)

    def score(self, gamma: float) -> float:
        """d/dγ of the REML log-likelihood profiled over β and σ²."""
        p = self.at(gamma)
        inverse = np.linalg.inv(p.xtvix)
        leverage = np.sum((self.col_sums @ inverse) * self.col_sums, axis=1)  # s_i'A⁻¹s_i
        c2 = p.c**2
        return -0.5 * (
            -self.df * float(np.sum(c2 * p.e**2)) / p.rvir
            + float(np.sum(self.n * p.c))
            - float(np.sum(c2 * leverage))
        )

    def hessian(self, p: _Pieces) -> np.ndarray:
        """statsmodels ``MixedLM.hessian`` (REML) for one random intercept: β then γ."""
        s, n, c, e, fac, r = self.col_sums, self.n, p.c, p.e, self.df, p.rvir
        c2, c3 = c**2, c**3
        k = s.shape[1]
        hess = np.empty((k + 1, k + 1))
        hess[:k, :k] = -fac * p.xtvix / r
        fere = -fac * np.einsum("gi,g->i", s, c2 * e) / r
        hess[:k, k] = hess[k, :k] = fere
        b = float(np.sum(c2 * e**2))
        d = float(np.sum(2.0 * c3 * n * e**2))
        hess_re = 0.5 * float(np.sum(c2 * n**2)) - 0.5 * fac * (d / r - b**2 / r**2)
        xtax = (s * c2[:, None]).T @ s
        f = 2.0 * (s * (c3 * n)[:, None]).T @ s
        ql = np.linalg.solve(p.xtvix, xtax)
        hess_re += 0.5 * (float(np.sum(ql.T * ql)) - float(np.trace(np.linalg.solve(p.xtvix, f))))
        hess[k, k] = hess_re
        return hess


@dataclass(frozen=True)
class _Pieces:
    gamma: float
    c: np.ndarray
    xtvix: np.ndarray
    beta: np.ndarray
    e: np.ndarray
    rvir: float


def fit_random_intercept(
    y: np.ndarray, exog: np.ndarray, groups: np.ndarray
) -> RandomInterceptFit | None:
    """REML fit of y ~ exog + (1 | groups); None where statsmodels should fit it instead.

    ``groups`` are integer codes 0…G−1. None means: the optimum is on or near the boundary
    (γ = 0), the score has more than one sign change, the information matrix is ill-conditioned,
    or the Hessian is not negative on its diagonal — the cases where statsmodels warns or where
    its optimiser could settle elsewhere.
    """
    y = np.asarray(y, dtype=float)
    exog = np.asarray(exog, dtype=float)
    groups = np.asarray(groups, dtype=np.intp)
    if len(y) <= exog.shape[1] or groups.min() < 0:
        return None
    try:
        with np.errstate(divide="raise", over="raise", invalid="raise", under="ignore"):
            sums = _Sums(y, exog, groups)
            if np.linalg.cond(sums.xtx) > MAX_CONDITION:
                return None
            signs = np.sign([sums.score(g) for g in GAMMA_GRID])
            if sums.score(0.0) <= 0 or np.count_nonzero(np.diff(signs)) != 1 or signs[-1] >= 0:
                return None
            high = int(np.argmax(signs < 0))
            low = 0.0 if high == 0 else float(GAMMA_GRID[high - 1])
            gamma = optimize.brentq(
                sums.score, low, float(GAMMA_GRID[high]), xtol=1e-300, rtol=4 * np.finfo(float).eps
            )
            if not GAMMA_RANGE[0] <= gamma <= GAMMA_RANGE[1]:
                return None
            pieces = sums.at(gamma)
            if np.linalg.cond(pieces.xtvix) > MAX_CONDITION:
                return None
            scale = pieces.rvir / sums.df
            if gamma * scale < 2 * STATSMODELS_BOUNDARY:
                return None
            hess = sums.hessian(pieces)
            if np.any(np.diag(hess) >= 0):
                return None
            cov = np.linalg.inv(-hess)
    except (np.linalg.LinAlgError, FloatingPointError, ValueError, ZeroDivisionError):
        return None
    variances = np.diag(cov)[: exog.shape[1]]
    if not np.all(np.isfinite(variances)) or np.any(variances <= 0):
        return None
    return RandomInterceptFit(
        fe_params=pieces.beta,
        bse_fe=np.sqrt(variances),
        cov_re=np.array([[gamma * scale]]),
        scale=scale,
        gamma=gamma,
    )
