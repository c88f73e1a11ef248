"""Protocol files: the reference protocol validates; each kind of bad file says line and field."""

from __future__ import annotations

import pytest

from celltrial.errors import ProtocolError
from celltrial.protocol import (
    builtin_protocols,
    load_builtin_protocol,
    parse_protocol,
    read_protocol,
    resolve_protocol,
)
from celltrial.protocol.loader import DEFAULT_PROTOCOL, builtin_protocol_text

REFERENCE = builtin_protocol_text(DEFAULT_PROTOCOL)


def line_of(text: str, needle: str) -> int:
    """1-based line number of the first line containing ``needle``."""
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in text")


def test_reference_protocol_is_the_seed_study():
    protocol = load_builtin_protocol()
    assert protocol.regimen.n_infusions == 3
    assert protocol.regimen.dose.cells == 3e7
    assert protocol.regimen.dose.basis == "per_infusion"
    assert protocol.regimen.route == "intravenous"
    assert protocol.regimen.interval_days == 3
    assert protocol.regimen.infusion_days == (0, 3, 6)
    assert protocol.follow_up_days == 28
    baseline = protocol.visits[0]
    for code in (
        "DDIMER",
        "CRP",
        "IL6",
        "LYM",
        "NEUT",
        "CD4",
        "CD19",
        "CD1656",
        "WBC",
        "PLAT",
        "HGB",
        "ALT",
        "AST",
        "BILI",
        "CREAT",
    ):
        assert code in baseline.labs
    assert baseline.chest_ct and any(v.chest_ct for v in protocol.visits[1:])
    assert protocol.daily is not None and set(protocol.daily.vitals) == {"SPO2", "FIO2"}
    assert protocol.product.release.positive_markers_min_pct == {
        "CD73": 95,
        "CD90": 95,
        "CD105": 95,
    }


def test_builtins_are_listed_and_resolved():
    assert DEFAULT_PROTOCOL in builtin_protocols()
    protocol, text = resolve_protocol(None)
    assert protocol.study.id == "HUC-MSC-COVID19" and text == REFERENCE
    with pytest.raises(ProtocolError, match="no built-in protocol named 'nope'"):
        resolve_protocol("nope")


def test_interval_is_configurable():
    protocol = parse_protocol(REFERENCE.replace("interval_days: 3", "interval_days: 2"))
    assert protocol.regimen.infusion_days == (0, 2, 4)


@pytest.mark.parametrize(
    ("old", "new", "anchor", "field", "message"),
    [
        (
            "interval_days: 3",
            "interval_days: 0",
            "interval_days",
            "regimen.interval_days",
            "greater than or equal to 1",
        ),
        ("route: intravenous", "route: iv", "route:", "regimen.route", "'intravenous'"),
        ("  title:", "  titel:", "titel", "study.titel", "unknown field"),
        ("cells: 3.0e7", "cells: lots", "cells:", "regimen.dose.cells", "valid number"),
        (
            "timezone: Asia/Shanghai",
            "timezone: Mars/Olympus",
            "timezone",
            "study.timezone",
            "unknown IANA time zone",
        ),
        (
            "viability_min_pct: 80",
            "viability_min_pct: 180",
            "viability_min_pct",
            "product.release.viability_min_pct",
            "less than or equal to 100",
        ),
        (
            "labs: [CRP, LYM, NEUT, WBC, PLAT]",
            "labs: [CRP, LYMPH, NEUT, WBC, PLAT]",
            "LYMPH",
            "visits[1].labs",
            "unknown test code 'LYMPH'",
        ),
        (
            "vitals: [TEMP, HR, SPO2, FIO2]",
            "vitals: [TEMP, HR, SPO2, CRP]",
            "SPO2, CRP",
            "visits[1].vitals",
            "CRP is a lab, expected vital",
        ),
    ],
)
def test_bad_field_reports_line_and_field(old, new, anchor, field, message):
    text = REFERENCE.replace(old, new, 1)
    assert text != REFERENCE
    with pytest.raises(ProtocolError) as caught:
        parse_protocol(text, source="study.yaml")
    report = str(caught.value)
    assert report.startswith("study.yaml:")
    assert f"line {line_of(text, anchor)}: {field}: " in report
    assert message in report


def test_missing_field_points_at_its_section():
    text = REFERENCE.replace('  title: "Intravenous', '  subtitle: "Intravenous', 1)
    with pytest.raises(ProtocolError) as caught:
        parse_protocol(text, source="p.yaml")
    assert "study.title: required field is missing" in str(caught.value)


def test_all_problems_reported_at_once():
    text = REFERENCE.replace("interval_days: 3", "interval_days: -1").replace(
        "route: intravenous", "route: oral"
    )
    with pytest.raises(ProtocolError, match="2 problem"):
        parse_protocol(text)


def test_overlapping_visit_windows_rejected():
    text = REFERENCE.replace(
        "{name: Day 1, day: 1, window_before: 0", "{name: Day 1, day: 1, window_before: 1", 1
    )
    with pytest.raises(ProtocolError, match=r"windows of visits 'Screening/Baseline'.*overlap"):
        parse_protocol(text)


def test_follow_up_before_last_visit_rejected():
    with pytest.raises(ProtocolError, match="after the end of follow-up"):
        parse_protocol(REFERENCE.replace("follow_up_days: 28", "follow_up_days: 20"))


def test_duplicate_key_rejected_with_line():
    text = REFERENCE.replace("  n_infusions: 3\n", "  n_infusions: 3\n  n_infusions: 4\n", 1)
    with pytest.raises(ProtocolError) as caught:
        parse_protocol(text, source="dup.yaml")
    assert f"line {line_of(text, 'n_infusions: 4')}: 'n_infusions'" in str(caught.value)


def test_invalid_yaml_reports_line_and_column():
    with pytest.raises(ProtocolError, match=r"bad\.yaml, line 3, column 11: not valid YAML"):
        parse_protocol("study:\n  id: x\n  title: a: b\n", source="bad.yaml")


def test_non_mapping_rejected():
    with pytest.raises(ProtocolError, match="must be a mapping"):
        parse_protocol("- just\n- a list\n")


def test_read_protocol_file_errors(tmp_path):
    with pytest.raises(ProtocolError, match="protocol file not found"):
        read_protocol(tmp_path / "missing.yaml")
    path = tmp_path / "p.yaml"
    path.write_text(REFERENCE, encoding="utf-8")
    assert read_protocol(path).study.id == "HUC-MSC-COVID19"
    path.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ProtocolError, match="cannot read protocol file"):
        read_protocol(path)


def test_dose_tolerance_boundaries(make_protocol):
    dose = make_protocol().regimen.dose  # 3e7 ± 10 %
    assert dose.within_tolerance(3.3e7, None) is True
    assert dose.within_tolerance(2.7e7, None) is True
    assert dose.within_tolerance(3.3001e7, None) is False
    assert dose.within_tolerance(2.6999e7, None) is False
    per_kg = make_protocol(regimen__dose={"cells": 1e6, "basis": "per_kg", "tolerance_pct": 5})
    assert per_kg.regimen.dose.target_cells(70) == 7e7
    assert per_kg.regimen.dose.within_tolerance(7.35e7, 70) is True
    assert per_kg.regimen.dose.within_tolerance(7.36e7, 70) is False
    assert per_kg.regimen.dose.within_tolerance(7e7, None) is None
