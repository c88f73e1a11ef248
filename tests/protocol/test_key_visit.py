"""The pre-specified key efficacy visit (protocol ``analysis.key_visit_day``; issue 27 item 5)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from celltrial.cli import app
from celltrial.errors import ProtocolError
from celltrial.protocol import load_builtin_protocol, parse_protocol
from celltrial.protocol.loader import builtin_protocol_text

REFERENCE = builtin_protocol_text("huc-msc-covid19")
STATED = "\nanalysis:\n  key_visit_day: 14\n"


def test_the_builtin_protocol_states_day_14():
    assert STATED in REFERENCE
    protocol = load_builtin_protocol()
    assert protocol.analysis.key_visit_day == 14
    assert protocol.key_visit is not None and protocol.key_visit.name == "Day 14"


def test_older_files_without_the_field_still_load_with_the_last_lab_visit():
    older = REFERENCE.replace(STATED, "\n")
    assert "analysis" not in older.split("follow_up_days: 28")[-1]
    protocol = parse_protocol(older, source="old.yaml")
    assert protocol.analysis.key_visit_day is None
    # default: the last scheduled visit after day 0 with lab tests — Day 28 here
    assert protocol.key_visit is not None and protocol.key_visit.name == "Day 28"


def test_default_skips_a_last_visit_without_labs(make_protocol, reference_data):
    visits = list(reference_data["visits"])
    visits[-1] = {**visits[-1], "labs": []}
    assert make_protocol(visits=visits).key_visit.name == "Day 14"


@pytest.mark.parametrize(("day", "name"), [(1, "Day 1"), (10, "Day 10"), (28, "Day 28")])
def test_any_scheduled_visit_after_day_0_may_be_the_key(make_protocol, day, name):
    assert make_protocol(analysis={"key_visit_day": day}).key_visit.name == name


@pytest.mark.parametrize("day", [12, 29, 2])
def test_a_day_without_a_visit_is_refused_with_the_visit_days(day):
    text = REFERENCE.replace("key_visit_day: 14", f"key_visit_day: {day}")
    with pytest.raises(ProtocolError, match=r"analysis.key_visit_day .* visit days: 1, 3, 6"):
        parse_protocol(text, source="study.yaml")


@pytest.mark.parametrize("day", [0, -1])
def test_day_0_or_before_is_refused(day):
    text = REFERENCE.replace("key_visit_day: 14", f"key_visit_day: {day}")
    with pytest.raises(ProtocolError, match="key_visit_day"):
        parse_protocol(text, source="study.yaml")


def test_unknown_analysis_field_is_refused():
    text = REFERENCE.replace("key_visit_day: 14", "key_visit: 14")
    with pytest.raises(ProtocolError, match="key_visit"):
        parse_protocol(text, source="study.yaml")


def test_check_protocol_accepts_old_and_new_files(tmp_path):
    new, old = tmp_path / "new.yaml", tmp_path / "old.yaml"
    new.write_text(REFERENCE, encoding="utf-8")
    old.write_text(REFERENCE.replace(STATED, "\n"), encoding="utf-8")
    for path in (new, old):
        result = CliRunner().invoke(app, ["check-protocol", str(path)])
        assert result.exit_code == 0, result.output
        assert "valid" in result.output
