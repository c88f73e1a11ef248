"""Patient identity: subjects are (study, cohort, code). Two exports each numbered 1…N stay two
sets of patients; a file never lands on another cohort's patients; a changed subject fact is an
audited update naming the import, never ignored."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from celltrial.ingest import ImportRefused, import_file
from celltrial.store.audit import check_audit_chain, file_sha256, source_sha256
from celltrial.store.database import study_session
from celltrial.store.frames import read_observations, read_subjects
from celltrial.store.models import AuditEvent, ImportBatch, Subject

WIDE = "PATIENT_ID,RE_DATE,gender,age,Admission time,Discharge time,outcome,CRP\n"


def hospital_export(crp: int, *, patients: int = 3, outcome: str = "0") -> str:
    """A Tongji-shaped export numbering its patients 1…N (as two exports of one hospital do)."""
    lines = [WIDE]
    for number in range(1, patients + 1):
        lines.append(
            f"{number},2020-02-0{number} 08:00,{'male' if number % 2 else 'female'},{50 + number},"
            f"2020-02-01 09:00,2020-02-20 10:00,{outcome},{crp + number}\n"
        )
    return "".join(lines)


def observations_of(study, cohort: str | None = None):
    return read_observations(
        study.engine, study.study_id, cohort=cohort, zone="UTC", first_infusion=pd.Series()
    )


def cohort_values(study, cohort: str) -> dict[str, float]:
    observations = observations_of(study, cohort)
    crp = observations[observations["test"] == "CRP"]
    return dict(zip(crp["subject_id"], crp["value"], strict=True))


def test_two_cohorts_numbered_alike_stay_two_sets_of_patients(study, write):
    first = import_file(study, write("a.csv", hospital_export(10)), register=True, cohort="a")
    second = import_file(study, write("b.csv", hospital_export(100)), register=True, cohort="b")
    assert first.counts["subjects"] == 3 and second.counts["subjects"] == 3
    assert second.counts["inserted"] == 3
    assert second.counts["updated"] == 0 and second.counts["unchanged"] == 0
    assert cohort_values(study, "a") == {"1": 11.0, "2": 12.0, "3": 13.0}
    assert cohort_values(study, "b") == {"1": 101.0, "2": 102.0, "3": 103.0}
    assert list(read_subjects(study.engine, study.study_id, cohort="b")["subject_id"]) == [
        "1",
        "2",
        "3",
    ]
    # the reader is told the codes also name other patients, who are not changed
    notes = second.report.messages
    noted = notes[notes["kind"] == "subject_in_other_cohort"]
    assert sorted(noted["value"]) == ["1", "2", "3"]
    assert set(noted["severity"]) == {"warning"}
    assert "external cohort 'a'" in noted["expected"].iloc[0]


def test_a_file_for_another_cohort_is_refused_naming_its_codes_and_the_cohort(study, write):
    import_file(study, write("a.csv", hospital_export(10)), register=True, cohort="a")
    with pytest.raises(ImportRefused) as refused:
        import_file(study, write("more.csv", hospital_export(20)))  # into the study's own
    message = str(refused.value)
    assert "Subjects 1, 2, 3 are not in the study's own subjects" in message
    assert "external cohort 'a'" in message and "--cohort a" in message
    assert cohort_values(study, "a") == {"1": 11.0, "2": 12.0, "3": 13.0}
    # named, the cohort takes the new results as audited updates of its own patients
    again = import_file(study, write("more.csv", hospital_export(20)), cohort="a")
    assert again.counts["updated"] == 3
    assert cohort_values(study, "a") == {"1": 21.0, "2": 22.0, "3": 23.0}


def test_the_study_own_subject_and_a_cohort_patient_with_one_code_are_two(study, write):
    long = "Patient ID,Collection Time,Test Name,Result,Units\nS001,2020-02-10 08:00,CRP,12,mg/L\n"
    import_file(study, write("ext.csv", long.replace("12", "99")), register=True, cohort="ext")
    import_file(study, write("own.csv", long))  # S001 of the study
    own = observations_of(study)
    assert own.loc[own["subject_id"] == "S001", "value"].tolist() == [12.0]
    assert cohort_values(study, "ext") == {"S001": 99.0}


def test_register_without_cohort_uses_the_file_name_and_never_the_study_subjects(study, write):
    long = "Patient ID,Collection Time,Test Name,Result,Units\nS001,2020-02-10 08:00,CRP,55,mg/L\n"
    result = import_file(study, write("site2.csv", long), register=True)
    assert result.cohort == "site2" and result.counts["subjects"] == 1
    own = observations_of(study)
    assert own.empty  # the study's S001 got nothing
    assert cohort_values(study, "site2") == {"S001": 55.0}


def test_codes_are_unique_within_a_namespace_in_the_database(study):
    def session():
        return study_session(study.engine, user="tester", reason="test")

    with pytest.raises(IntegrityError), session() as writing:
        writing.add(Subject(study_id=study.study_id, code="S001"))  # the study has S001
    with pytest.raises(IntegrityError), session() as writing:
        writing.add(Subject(study_id=study.study_id, code="X", cohort="c"))
        writing.add(Subject(study_id=study.study_id, code="X", cohort="c"))
    with study_session(study.engine, user="tester", reason="test") as session:
        session.add(Subject(study_id=study.study_id, code="S001", cohort="c"))
        session.add(Subject(study_id=study.study_id, code="S001", cohort="d"))


def stored_subject(study, code: str, cohort: str) -> Subject:
    with study_session(study.engine, user="tester", reason="read") as session:
        subject = session.scalars(
            select(Subject).where(Subject.code == code, Subject.cohort == cohort)
        ).one()
        session.expunge(subject)
        return subject


def test_a_changed_outcome_and_sex_on_reimport_are_audited_updates(study, write):
    import_file(study, write("t.csv", hospital_export(10)), register=True, cohort="t")
    before = stored_subject(study, "2", "t")
    assert before.sex == "F" and before.died_at is None and before.discharged_at is not None
    changed = hospital_export(10, outcome="1").replace(
        "2,2020-02-02 08:00,female", "2,2020-02-02 08:00,male"
    )
    path = write("t.csv", changed)
    result = import_file(study, path, cohort="t")
    assert result.counts["subjects_updated"] == 3  # every outcome: died; and patient 2's sex
    after = stored_subject(study, "2", "t")
    assert after.sex == "M"
    assert after.died_at is not None and after.discharged_at is None
    # 28-day mortality follows the stored outcome
    subjects = read_subjects(study.engine, study.study_id, cohort="t")
    assert subjects["died"].notna().all()
    facts = result.report.messages
    changes = facts[facts["kind"] == "subject_fact_changed"]
    assert set(changes["severity"]) == {"warning"}
    assert "2: F → M" in changes["value"].tolist()
    # the audit rows name the import: its batch and the file's hash
    with study.engine.connect() as connection:
        events = connection.execute(
            select(
                AuditEvent.before,
                AuditEvent.after,
                AuditEvent.import_batch_id,
                AuditEvent.source_sha256,
                AuditEvent.reason,
            ).where(AuditEvent.table_name == "subject", AuditEvent.action == "update")
        ).all()
    sex_change = [e for e in events if e.after.get("sex") == "M"]
    assert len(sex_change) == 1 and sex_change[0].before["sex"] == "F"
    assert sex_change[0].import_batch_id == result.batch_id
    assert sex_change[0].source_sha256 == file_sha256(path)
    assert "t.csv" in sex_change[0].reason
    assert check_audit_chain(study.engine).intact


def test_an_unchanged_reimport_changes_no_fact(study, write):
    path = write("t.csv", hospital_export(10))
    import_file(study, path, register=True, cohort="t")
    again = import_file(study, path, cohort="t")
    assert again.counts["subjects_updated"] == 0
    assert (again.report.messages["kind"] != "subject_fact_changed").all()


def test_a_folder_import_hashes_its_files(tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "a.csv").write_text("x\n1\n")
    (folder / "b.csv").write_text("y\n2\n")
    first = source_sha256(folder)
    assert len(first) == 64
    (folder / "b.csv").write_text("y\n3\n")
    assert source_sha256(folder) != first
    (folder / "b.csv").write_text("y\n2\n")
    assert source_sha256(folder) == first
    (folder / "c.csv").write_text("")
    assert source_sha256(folder) != first


def test_the_batch_of_an_import_carries_the_file_hash(study, write):
    path = write("a.csv", hospital_export(10))
    result = import_file(study, path, register=True, cohort="a")
    with study.engine.connect() as connection:
        digest = connection.scalar(
            select(ImportBatch.source_sha256).where(ImportBatch.id == result.batch_id)
        )
    assert digest == file_sha256(path)
