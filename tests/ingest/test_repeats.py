"""Same-day repeats in day-resolution data (issue 22): two values of one test on one date
without a clock time are a conflict (neither kept) unless the mapping's ``same_day_repeats``
keeps the first or the last in file order, saying so in the report."""

from __future__ import annotations

import pytest
import yaml
from sqlalchemy import select

from celltrial.ingest import import_file
from celltrial.store.models import Observation

HEADER = "subject_id,time,test,value,unit\n"


def values(study) -> list[float]:
    with study.engine.connect() as connection:
        return sorted(connection.scalars(select(Observation.value)))


def run(study, write, tmp_path, text: str, rule: str | None):
    mapping = None
    if rule is not None:
        mapping = tmp_path / "mapping.yaml"
        mapping.write_text(yaml.safe_dump({"same_day_repeats": rule}), encoding="utf-8")
    return import_file(study, write("labs.csv", HEADER + text), mapping=mapping)


DAY = "S001,2020-02-03,CRP,12,mg/L\nS001,2020-02-04,CRP,7,mg/L\nS001,2020-02-03,CRP,9,mg/L\n"


@pytest.mark.parametrize("rule", [None, "conflict"])
def test_conflict_by_default(study, write, tmp_path, rule):
    result = run(study, write, tmp_path, DAY, rule)
    assert values(study) == [7.0]
    conflicts = result.report.messages.query("kind == 'duplicate_conflict'")
    assert conflicts["row"].tolist() == [2, 4]


@pytest.mark.parametrize(("rule", "kept", "dropped"), [("first", 12.0, 4), ("last", 9.0, 2)])
def test_first_or_last_in_file_order(study, write, tmp_path, rule, kept, dropped):
    result = run(study, write, tmp_path, DAY, rule)
    assert values(study) == sorted([7.0, kept])
    messages = result.report.messages
    assert messages.query("kind == 'duplicate_conflict'").empty
    repeat = messages.query("kind == 'same_day_repeat'")
    assert repeat[["severity", "row"]].values.tolist() == [["info", dropped]]
    kept_row = 2 if rule == "first" else 4
    assert repeat["expected"].iloc[0] == (
        f"one value per subject, test and day: kept the {rule} of 2 values on 2020-02-03 "
        f"(row {kept_row}) (mapping: same_day_repeats: {rule})"
    )


def test_values_with_a_clock_time_are_still_a_conflict(study, write, tmp_path):
    text = (
        "S001,2020-02-03 08:00,CRP,12,mg/L\nS001,2020-02-03 08:00,CRP,9,mg/L\n"
        "S001,2020-02-04 08:00,CRP,7,mg/L\n"
    )
    result = run(study, write, tmp_path, text, "last")
    assert values(study) == [7.0]
    assert result.report.messages.query("kind == 'duplicate_conflict'")["row"].tolist() == [2, 3]


def test_the_same_value_twice_is_stored_once(study, write, tmp_path):
    text = "S001,2020-02-03,CRP,12,mg/L\nS001,2020-02-03,CRP,12,mg/L\n"
    result = run(study, write, tmp_path, text, "last")
    assert values(study) == [12.0]
    assert result.report.messages.query("kind == 'duplicate'")["row"].tolist() == [3]
