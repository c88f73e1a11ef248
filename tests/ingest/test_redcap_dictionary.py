"""REDCap data dictionaries that cannot describe the records: refused naming the file and row
(a dictionary without fields raised IndexError; a field defined twice was read twice)."""

from __future__ import annotations

import pytest

from celltrial.errors import DataError
from celltrial.ingest import ImportRefused, import_file

HEADER = '"Variable / Field Name","Form Name","Field Type","Field Label",' + (
    '"Text Validation Type OR Show Slider Number"\n'
)
FIELDS = (
    "record_id,labs,text,Record ID,\n"
    "visit_date,labs,text,Date of blood draw,date_ymd\n"
    "crp,labs,text,CRP (mg/L),number\n"
)


def project(
    tmp_path, dictionary: str, records: str = "record_id,visit_date,crp\nR1,2020-02-10,5\n"
):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "dictionary.csv").write_text(dictionary, encoding="utf-8")
    (folder / "data.csv").write_text(records, encoding="utf-8")
    return folder


@pytest.mark.parametrize(
    ("dictionary", "message"),
    [
        (HEADER, r"dictionary\.csv: the data dictionary lists no fields"),
        (
            HEADER + FIELDS + "crp,labs,text,CRP again,number\n",
            "rows 4 and 5 both define field 'crp'",
        ),
        (HEADER + ",labs,text,No name,\n" + FIELDS, "row 2: a field without a variable name"),
    ],
)
def test_a_dictionary_that_cannot_be_used_is_refused(study, tmp_path, dictionary, message):
    with pytest.raises(DataError, match=message):
        import_file(study, project(tmp_path, dictionary), register=True)


@pytest.mark.parametrize("date", ["31/02/2020", "0001-01-01", "now"])
def test_an_unreadable_date_field_is_an_error_not_a_blank(study, tmp_path, date):
    folder = project(tmp_path, HEADER + FIELDS, f"record_id,visit_date,crp\nR1,{date},5\n")
    with pytest.raises(ImportRefused) as refused:
        import_file(study, folder, register=True)
    errors = refused.value.report.errors
    assert list(errors["kind"]) == ["bad_time"] and list(errors["column"]) == ["visit_date"]
    assert list(errors["row"]) == [2]


def test_empty_rows_of_a_dictionary_are_passed_over(study, tmp_path):
    folder = project(tmp_path, HEADER + FIELDS + ",,,,\n,,,,\n")
    assert import_file(study, folder, register=True).counts["inserted"] == 1
