"""The mapping examples the README gives under "Imports" are valid mapping files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from celltrial.ingest.mapping import read_mapping

README = Path(__file__).resolve().parents[2] / "README.md"


def _import_examples() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("### Imports", 1)[1].split("\n### ", 1)[0]
    return re.findall(r"```yaml\n(.*?)```", section, flags=re.S)


def test_the_readme_has_an_example_per_format():
    heads = [example.splitlines()[0] for example in _import_examples()]
    assert heads == [
        "# wide (LIS export)",
        "# long",
        "# REDCap (folder, records CSV or ODM XML): fields by name",
        "# FHIR: facts need no mapping",
    ]


@pytest.mark.parametrize("number", range(4))
def test_each_readme_mapping_is_read_as_written(number, tmp_path):
    path = tmp_path / "mapping.yaml"
    path.write_text(_import_examples()[number], encoding="utf-8")
    mapping = read_mapping(path)
    assert mapping.layout in ("wide", "long", None, "fhir")
