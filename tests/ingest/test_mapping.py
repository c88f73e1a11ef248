"""Mapping files that are not mappings: one message naming the file."""

from __future__ import annotations

import pytest

from celltrial.errors import DataError
from celltrial.ingest.mapping import read_mapping


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- layout: wide\n", "expected sections such as layout:"),  # was AttributeError
        ("columns: [subject, time]\n", "columns: expected role: column name pairs"),
        ("sheet: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
        ("sheet: " + "9" * 5000 + "\n", "a number with thousands of digits"),
        ("timezone: 2020-02-31\n", "day is out of range for month"),
    ],
)
def test_unusable_mapping_files_are_named(tmp_path, text, message):
    path = tmp_path / "mapping.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=rf"mapping\.yaml.*{message}"):
        read_mapping(path)
