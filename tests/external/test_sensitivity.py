"""E-values against the published formula (VanderWeele & Ding, Ann Intern Med 2017)."""

import numpy as np
import pytest

from celltrial.external.sensitivity import compute_e_value, compute_e_value_rr, compute_smd_and_se


def published(rr):  # E = RR + sqrt(RR (RR - 1)), RR < 1 inverted first
    rr = rr if rr >= 1 else 1 / rr
    return rr + np.sqrt(rr * (rr - 1))


def test_paper_example_rr():
    # the paper's worked example: RR 3.9 (95 % CI 1.8 to 8.7) -> E-values 7.26 and 3.0
    e = compute_e_value(3.9, kind="RR", ci=(1.8, 8.7))
    assert e.point == pytest.approx(7.26, abs=0.005)
    assert e.ci_limit == pytest.approx(3.0, abs=0.005)


@pytest.mark.parametrize("rr", [1.0, 1.3, 2.0, 0.5, 0.2])
def test_rr_formula_both_directions(rr):
    assert compute_e_value_rr(rr) == pytest.approx(published(rr))


def test_protective_estimate_uses_the_upper_limit_and_crossing_gives_one():
    e = compute_e_value(0.5, kind="RR", ci=(0.3, 0.8))
    assert e.ci_limit == pytest.approx(published(0.8))
    assert compute_e_value(0.5, kind="RR", ci=(0.2, 1.4)).ci_limit == 1.0


def test_or_hr_and_smd_conversions():
    assert compute_e_value(4.0, kind="OR", rare=False).point == pytest.approx(published(2.0))
    assert compute_e_value(4.0, kind="OR", rare=True).point == pytest.approx(published(4.0))
    hr_rr = (1 - 0.5 ** np.sqrt(2.0)) / (1 - 0.5 ** np.sqrt(0.5))
    assert compute_e_value(2.0, kind="HR", rare=False).point == pytest.approx(published(hr_rr))
    assert compute_e_value(2.0, kind="HR", rare=True).point == pytest.approx(published(2.0))
    e = compute_e_value(0.5, kind="SMD", se=0.2)
    assert e.point == pytest.approx(published(np.exp(0.91 * 0.5)))
    assert e.ci_limit == pytest.approx(published(np.exp(0.91 * 0.5 - 1.78 * 0.2)))


def test_cohens_d():
    d, se = compute_smd_and_se(np.array([1.0, 2.0, 3.0]), np.array([2.0, 3.0, 4.0]))
    assert d == pytest.approx(-1.0)
    assert se == pytest.approx(np.sqrt(1 / 3 + 1 / 3 + 1 / 12))


def test_landmark_alignment_adds_days_since_admission():
    from celltrial.external.sensitivity import landmark_scenario_name, landmark_variables
    from celltrial.external.spec import load_target_trial

    spec = load_target_trial()
    assert landmark_variables(spec) == (*spec.matching.variables, "days_since_admission")
    assert landmark_scenario_name(spec) == "matched also on days since admission"
    m = spec.matching.model_copy(
        update={"sensitivity": spec.matching.sensitivity.model_copy(update={"add_variables": ()})}
    )
    assert landmark_variables(spec.model_copy(update={"matching": m})) == spec.matching.variables
