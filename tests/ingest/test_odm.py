"""CDISC ODM 1.3 XML (REDCap's "CDISC ODM (XML)" export): recognised by its root element, read
into the same dictionary and records as the CSV pair and through the same REDCap reader; unsafe
or malformed XML refused with one message. The shared real project, written out as REDCap lays
out its ODM export, imports to the same subjects and values as its CSV pair."""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

import pandas as pd
import pytest
from sqlalchemy import select

from celltrial.errors import DataError
from celltrial.ingest import import_file
from celltrial.ingest import odm as odm_module
from celltrial.ingest.layouts import detect_layout
from celltrial.ingest.mapping import Mapping
from celltrial.ingest.odm import read_odm, read_odm_project
from celltrial.ingest.redcap import parse_choices, read_redcap, read_redcap_project
from celltrial.ingest.report import ValidationReport
from celltrial.store.models import Observation, Subject
from celltrial.study import init_study
from tests.ingest.conftest import LABS

REDCAP = LABS / "redcap-longitudinal"
OPEN = (
    '<?xml version="1.0" encoding="UTF-8" ?>\n'
    '<ODM xmlns="http://www.cdisc.org/ns/odm/v1.3" xmlns:ds="http://www.w3.org/2000/09/xmldsig#"'
    ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:redcap="https://projectredcap.org"'
    ' ODMVersion="1.3.1" FileOID="000-00-0000" FileType="Snapshot" Description="Demo"'
    ' AsOfDateTime="2020-03-01T10:00:00" CreationDateTime="2020-03-01T10:00:00"'
    ' SourceSystem="REDCap" SourceSystemVersion="14.0.0">\n'
)
#: REDCap's field types and validations as its ODM export names them.
ODM_TYPES = {"dropdown": "select", "notes": "textarea"}
ODM_VALIDATIONS = {"integer": "int", "number": "float"}
CHOICE_TYPES = {"radio", "dropdown", "yesno", "truefalse"}


def _data_type(kind: str, validation: str) -> str:
    if kind == "text":
        if validation.startswith("datetime"):
            return "partialDatetime" if "seconds" not in validation else "datetime"
        if validation.startswith("date"):
            return "date"
        return {"integer": "integer", "number": "float"}.get(validation, "text")
    return {"calc": "float", "checkbox": "boolean", "yesno": "boolean", "slider": "integer"}.get(
        kind, "text"
    )


