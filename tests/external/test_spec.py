import pytest

from celltrial.external.spec import SpecError, load_target_trial, parse_target_trial


def test_default_spec_declares_the_crp_substitution():
    spec = load_target_trial()
    assert spec.test_of("CRP", "treated") == "CRP"
    assert spec.test_of("CRP", "external") == "HSCRP"
    assert any("hs-CRP" in c for c in spec.substitution_caveats())
    assert any("HSCRP in controls" in t for t in spec.rule_text())
    assert spec.data_limits


def test_undeclared_substitution_is_refused():
    text = """
name: x
markers:
  CRP: {treated: CRP, external: HSCRP, unit: mg/L, label: CRP}
eligibility: [{marker: CRP, op: ">", value: 40}]
matching: {variables: [log_CRP]}
balance: {variables: [log_CRP]}
outcomes: {trajectory_markers: [CRP]}
"""
    with pytest.raises(SpecError, match="declare the substitution"):
        parse_target_trial(text, source="t.yaml")


def test_unknown_marker_names_the_field():
    text = """
name: x
markers: {}
eligibility: [{marker: LYM, op: "<", value: 0.8}]
"""
    with pytest.raises(SpecError, match="LYM"):
        parse_target_trial(text, source="t.yaml")


def test_an_alias_bomb_is_refused_before_it_expands():
    lines = ['a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for this, previous in zip("bcdefghi", "abcdefgh", strict=True):
        lines.append(f"{this}: &{this} [{', '.join([f'*{previous}'] * 9)}]")
    lines.append("name: bomb\nmarkers: *i")
    with pytest.raises(SpecError, match="expands to more than 100,000 values"):
        parse_target_trial("\n".join(lines), source="bomb.yaml")
