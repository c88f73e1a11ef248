"""Shipped YAML read with libyaml's parser gives exactly what PyYAML's own parser gives."""

from __future__ import annotations

from importlib.resources import files

import pytest
import yaml

from celltrial.catalogue import load_catalogue
from celltrial.datafiles import SHIPPED_LOADER, read_shipped_yaml


def test_the_fast_parser_is_used_when_pyyaml_has_it():
    assert SHIPPED_LOADER is (yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader)


@pytest.mark.parametrize(
    ("package", "name"), [("celltrial.catalogue", "tests.yaml"), ("celltrial", "labels.yaml")]
)
def test_shipped_yaml_reads_as_pyyaml_reads_it(package, name):
    text = files(package).joinpath(name).read_text(encoding="utf-8")
    assert read_shipped_yaml(package, name) == yaml.safe_load(text)


def test_the_catalogue_is_validated():
    catalogue = load_catalogue()
    assert catalogue.get("DDIMER").loinc == "48065-7"
    assert catalogue.get("CRP").unit == "mg/L"
