"""P-values print the same everywhere, never as "p = 0" (values checked by hand)."""

import math

import pytest

from celltrial.pvalues import format_p, p_number


@pytest.mark.parametrize(
    ("p", "shown"),
    [
        (0.0, "p < 0.001"),
        (1e-12, "p < 0.001"),
        (0.000999, "p < 0.001"),
        (0.001, "p = 0.001"),
        (0.0042, "p = 0.004"),
        (0.0099, "p = 0.01"),
        (0.01, "p = 0.01"),
        (0.0456, "p = 0.046"),
        (0.375, "p = 0.38"),
        (0.5, "p = 0.5"),
        (0.0625, "p = 0.063"),  # exact Wilcoxon values at n = 5 and 4: halves round up
        (0.125, "p = 0.13"),
        (0.0099, "p = 0.01"),
        (0.00995, "p = 0.01"),
        (0.999, "p = 1"),
        (1.0, "p = 1"),
        (None, "p not computed"),
        (math.nan, "p not computed"),
    ],
)
def test_format_p(p, shown):
    assert format_p(p) == shown


def test_the_number_alone_for_a_p_column():
    assert p_number(0.0) == "<0.001"
    assert p_number(0.2) == "0.2"
    assert p_number(None) == "—"