def write_odm(dictionary: pd.DataFrame, records: pd.DataFrame, path, *, repeating=()) -> None:
    """An ODM file laid out as REDCap's export (ODM.php getOdmMetadata/getOdmClinicalData):
    FormDef → ItemGroupRef "form.field"; ItemDef with redcap:Variable/FieldType/
    TextValidationType/Identifier, Question/TranslatedText, CodeListRef → CodeList (checkboxes:
    one ItemDef per choice, redcap:CheckboxChoices); SubjectData/StudyEventData/FormData/
    ItemGroupData/ItemData with datetimes written with a "T"."""
    record_id = dictionary["field"].iloc[0]
    forms = list(dict.fromkeys(dictionary["form"]))
    lines = [OPEN, '<Study OID="Project.Demo">\n<GlobalVariables>\n']
    lines.append("\t<StudyName>Demo</StudyName>\n")
    if repeating:
        lines.append(
            "\t<redcap:RepeatingInstrumentsAndEvents>\n\t\t<redcap:RepeatingInstruments>\n"
        )
        for event, form in repeating:
            lines.append(
                f'\t\t\t<redcap:RepeatingInstrument redcap:UniqueEventName="{event}" '
                f'redcap:RepeatInstrument="{form}" redcap:CustomLabel=""/>\n'
            )
        lines.append(
            "\t\t</redcap:RepeatingInstruments>\n\t</redcap:RepeatingInstrumentsAndEvents>\n"
        )
    lines.append("</GlobalVariables>\n")
    lines.append(
        f'<MetaDataVersion OID="Metadata.Demo" Name="Demo" redcap:RecordIdField="{record_id}">\n'
    )
    events = list(dict.fromkeys(records.get("redcap_event_name", pd.Series(dtype=str)).dropna()))
    if events:
        lines.append("\t<Protocol>\n")
        lines += [
            f'\t\t<StudyEventRef StudyEventOID="Event.{e}" OrderNumber="{i}" Mandatory="No"/>\n'
            for i, e in enumerate(events, 1)
        ]
        lines.append("\t</Protocol>\n")
        for event in events:
            lines.append(
                f'\t<StudyEventDef OID="Event.{event}" Name="{event}" Type="Common" '
                f'Repeating="No" redcap:UniqueEventName="{event}">\n'
            )
            lines += [f'\t\t<FormRef FormOID="Form.{f}" Mandatory="No"/>\n' for f in forms]
            lines.append("\t</StudyEventDef>\n")
    item_defs, code_lists, groups = [], [], []
    for form in forms:
        fields = dictionary[dictionary["form"] == form]
        first = fields["field"].iloc[0]
        lines.append(
            f'\t<FormDef OID="Form.{form}" Name="{form}" Repeating="No" redcap:FormName="{form}">\n'
            f'\t\t<ItemGroupRef ItemGroupOID="{form}.{first}" Mandatory="No"/>\n'
            f'\t\t<ItemGroupRef ItemGroupOID="{form}.{form}_complete" Mandatory="No"/>\n'
            "\t</FormDef>\n"
        )
        refs = []
        for field in fields.itertuples():
            kind, validation = field.type, field.validation
            if kind == "checkbox":
                oids = [f"{field.field}___{c}" for c in parse_choices(field.choices)]
            else:
                oids = [field.field]
            for oid in oids:
                variable = f'redcap:Variable="{field.field}"'
                refs.append(f'\t\t<ItemRef ItemOID="{oid}" Mandatory="No" {variable}/>\n')
                attributes = (
                    f'OID="{oid}" Name="{oid}" DataType="{_data_type(kind, validation)}" '
                    f'Length="999" redcap:Variable="{field.field}" '
                    f'redcap:FieldType="{ODM_TYPES.get(kind, kind)}"'
                )
                if validation:
                    named = ODM_VALIDATIONS.get(validation, validation)
                    attributes += f' redcap:TextValidationType="{named}"'
                if kind == "calc":
                    attributes += f" redcap:Calculation={quoteattr(field.choices)}"
                if str(field.identifier).strip() == "y":
                    attributes += ' redcap:Identifier="y"'
                choices = (
                    {"1": "Yes", "0": "No"} if kind == "yesno" else parse_choices(field.choices)
                )
                codes = kind in CHOICE_TYPES or kind == "checkbox"
                item = f"\t<ItemDef {attributes}>\n"
                label = f"<TranslatedText>{escape(field.label)}</TranslatedText>"
                item += f"\t\t<Question>{label}</Question>\n"
                if codes:
                    item += f'\t\t<CodeListRef CodeListOID="{oid}.choices"/>\n'
                item_defs.append(item + "\t</ItemDef>\n")
                if kind == "checkbox":
                    code_lists.append(
                        f'\t<CodeList OID="{oid}.choices" Name="{oid}" DataType="boolean" '
                        f'redcap:Variable="{field.field}" '
                        f"redcap:CheckboxChoices={quoteattr(field.choices)}>\n"
                        '\t\t<CodeListItem CodedValue="1"><Decode><TranslatedText>Checked'
                        "</TranslatedText></Decode></CodeListItem>\n"
                        '\t\t<CodeListItem CodedValue="0"><Decode><TranslatedText>Unchecked'
                        "</TranslatedText></Decode></CodeListItem>\n\t</CodeList>\n"
                    )
                elif codes:
                    items = "".join(
                        f"\t\t<CodeListItem CodedValue={quoteattr(code)}><Decode><TranslatedText>"
                        f"{escape(label)}</TranslatedText></Decode></CodeListItem>\n"
                        for code, label in choices.items()
                    )
                    code_lists.append(
                        f'\t<CodeList OID="{oid}.choices" Name="{oid}" DataType="text" '
                        f'redcap:Variable="{field.field}">\n{items}\t</CodeList>\n'
                    )
        groups.append(
            f'\t<ItemGroupDef OID="{form}.{first}" Name="{form}" Repeating="No">\n'
            + "".join(refs)
            + "\t</ItemGroupDef>\n"
            f'\t<ItemGroupDef OID="{form}.{form}_complete" Name="Form Status" Repeating="No">\n'
            f'\t\t<ItemRef ItemOID="{form}_complete" Mandatory="No" '
            f'redcap:Variable="{form}_complete"/>\n\t</ItemGroupDef>\n'
        )
        item_defs.append(
            f'\t<ItemDef OID="{form}_complete" Name="{form}_complete" DataType="text" Length="1" '
            f'redcap:Variable="{form}_complete" redcap:FieldType="select" '
            'redcap:SectionHeader="Form Status">\n'
            "\t\t<Question><TranslatedText>Complete?</TranslatedText></Question>\n"
            f'\t\t<CodeListRef CodeListOID="{form}_complete.choices"/>\n\t</ItemDef>\n'
        )
        code_lists.append(
            f'\t<CodeList OID="{form}_complete.choices" Name="{form}_complete" DataType="text" '
            f'redcap:Variable="{form}_complete">\n'
            + "".join(
                f'\t\t<CodeListItem CodedValue="{c}"><Decode><TranslatedText>{t}'
                "</TranslatedText></Decode></CodeListItem>\n"
                for c, t in (("0", "Incomplete"), ("1", "Unverified"), ("2", "Complete"))
            )
            + "\t</CodeList>\n"
        )
    lines += groups + item_defs + code_lists
    lines.append("</MetaDataVersion>\n</Study>\n")
    lines.append('<ClinicalData StudyOID="Project.Demo" MetaDataVersionOID="Metadata.Demo">\n')
    field_form = {}
    for field in dictionary.itertuples():
        if field.type == "checkbox":
            for code in parse_choices(field.choices):
                field_form[f"{field.field}___{code}"] = field.form
        else:
            field_form[field.field] = field.form
    field_form |= {f"{form}_complete": form for form in forms}
    datetimes = set(dictionary.loc[dictionary["validation"].str.startswith("datetime"), "field"])
    previous = None
    for row in records.to_dict("records"):
        subject = row[record_id]
        if subject != previous:
            if previous is not None:
                lines.append("\t</SubjectData>\n")
            lines.append(
                f"\t<SubjectData SubjectKey={quoteattr(subject)} "
                f'redcap:RecordIdField="{record_id}">\n'
            )
            previous = subject
        row = {k: None if pd.isna(v) else v for k, v in row.items()}
        event = row.get("redcap_event_name")
        instrument, instance = (
            row.get("redcap_repeat_instrument"),
            row.get("redcap_repeat_instance"),
        )
        if event:
            lines.append(
                f'\t\t<StudyEventData StudyEventOID="Event.{event}" StudyEventRepeatKey="1" '
                f'redcap:UniqueEventName="{event}">\n'
            )
        for form in forms:
            if instrument and form != instrument:
                continue
            if not instrument and (event, form) in set(repeating):
                continue
            values = [
                (name, value)
                for name, value in row.items()
                if field_form.get(name) == form and not pd.isna(value) and value != ""
            ]
            if not values:
                continue
            key = instance if instrument else "1"
            lines.append(f'\t\t\t<FormData FormOID="Form.{form}" FormRepeatKey="{key}">\n')
            group = f'ItemGroupOID="{form}.{record_id}" ItemGroupRepeatKey="1"'
            lines.append(f"\t\t\t\t<ItemGroupData {group}>\n")
            for name, value in values:
                text = str(value).replace(" ", "T") if name in datetimes else str(value)
                lines.append(f'\t\t\t\t\t<ItemData ItemOID="{name}" Value={quoteattr(text)}/>\n')
            lines.append("\t\t\t\t</ItemGroupData>\n\t\t\t</FormData>\n")
        if event:
            lines.append("\t\t</StudyEventData>\n")
    if previous is not None:
        lines.append("\t</SubjectData>\n")
    lines.append("</ClinicalData>\n</ODM>\n")
    path.write_text("".join(lines), encoding="utf-8")


