"""Greedy nearest-neighbour matching: with/without replacement, ratio, calipers, exact strata."""

import numpy as np
import pandas as pd
from scipy.spatial.distance import mahalanobis

from celltrial.external.matching import compute_mahalanobis, compute_matches, summarize_matching
from celltrial.external.spec import load_target_trial

D = np.array([[1.0, 2.0, 9.0], [1.5, 8.0, 9.0]])


def _pairs(frame):
    return list(zip(frame["treated_index"], frame["control_index"], strict=True))


def test_without_replacement_hardest_first():
    # treated 1's nearest is farther (1.5): it is served first and takes control 0
    assert _pairs(compute_matches(D, ratio=1, replace=False)) == [(0, 1), (1, 0)]


def test_with_replacement_each_takes_its_nearest():
    assert _pairs(compute_matches(D, ratio=1, replace=True)) == [(0, 0), (1, 0)]
    two = compute_matches(D, ratio=2, replace=True)
    assert _pairs(two) == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_caliper_leaves_a_treated_subject_without_a_match():
    pairs = compute_matches(D, ratio=1, replace=False, caliper=1.8)
    assert _pairs(pairs) == [(1, 0)]  # treated 0's only other control is at 2 > 1.8
    pairs = compute_matches(D, ratio=1, replace=False, caliper=1.5)
    assert _pairs(pairs) == [(1, 0)]  # the caliper keeps its edge (1.5 allowed)


def test_ratio_two_without_replacement_rounds():
    d = np.array([[1.0, 2.0, 3.0], [1.5, 1.6, 9.0]])
    pairs = compute_matches(d, ratio=2, replace=False)
    # round 1: t1 -> c0, t0 -> c1; round 2: t1 -> c2 (only one left), t0 gets none
    assert _pairs(pairs) == [(0, 1), (1, 0), (1, 2)]
    assert pairs["match_rank"].tolist() == [1, 1, 2]


def test_forbidden_pairs_are_never_made():
    d = np.array([[np.inf, 5.0], [np.inf, np.inf]])
    assert _pairs(compute_matches(d, ratio=2, replace=True)) == [(0, 1)]


def test_mahalanobis_matches_scipy():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(3, 2)), rng.normal(size=(4, 2))
    cov = np.array([[2.0, 0.5], [0.5, 1.0]])
    got = compute_mahalanobis(x, y, cov)
    inverse = np.linalg.inv(cov)
    expected = [[mahalanobis(a, b, inverse) for b in y] for a in x]
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def _baseline(rows):
    base = {"arm": "external", "eligible": True, "sex": "M", "age_band": "50–65", "age": 60.0}
    frame = pd.DataFrame([base | r for r in rows])
    frame["log_LYM"] = np.log(frame["LYM"])
    return frame


SPEC = load_target_trial().model_copy(
    update={
        "matching": load_target_trial().matching.model_copy(
            update={"variables": ("log_LYM",), "ratio": 1, "caliper": 1.0}
        )
    }
)


def test_exact_strata_and_reported_unmatched():
    frame = _baseline(
        [
            {"subject_id": "T1", "arm": "treated", "LYM": 0.5},
            {"subject_id": "T2", "arm": "treated", "LYM": 0.5, "sex": "F"},
            {"subject_id": "T3", "arm": "treated", "LYM": 0.5, "age_band": "18–50"},
            {"subject_id": "C1", "LYM": 0.6, "sex": "F"},
            {"subject_id": "C2", "LYM": 0.55},
            {"subject_id": "C3", "LYM": 5.0, "age_band": "18–50"},
            {"subject_id": "C4", "LYM": 0.5, "eligible": False},
        ]
    )
    result = summarize_matching(frame, spec=SPEC)
    pairs = dict(zip(result.summary["treated_id"], result.summary["control_id"], strict=True))
    assert pairs == {"T1": "C2", "T2": "C1"}  # same sex and band only; C4 is not eligible
    reasons = dict(zip(result.unmatched["treated_id"], result.unmatched["reason"], strict=True))
    assert list(reasons) == ["T3"] and "beyond the caliper" in reasons["T3"]
    assert result.n_matched_treated == 2 and result.n_controls_matched == 2
    assert any("T3" in c for c in result.caveats)


def test_weights_with_replacement():
    frame = _baseline(
        [
            {"subject_id": "T1", "arm": "treated", "LYM": 0.5},
            {"subject_id": "T2", "arm": "treated", "LYM": 0.51},
            {"subject_id": "C1", "LYM": 0.5},
            {"subject_id": "C2", "LYM": 0.9},
        ]
    )
    spec = SPEC.model_copy(
        update={"matching": SPEC.matching.model_copy(update={"ratio": 2, "caliper": None})}
    )
    result = summarize_matching(frame, spec=spec, replace=True)
    weights = result.matched.set_index("subject_id")["weight"]
    # each treated has 2 controls (C1, C2) -> each control weighs 1/2 + 1/2
    assert weights["C1"] == 1.0 and weights["C2"] == 1.0 and weights["T1"] == 1.0
    assert result.matched.set_index("subject_id")["n_uses"]["C1"] == 2
    alone = summarize_matching(frame, spec=spec, replace=False)
    assert alone.n_controls_matched == 2 and len(alone.summary) == 2
