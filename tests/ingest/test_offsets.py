"""Times given as whole days from an anchor (issue 22): a mapping's ``offsets`` (each subject's
admission or a fixed date) and, in wide files, a test's own ``day_column``. Results are dated
(day resolution); an offset that cannot be read or a subject without an anchor is an error by
row."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from sqlalchemy import select

from celltrial.errors import DataError
from celltrial.ingest import ImportRefused, import_file
from celltrial.ingest.mapping import read_mapping
from celltrial.store.models import Observation

ZONE = "Europe/Berlin"  # the built-in protocol's zone is not assumed: the mapping says


def mapping_file(tmp_path: Path, **sections) -> Path:
    path = tmp_path / "mapping.yaml"
    path.write_text(yaml.safe_dump({"timezone": ZONE, **sections}), encoding="utf-8")
    return path


def stored(study) -> list[tuple[str, str, float]]:
    with study.engine.connect() as connection:
        rows = connection.execute(
            select(Observation.test, Observation.time, Observation.value).order_by(
                Observation.test, Observation.time
            )
        ).all()
    local = [
        (test, pd.Timestamp(time).tz_localize("UTC").tz_convert(ZONE), value)
        if pd.Timestamp(time).tzinfo is None
        else (test, pd.Timestamp(time).tz_convert(ZONE), value)
        for test, time, value in rows
    ]
    return [(t, when.strftime("%Y-%m-%d %H:%M"), v) for t, when, v in local]


def test_long_file_days_from_each_subjects_admission_in_the_file(study, tmp_path):
    path = tmp_path / "long.csv"
    path.write_text(
        "subject_id,Day,test,value,unit,admission_time\n"
        "A,0,CRP,50,mg/L,2020-02-01 22:30\n"
        "A,3,CRP,20,mg/L,2020-02-01 22:30\n"
        "B,-1,CRP,5,mg/L,2020-02-10 08:00\n",
        encoding="utf-8",
    )
    mapping = mapping_file(tmp_path, layout="long", offsets={"column": "Day", "anchor": "admitted"})
    result = import_file(study, path, mapping=mapping, register=True, cohort="c")
    assert result.report.ok and result.counts["inserted"] == 3
    assert stored(study) == [
        ("CRP", "2020-02-01 00:00", 50.0),
        ("CRP", "2020-02-04 00:00", 20.0),
        ("CRP", "2020-02-09 00:00", 5.0),
    ]


def test_long_file_days_from_a_date_in_the_mapping(study, tmp_path):
    path = tmp_path / "long.csv"
    path.write_text(
        "subject_id,day,test,value,unit\nS001,0,CRP,50,mg/L\nS001,+17,CRP,20,mg/L\n",
        encoding="utf-8",
    )
    mapping = mapping_file(
        tmp_path, layout="long", offsets={"column": "day", "anchor": "2020-01-17"}
    )
    result = import_file(study, path, mapping=mapping)
    assert result.counts["inserted"] == 2
    assert [t for _test, t, _v in stored(study)] == ["2020-01-17 00:00", "2020-02-03 00:00"]


def test_days_count_from_the_admission_the_study_records(study, tmp_path):
    # S001 has no admission in the file: the study's record (enrolled 2020-02-01, admitted?) —
    # without an admission time anywhere it is an error naming the row
    path = tmp_path / "long.csv"
    path.write_text("subject_id,day,test,value,unit\nS001,2,CRP,50,mg/L\n", encoding="utf-8")
    mapping = mapping_file(tmp_path, layout="long", offsets={"column": "day"})
    with pytest.raises(ImportRefused) as refused:
        import_file(study, path, mapping=mapping)
    errors = refused.value.report.errors
    assert errors[["kind", "row", "column", "value"]].values.tolist() == [
        ["no_anchor", 2, "day", "2"]
    ]
    # once the subject's admission is known (a wide file registers it), the days count from it
    wide = tmp_path / "adm.csv"
    wide.write_text(
        "PATIENT_ID,RE_DATE,Admission time,CRP\nN1,2020-02-05 08:00,2020-02-05 07:00,12\n",
        encoding="utf-8",
    )
    import_file(study, wide, register=True, cohort="")
    again = tmp_path / "again.csv"
    again.write_text("subject_id,day,test,value,unit\nN1,2,CRP,50,mg/L\n", encoding="utf-8")
    assert import_file(study, again, mapping=mapping).counts["inserted"] == 1
    assert ("CRP", "2020-02-07 00:00", 50.0) in stored(study)


@pytest.mark.parametrize("cell", ["1.5", "day 3", "1e400", "99999999"])
def test_an_offset_that_cannot_be_read_is_an_error_by_row(study, tmp_path, cell):
    path = tmp_path / "long.csv"
    path.write_text(f"subject_id,day,test,value,unit\nS001,{cell},CRP,50,mg/L\n", encoding="utf-8")
    mapping = mapping_file(
        tmp_path, layout="long", offsets={"column": "day", "anchor": "2020-01-17"}
    )
    with pytest.raises(ImportRefused) as refused:
        import_file(study, path, mapping=mapping)
    errors = refused.value.report.errors
    assert errors[["kind", "row", "column", "value"]].values.tolist() == [
        ["bad_offset", 2, "day", cell]
    ]


def test_wide_file_with_a_day_column_per_test(study, tmp_path):
    path = tmp_path / "wide.csv"
    path.write_text(
        "PATIENT_ID,Admission time,Day,CRP,CRP_day,IL-6\n"
        "A,2020-02-01 09:00,0,50,1,10\n"
        "A,2020-02-01 09:00,2,20,,8\n",
        encoding="utf-8",
    )
    mapping = mapping_file(
        tmp_path,
        layout="wide",
        offsets={"column": "Day", "anchor": "admitted"},
        tests={"CRP": {"test": "CRP", "day_column": "CRP_day"}},
    )
    result = import_file(study, path, mapping=mapping, register=True, cohort="w")
    assert result.report.ok, result.report.errors
    assert stored(study) == [
        ("CRP", "2020-02-02 00:00", 50.0),  # its own day column
        ("CRP", "2020-02-03 00:00", 20.0),  # day cell empty: the row's day
        ("IL6", "2020-02-01 00:00", 10.0),
        ("IL6", "2020-02-03 00:00", 8.0),
    ]
    assert "CRP_day" not in set(result.report.messages["column"])  # not a result column


def test_wide_day_column_error_names_that_column(study, tmp_path):
    path = tmp_path / "wide.csv"
    path.write_text(
        "PATIENT_ID,RE_DATE,CRP,CRP_day\nS001,2020-02-10 08:00,50,soon\n", encoding="utf-8"
    )
    mapping = mapping_file(
        tmp_path,
        offsets={"anchor": "2020-02-01"},
        tests={"CRP": {"test": "CRP", "day_column": "CRP_day"}},
    )
    with pytest.raises(ImportRefused) as refused:
        import_file(study, path, mapping=mapping)
    errors = refused.value.report.errors
    assert errors[["kind", "row", "column", "value"]].values.tolist() == [
        ["bad_offset", 2, "CRP_day", "soon"]
    ]


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"offsets": {"anchor": "yesterday"}}, "expected admitted"),
        ({"offsets": {"anchor": "1850-01-01"}}, "1900"),
        ({"offsets": {"unit": "hours"}}, "unit"),
        ({"offsets": {"column": "Day"}, "columns": {"time": "Date"}}, "one column for the time"),
        ({"offsets": {"colum": "Day"}}, "colum"),
        ({"same_day_repeats": "mean"}, "same_day_repeats"),
    ],
)
def test_offset_mappings_that_cannot_be_used_are_named(tmp_path, sections, message):
    with pytest.raises(DataError, match=message):
        read_mapping(mapping_file(tmp_path, **sections))


def test_anchor_spellings(tmp_path):
    assert read_mapping(mapping_file(tmp_path, offsets={"anchor": "admission"})).offsets.anchor == (
        "admitted"
    )
    mapping = read_mapping(mapping_file(tmp_path, offsets={"anchor": "2020-01-17"}))
    assert mapping.offsets.fixed_date == "2020-01-17"
    # a day column alone counts from each subject's admission
    mapping = read_mapping(
        mapping_file(tmp_path, tests={"CRP": {"test": "CRP", "day_column": "CRP_day"}})
    )
    assert mapping.offsets.anchor == "admitted" and mapping.day_columns() == {"CRP": "CRP_day"}