DICTIONARY = pd.DataFrame(
    [
        ("record_id", "demo", "text", "", "Record ID", "", ""),
        ("name", "demo", "text", "", "Name", "", "y"),
        ("sex", "demo", "radio", "", "Sex", "1, Male | 2, Female", ""),
        ("weight", "demo", "text", "number", "Weight (kg)", "", ""),
        ("symptoms", "demo", "checkbox", "", "Symptoms", "1, Fever | 2, Cough", ""),
        ("draw_time", "labs", "text", "datetime_ymd", "Time of blood draw", "", ""),
        ("crp", "labs", "text", "number", "C-reactive protein (mg/dL)", "", ""),
        ("crp_date", "labs", "text", "date_ymd", "Date of CRP", "", ""),
    ],
    columns=["field", "form", "type", "validation", "label", "choices", "identifier"],
)
_ = None
RECORDS = pd.DataFrame(
    [
        ("R1", "baseline_arm_1", _, _, "Alice", "2", "61", "1", "0", _, _, _),
        ("R1", "baseline_arm_1", "labs", "1", _, _, _, _, _, "2020-02-10 08:00", "1.5",
         "2020-02-10"),
        ("R1", "baseline_arm_1", "labs", "2", _, _, _, _, _, "2020-02-11 08:30", "<0.5", _),
        ("R2", "baseline_arm_1", _, _, "Bob", "1", "82", "0", "1", _, _, _),
        ("R2", "baseline_arm_1", "labs", "1", _, _, _, _, _, "2020-02-12 09:00", "3", _),
    ],
    columns=["record_id", "redcap_event_name", "redcap_repeat_instrument",
             "redcap_repeat_instance", "name", "sex", "weight", "symptoms___1", "symptoms___2",
             "draw_time", "crp", "crp_date"],
)  # fmt: skip


