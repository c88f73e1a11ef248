"""SMD and variance ratio against hand-computed values."""

import numpy as np
import pytest

from celltrial.external.balance import (
    compute_smd,
    compute_variance_ratio,
    compute_weighted_mean_var,
    compute_weighted_median,
    meets_balance_target,
)


def test_smd_and_variance_ratio_by_hand():
    t, c = np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 6.0, 8.0])
    # mean 2 vs 5; s² 1 vs 20/3; pooled SD sqrt((1 + 20/3) / 2) = 1.957890
    assert compute_smd(t, c) == pytest.approx(-3 / np.sqrt((1 + 20 / 3) / 2))
    assert compute_smd(t, c) == pytest.approx(-1.532262, abs=1e-6)
    assert compute_variance_ratio(t, c) == pytest.approx(0.15)
    # a fixed yardstick (the before-matching SD) is used as given
    assert compute_smd(t, c, scale=2.0) == pytest.approx(-1.5)


def test_binary_smd_uses_p_times_one_minus_p():
    t, c = np.array([1.0, 1.0, 0.0, 0.0]), np.array([1.0, 0.0, 0.0, 0.0])
    assert compute_smd(t, c) == pytest.approx(0.25 / np.sqrt((0.25 + 0.1875) / 2))
    assert np.isnan(compute_variance_ratio(t, c))


def test_weighted_statistics():
    mean, var = compute_weighted_mean_var(np.array([2.0, 4.0]), np.array([1.0, 3.0]))
    assert mean == pytest.approx(3.5)
    # reliability weights: sum w (x - m)^2 / (W - sum w^2 / W) = (2.25 + 0.75) / (4 - 10/4)
    assert var == pytest.approx(3.0 / 1.5)
    # integer weights behave like repeated rows for the median
    assert compute_weighted_median(np.array([1.0, 5.0, 9.0]), np.array([1.0, 1.0, 3.0])) == 9.0
    assert compute_weighted_median(np.array([1.0, 3.0])) == 2.0


@pytest.mark.parametrize(
    ("smd", "ratio", "ok"),
    [
        (0.099, 1.0, True),
        (-0.099, 0.5, True),  # both edges of the variance ratio are inside
        (0.099, 2.0, True),
        (0.0, 0.15, False),  # |SMD| < 0.1 no longer passes whatever the variance ratio
        (0.05, 0.499, False),
        (0.05, 2.01, False),
        (0.099, 5.0, False),
        (0.1, 1.0, False),  # the SMD edge is outside
        (-0.1, 1.0, False),
        (0.2, 1.0, False),  # the old loose target (< 0.25 with a good ratio) is gone
        (0.05, np.nan, True),  # 0/1 variables: no variance ratio, judged on the SMD
        (0.12, np.nan, False),
        (np.nan, 1.0, False),
    ],
)
def test_balance_target_edges(smd, ratio, ok):
    assert meets_balance_target(smd, ratio) is ok


def test_balance_target_from_the_specification():
    from celltrial.external.spec import load_target_trial

    spec = load_target_trial()
    assert spec.balance.smd_below == 0.1
    assert spec.balance.variance_ratio == (0.5, 2.0)
    assert meets_balance_target(0.15, 1.0, smd_below=0.2, ratio_range=(0.8, 1.25))
    assert not meets_balance_target(0.15, 1.3, smd_below=0.2, ratio_range=(0.8, 1.25))
    # the hand example above (variance ratio 0.15) fails even with a zero SMD
    t, c = np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 6.0, 8.0])
    assert not meets_balance_target(0.0, compute_variance_ratio(t, c))
