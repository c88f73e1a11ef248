"""Long CSV import: unit conversions, validation messages, atomicity, idempotence, audit."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from celltrial.ingest import ImportRefused, import_file
from celltrial.store.audit import file_sha256
from celltrial.store.models import AuditEvent, ImportBatch, Observation

HEADER = "subject_id,time,test,value,unit\n"


def observations(study) -> pd.DataFrame:
    with study.engine.connect() as connection:
        result = connection.execute(
            select(
                Observation.test,
                Observation.value,
                Observation.unit,
                Observation.qualifier,
                Observation.raw_value,
                Observation.source_row,
                Observation.import_batch_id,
            ).order_by(Observation.source_row)
        )
        return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


@pytest.mark.parametrize(
    ("test", "value", "unit", "code", "expected"),
    [
        ("CRP", "1.5", "mg/dL", "CRP", 15.0),
        ("lymphocyte count", "850", "cells/uL", "LYM", 0.85),
        ("LYMPH#", "0.85", "10^9/L", "LYM", 0.85),
        ("D-dimer", "570", "ug/L", "DDIMER", 0.57),
        ("D-dimer", "0.57", "ug/mL FEU", "DDIMER", 0.57),
        ("D-dimer", "300", "ng/mL DDU", "DDIMERDDU", 0.3),
        ("FiO2", "40", "%", "FIO2", 0.4),
        ("PaO2", "10", "kPa", "PAO2", 75.0062),
        ("creatinine", "1.0", "mg/dL", "CREAT", 88.4017),
        ("超敏C反应蛋白", "12", "mg/L", "HSCRP", 12.0),
        ("Interleukin 6", "<1.5", "pg/mL", "IL6", 1.5),
        ("SpO2", "0,95", "1", "SPO2", 95.0),
    ],
)
def test_units_convert_at_known_factors(study, write, test, value, unit, code, expected):
    path = write("one.csv", HEADER + f'S001,2020-02-10 08:00,{test},"{value}",{unit}\n')
    result = import_file(study, path)
    frame = observations(study)
    assert result.counts["inserted"] == 1
    assert frame.loc[0, "test"] == code
    assert frame.loc[0, "value"] == pytest.approx(expected, rel=1e-5)
    assert frame.loc[0, "qualifier"] == ("<" if value.startswith("<") else "")


def test_percent_is_never_converted_to_a_count(study, write):
    path = write("pct.csv", HEADER + "S001,2020-02-10 08:00,CD4+ T cells,35,%\n")
    with pytest.raises(ImportRefused) as refused:
        import_file(study, path)
    errors = refused.value.report.errors
    assert list(errors["kind"]) == ["unit_not_convertible"]
    assert errors.iloc[0]["row"] == 2
    assert "cells/uL" in errors.iloc[0]["expected"]
    assert observations(study).empty


MESSY = (
    HEADER
    + "\n".join(
        [
            "S001,2020-02-10 08:00,CRP,12,mg/L",  # 2 ok
            "S001,2020-02-10 08:00,CRP,12,mg/L",  # 3 duplicate (same value): stored once
            "S001,2020-02-11 08:00,CRP,5,mg/L",  # 4 conflict
            "S001,2020-02-11 08:00,CRP,6,mg/L",  # 5 conflict
            "S001,2020-02-12 08:00,CRP,pending,mg/L",  # 6 text
            'S001,2020-02-12 08:00,LDH,"1,234",U/L',  # 7 ambiguous
            "S001,2020-02-12 08:00,Platelet count,-1,10^9/L",  # 8 sentinel
            "S001,2020-02-12 08:00,hemoglobin,2000,g/L",  # 9 implausible (flagged, stored)
            "S001,2020-02-12 08:00,Favourite colour,3,",  # 10 unknown test: not stored
            "S001,2020-02-12 08:00,CRP,NA,mg/L",  # 11 not a result
            "S002,2020-03-05 08:00,CRP,7,mg/L",  # 12 after discharge (flagged)
            "S001,2020-01-05 08:00,CRP,7,mg/L",  # 13 before enrolment (flagged)
            "S001,,CRP,7,mg/L",  # 14 no time
        ]
    )
    + "\n"
)


def test_each_warning_names_row_column_value(study, write):
    result = import_file(study, write("messy.csv", MESSY))
    messages = result.report.messages.set_index("kind")
    assert messages.loc["duplicate", "row"] == 3
    assert sorted(messages.loc["duplicate_conflict", "row"]) == [4, 5]
    assert messages.loc["text_result", "value"] == "pending"
    assert messages.loc["ambiguous_number", "value"] == "1,234"
    assert messages.loc["sentinel", "row"] == 8
    assert messages.loc["implausible", "row"] == 9
    assert messages.loc["unknown_test", "value"] == "Favourite colour"
    assert messages.loc["unknown_test", "row"] == 10
    assert messages.loc["after_discharge", "row"] == 12
    assert messages.loc["before_enrolment", "row"] == 13
    assert messages.loc["no_time", "row"] == 14
    assert messages.loc["no_result_marker", "row"] == 11
    counts = result.report.counts
    assert counts == {"results": 12, "stored": 1, "flagged": 3, "reported": 8}
    assert sorted(observations(study)["source_row"]) == [2, 9, 12, 13]
    assert result.report_csv.exists()
    assert len(pd.read_csv(result.report_csv)) == len(result.report.messages)


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        ("S009,2020-02-10 08:00,CRP,12,mg/L", "unknown_subject"),
        ("S001,the tenth of February,CRP,12,mg/L", "bad_time"),
        ("S001,2020-02-10 08:00,CRP,12,furlongs", "unit_not_convertible"),
    ],
)
def test_one_bad_row_stores_nothing(study, write, line, kind):
    good = "\n".join(f"S001,2020-02-{d:02d} 08:00,CRP,{d},mg/L" for d in range(1, 20))
    path = write("bad.csv", HEADER + good + "\n" + line + "\n")
    with pytest.raises(ImportRefused) as refused:
        import_file(study, path)
    assert list(refused.value.report.errors["kind"]) == [kind]
    assert refused.value.report.errors.iloc[0]["row"] == 21
    assert "nothing was stored" in str(refused.value)
    assert observations(study).empty
    with study.engine.connect() as connection:
        assert connection.execute(select(ImportBatch)).all() == []


def test_reimport_adds_nothing_and_a_change_is_an_audited_update(study, write):
    path = write(
        "labs.csv", HEADER + "S001,2020-02-10 08:00,CRP,12,mg/L\nS001,2020-02-11 08:00,CRP,9,mg/L\n"
    )
    first = import_file(study, path, user="alice")
    again = import_file(study, path, user="alice")
    assert first.counts["inserted"] == 2
    assert again.counts == {
        "inserted": 0,
        "updated": 0,
        "unchanged": 2,
        "subjects": 0,
        "subjects_updated": 0,
    }
    assert len(observations(study)) == 2
    corrected = write(
        "labs-v2.csv",
        HEADER + "S001,2020-02-10 08:00,CRP,12,mg/L\nS001,2020-02-11 08:00,CRP,19,mg/L\n",
    )
    third = import_file(study, corrected, user="bob")
    assert third.counts == {
        "inserted": 0,
        "updated": 1,
        "unchanged": 1,
        "subjects": 0,
        "subjects_updated": 0,
    }
    frame = observations(study)
    assert sorted(frame["value"]) == [12.0, 19.0]
    with Session(study.engine) as session:
        updates = session.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "update", AuditEvent.table_name == "observation"
            )
        ).all()
        batches = session.scalars(select(ImportBatch).order_by(ImportBatch.id)).all()
    assert len(updates) == 1
    update = updates[0]
    assert update.before["value"] == 9.0 and update.after["value"] == 19.0
    assert "labs-v2.csv" in update.reason and update.user == "bob"
    # the update names the import that made it: its batch and the file's hash
    assert update.import_batch_id == third.batch_id
    assert update.source_sha256 == batches[2].source_sha256 == file_sha256(corrected)
    assert len(batches) == 3
    batch = batches[0]
    assert batch.source_sha256 and len(batch.source_sha256) == 64
    assert batch.counts["observation"] == 2
    assert batch.report["accounting"]["results"] == 2
    assert set(frame["import_batch_id"]) == {1, 3}


def test_register_subjects_from_a_long_file(study, write):
    path = write("new.csv", HEADER + "P77,2020-02-10 08:00,CRP,12,mg/L\n")
    with pytest.raises(ImportRefused):
        import_file(study, path)
    result = import_file(study, path, register=True, cohort="rwd")
    assert result.counts["subjects"] == 1 and result.counts["inserted"] == 1


def test_dry_run_stores_nothing(study, write):
    path = write("dry.csv", HEADER + "S001,2020-02-10 08:00,CRP,12,mg/L\n")
    result = import_file(study, path, dry_run=True)
    assert result.report.counts["stored"] == 1
    assert observations(study).empty


def test_reference_range_text_is_converted_with_the_value(study, write):
    text = (
        "subject,time,test,result,unit,reference range\nS001,2020-02-10 08:00,CRP,1.2,mg/dL,0-0.5\n"
    )
    import_file(study, write("ref.csv", text))
    with study.engine.connect() as connection:
        low, high = connection.execute(select(Observation.ref_low, Observation.ref_high)).one()
    assert (low, high) == (pytest.approx(0.0), pytest.approx(5.0))