@pytest.fixture
def small_odm(tmp_path):
    path = tmp_path / "Demo_CDISC_ODM.xml"
    write_odm(DICTIONARY, RECORDS, path, repeating=[("baseline_arm_1", "labs")])
    return path


def test_an_odm_export_is_recognised_by_its_root_element(small_odm):
    assert detect_layout(small_odm, Mapping()) == "odm"
    assert detect_layout(small_odm, Mapping(layout="redcap")) == "odm"


def test_the_odm_dictionary_and_records_are_those_of_the_csv_export(small_odm):
    project = read_odm_project(small_odm)
    dictionary = project.dictionary
    assert dictionary["field"].tolist() == DICTIONARY["field"].tolist()
    assert dictionary.set_index("field").loc["sex", "choices"] == "1, Male | 2, Female"
    assert dictionary.set_index("field").loc["symptoms", "choices"] == "1, Fever | 2, Cough"
    assert dictionary.set_index("field").loc["name", "identifier"] == "y"
    records = project.records[RECORDS.columns]
    assert records.astype(object).where(records.notna(), None).values.tolist() == (
        RECORDS.astype(object).where(RECORDS.notna(), None).values.tolist()
    )
    # every value keeps its line: crp of R1's second instance is on the line that holds it
    line = project.rows_of("crp")[2]
    assert 'ItemOID="crp" Value="&lt;0.5"' in small_odm.read_text().splitlines()[line - 1]


def test_a_small_odm_imports_results_and_subject_facts(study, small_odm):
    result = import_file(study, small_odm, register=True, cohort="odm")
    assert result.layout == "odm"
    assert result.report.counts == {"results": 3, "stored": 3, "flagged": 0, "reported": 0}
    with study.engine.connect() as connection:
        values = connection.execute(
            select(Observation.value, Observation.qualifier, Observation.source_row).order_by(
                Observation.time
            )
        ).all()
        sexes = dict(
            connection.execute(
                select(Subject.code, Subject.sex).where(Subject.code.in_(["R1", "R2"]))
            ).all()
        )
    assert [(v, q) for v, q, _ in values] == [(15.0, ""), (5.0, "<"), (30.0, "")]  # mg/dL × 10
    lines = small_odm.read_text().splitlines()
    assert all('ItemOID="crp"' in lines[row - 1] for _v, _q, row in values)
    assert sexes == {"R1": "F", "R2": "M"}


def test_a_bad_value_is_reported_at_its_line(small_odm, tmp_path):
    text = small_odm.read_text().replace('Value="2020-02-12T09:00"', 'Value="2020-02-31T09:00"')
    path = tmp_path / "bad.xml"
    path.write_text(text, encoding="utf-8")
    report = ValidationReport(file=str(path))
    read_odm(path, Mapping(), report, zone="UTC")
    error = report.errors.iloc[0]
    assert error["kind"] == "bad_time" and error["column"] == "draw_time"
    assert "2020-02-31T09:00" in text.splitlines()[error["row"] - 1]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '<?xml version="1.0"?><!DOCTYPE ODM [<!ENTITY x "y">]><ODM '
            'xmlns="http://www.cdisc.org/ns/odm/v1.3">&x;</ODM>',
            "document type declaration",
        ),
        ('<?xml version="1.0"?><ODM xmlns="http://example.org/other"/>', "root element"),
        ('<?xml version="1.0"?><Bundle/>', "expected ODM in the namespace"),
        ('<?xml version="1.0"?><ODM xmlns="http://www.cdisc.org/ns/odm/v1.3"><Study>', "line 1"),
        ("", "the file is empty"),
    ],
)
def test_unsafe_or_foreign_xml_is_refused_with_one_message(tmp_path, text, message):
    path = tmp_path / "export.xml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        detect_layout(path, Mapping())
        read_odm_project(path)


