"""A unit cell holding a number too large for a float is an unknown unit, not an OverflowError."""

from __future__ import annotations

import pytest

from celltrial.errors import UnitError
from celltrial.units import normalize_unit


def test_a_huge_number_as_unit_is_an_unknown_unit():
    with pytest.raises(UnitError, match="unknown unit '7777"):
        normalize_unit("7" * 400)


def test_a_huge_number_as_unit_refuses_the_import_by_row(tmp_path):
    from celltrial.ingest import ImportRefused, import_file
    from celltrial.study import init_study

    study = init_study(tmp_path / "study", user="tester")
    path = tmp_path / "labs.csv"
    path.write_text(
        "subject_id,time,test,value,unit\nS001,2020-02-10 08:00,CRP,12," + "7" * 400 + "\n",
        encoding="utf-8",
    )
    with pytest.raises(ImportRefused) as refused:
        import_file(study, path, register=True, cohort="x", user="tester")
    errors = refused.value.report.errors
    # a 400-character unit is longer than the database keeps: refused by row before conversion
    assert list(errors["kind"]) == ["too_long"] and list(errors["row"]) == [2]
