"""FHIR files that are not what a FHIR reader expects: one message naming the file (and the
entry and field), where a Python error used to escape (AttributeError, RecursionError…)."""

from __future__ import annotations

import json

import pytest

from celltrial.errors import DataError
from celltrial.ingest import ImportRefused, import_file


def bundle(*resources) -> dict:
    return {"resourceType": "Bundle", "entry": [{"resource": r} for r in resources]}


PATIENT = {"resourceType": "Patient", "id": "p-1"}


def observation(**fields) -> dict:
    return {
        "resourceType": "Observation",
        "code": {"coding": [{"system": "http://loinc.org", "code": "1988-5"}], "text": "CRP"},
        "subject": {"reference": "Patient/p-1"},
        "effectiveDateTime": "2020-02-10T08:00:00+08:00",
        "valueQuantity": {"value": 12, "unit": "mg/L", "code": "mg/L"},
        **fields,
    }


def write_json(tmp_path, document, *, raw: str | None = None, encoding="utf-8"):
    path = tmp_path / "bundle.json"
    text = raw if raw is not None else json.dumps(document)
    path.write_bytes(text.encode(encoding))
    return path


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([PATIENT], "expected a FHIR Bundle or resource .* got a list"),
        ("Bundle", "got the text 'Bundle'"),
        (None, "got null"),
        ({"resourceType": 5}, "resourceType: expected the FHIR resource type as text"),
        ({"resourceType": "Bundle", "entry": {"resource": PATIENT}}, "Bundle.entry: expected a"),
        ({"resourceType": "Bundle", "entry": [1]}, "entry 1: expected an object"),
        (bundle(PATIENT, observation(subject="p-1")), r"entry 2 \(Observation\), subject: exp"),
        (bundle(PATIENT, observation(code="CRP")), r"entry 2 \(Observation\), code: expected"),
        (
            bundle(PATIENT, observation(code={"coding": [{"code": ["1988-5"]}]})),
            r"code\.coding\[0\]\.code: expected text, got a list",
        ),
        (bundle(PATIENT, observation(valueQuantity="12")), "valueQuantity: expected an object"),
        (bundle({**PATIENT, "gender": ["female"]}), r"entry 1 \(Patient\), gender: expected te"),
        (bundle({**PATIENT, "id": {"value": "p-1"}}), "id: expected the patient's id as text"),
    ],
)
def test_wrong_shapes_are_named(study, tmp_path, document, message):
    path = write_json(tmp_path, document)
    with pytest.raises(DataError, match=rf"bundle\.json: .*{message}"):
        import_file(study, path, register=True)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("[" * 10000 + "]" * 10000, "nested too deeply"),
        (json.dumps(bundle(PATIENT)).replace('"p-1"', "NaN"), "line 1, column .*: NaN is not a"),
        (json.dumps(bundle(PATIENT)).replace("p-1", "p\\u0000"), r"a NUL character \(\\u0000\)"),
        ("", "not valid JSON at line 1, column 1"),
    ],
)
def test_hostile_json_is_refused_at_once(study, tmp_path, raw, message):
    with pytest.raises(DataError, match=rf"bundle\.json: .*{message}"):
        import_file(study, write_json(tmp_path, None, raw=raw), register=True)


@pytest.mark.parametrize("encoding", ["latin-1", "utf-16"])
def test_not_utf8_is_said_so(study, tmp_path, encoding):
    text = json.dumps(bundle({**PATIENT, "id": "pé"}), ensure_ascii=False)
    path = write_json(tmp_path, None, raw=text, encoding=encoding)
    with pytest.raises(DataError, match=r"bundle\.json: not UTF-8 text \(byte \d+ cannot be read"):
        import_file(study, path, register=True)


def test_byte_order_mark_is_accepted(study, tmp_path):
    path = write_json(tmp_path, None, raw="\ufeff" + json.dumps(bundle(PATIENT, observation())))
    assert import_file(study, path, register=True).counts["inserted"] == 1


def test_unreadable_time_of_death_is_an_error_not_a_blank(study, tmp_path):
    path = write_json(tmp_path, bundle({**PATIENT, "deceasedDateTime": "31/02/2020"}))
    with pytest.raises(ImportRefused) as refused:
        import_file(study, path, register=True)
    errors = refused.value.report.errors
    assert list(errors["kind"]) == ["bad_time"] and list(errors["column"]) == ["deceasedDateTime"]


@pytest.mark.parametrize("digits", [400, 5000])  # 5000: beyond what Python converts
def test_a_number_beyond_float_is_reported_not_stored_as_infinity(study, tmp_path, digits):
    value = '"value": 1' + "0" * digits
    raw = json.dumps(bundle(PATIENT, observation())).replace('"value": 12', value)
    # the bundle's one result cannot be stored: an import that stores nothing is refused
    with pytest.raises(ImportRefused) as refused:
        import_file(study, write_json(tmp_path, None, raw=raw), register=True)
    report = refused.value.report
    assert report.counts["reported"] == 1 and report.counts["stored"] == 0
    assert set(report.messages["kind"]) == {"text_result", "nothing_stored"}