def test_an_entity_declaration_is_refused_even_without_doctype_text(tmp_path):
    path = tmp_path / "export.xml"
    path.write_text('<ODM xmlns="http://www.cdisc.org/ns/odm/v1.3"><!ENTITY a "b"></ODM>')
    with pytest.raises(DataError, match="entity declaration"):
        read_odm_project(path)


def test_too_many_elements_are_refused(small_odm, monkeypatch):
    monkeypatch.setattr(odm_module, "MAX_ELEMENTS", 50)
    with pytest.raises(DataError, match="more than 50 XML elements"):
        read_odm_project(small_odm)


def test_odm_without_metadata_is_refused(tmp_path):
    path = tmp_path / "data-only.xml"
    path.write_text(
        OPEN + '<ClinicalData StudyOID="S" MetaDataVersionOID="M"></ClinicalData></ODM>',
        encoding="utf-8",
    )
    with pytest.raises(DataError, match="no Study/MetaDataVersion"):
        read_odm_project(path)


needs_real = pytest.mark.skipif(
    not REDCAP.is_dir(), reason=f"shared REDCap project absent: {REDCAP}"
)


@pytest.fixture
def real_odm(tmp_path):
    project = read_redcap_project(REDCAP)
    path = tmp_path / "redcap-longitudinal.xml"
    write_odm(project.dictionary, project.records, path)
    return path


def _observations(study) -> list[tuple]:
    with study.engine.connect() as connection:
        rows = connection.execute(
            select(
                Subject.code,
                Observation.test,
                Observation.time,
                Observation.value,
                Observation.unit,
                Observation.qualifier,
            ).join(Subject, Subject.id == Observation.subject_id)
        ).all()
    return sorted(tuple(r) for r in rows)


@needs_real
def test_real_project_as_odm_reads_as_the_csv_pair(real_odm):
    csv_project, odm_project = read_redcap_project(REDCAP), read_odm_project(real_odm)

    def comparable(dictionary: pd.DataFrame) -> pd.DataFrame:
        # a slider's labels are not in REDCap's ODM (its values are numbers either way)
        out = dictionary.drop(columns="units")
        out.loc[out["type"] == "slider", "choices"] = ""
        return out

    pd.testing.assert_frame_equal(
        comparable(odm_project.dictionary), comparable(csv_project.dictionary)
    )
    columns = [c for c in csv_project.records.columns if not c.endswith("_complete")]

    def values(records: pd.DataFrame) -> list[list]:
        records = records.reindex(columns=columns).astype(object)
        return records.where(records.notna(), None).values.tolist()

    assert values(odm_project.records) == values(csv_project.records)
    csv_raw, csv_subjects = read_redcap(REDCAP, Mapping(), ValidationReport(file="csv"), zone="UTC")
    odm_raw, odm_subjects = read_odm(real_odm, Mapping(), ValidationReport(file="xml"), zone="UTC")
    pd.testing.assert_frame_equal(
        odm_raw.drop(columns="source_row"), csv_raw.drop(columns="source_row"), check_dtype=False
    )
    pd.testing.assert_frame_equal(
        odm_subjects.drop(columns="source_row"),
        csv_subjects.drop(columns="source_row"),
        check_dtype=False,
    )


@needs_real
def test_real_project_as_odm_stores_the_same_subjects_and_values(tmp_path, real_odm):
    from_csv = init_study(tmp_path / "csv", user="tester")
    from_odm = init_study(tmp_path / "odm", user="tester")
    by_csv = import_file(from_csv, REDCAP / "data.csv", register=True, cohort="rc", user="tester")
    by_odm = import_file(from_odm, real_odm, register=True, cohort="rc", user="tester")
    assert by_odm.layout == "odm" and by_csv.layout == "redcap"
    assert by_odm.counts["subjects"] == by_csv.counts["subjects"] == 3
    assert by_odm.report.counts == by_csv.report.counts
    assert by_odm.counts["inserted"] == by_csv.counts["inserted"] == 10
    assert _observations(from_odm) == _observations(from_csv)
    with from_odm.engine.connect() as a, from_csv.engine.connect() as b:
        query = select(Subject.code, Subject.sex, Subject.age).order_by(Subject.code)
        assert a.execute(query).all() == b.execute(query).all()
