"""Recognise the roles of a file's columns (subject, time, test, value, unit…) by their names."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from celltrial.ingest.mapping import Mapping
from celltrial.ingest.names import fold_name

#: Spellings of each column role (folded with :func:`fold_name`); first match wins.
ROLE_NAMES: dict[str, tuple[str, ...]] = {
    "subject": (
        "subject_id",
        "subject",
        "subjid",
        "usubjid",
        "patient_id",
        "patient",
        "patientid",
        "record_id",
        "study_id",
        "患者id",
        "病人id",
        "患者编号",
        "住院号",
    ),
    "time": (
        "time",
        "datetime",
        "date_time",
        "collection_time",
        "collected",
        "sample_time",
        "specimen_time",
        "lbdtc",
        "vsdtc",
        "re_date",
        "result_date",
        "date",
        "采样时间",
        "检测时间",
        "报告时间",
        "采集时间",
    ),
    "test": (
        "test",
        "test_name",
        "testname",
        "lbtest",
        "lbtestcd",
        "vstest",
        "vstestcd",
        "analyte",
        "item",
        "parameter",
        "检验项目",
        "项目",
        "项目名称",
    ),
    "value": ("value", "result", "lborres", "vsorres", "result_value", "结果", "检验结果"),
    "unit": ("unit", "units", "lborresu", "vsorresu", "result_unit", "单位"),
    "ref_low": ("ref_low", "reference_low", "lbornrlo", "normal_low", "参考下限"),
    "ref_high": ("ref_high", "reference_high", "lbornrhi", "normal_high", "参考上限"),
    "reference": (
        "reference",
        "reference_range",
        "ref_range",
        "normal_range",
        "参考范围",
        "参考区间",
        "参考值",
    ),
    "specimen": ("specimen", "lbspec", "sample_type", "specimen_type", "标本", "标本类型"),
    "sex": ("sex", "gender", "性别"),
    "age": ("age", "age_years", "年龄"),
    "birth_date": ("birth_date", "birthdate", "date_of_birth", "dob", "brthdtc", "出生日期"),
    "height": ("height", "height_cm", "body_height", "身高"),
    "weight": ("weight", "weight_kg", "body_weight", "体重"),
    "admitted": ("admission time", "admission_time", "admitted", "admission", "入院时间"),
    "discharged": ("discharge time", "discharge_time", "discharged", "discharge", "出院时间"),
    "died": ("death time", "death_time", "died", "date_of_death", "死亡时间"),
    "outcome": ("outcome", "出院方式", "转归"),
}


#: Roles that are facts about a subject, in wide and long files alike.
FACT_ROLES: tuple[str, ...] = (
    "sex",
    "age",
    "birth_date",
    "height",
    "weight",
    "admitted",
    "discharged",
    "died",
    "outcome",
)


def _role_key(name: str) -> str:
    return fold_name(name).replace("_", " ")


def find_roles(columns: Iterable[str], mapping: Mapping, roles: Iterable[str]) -> dict[str, str]:
    """role → column name for ``roles`` found among ``columns`` (the mapping wins).

    The ``offsets: column`` of a mapping takes the ``time`` role: its days are the times."""
    names = list(columns)
    folded = {_role_key(c): c for c in names}
    found: dict[str, str] = {}
    for role in roles:
        if role in mapping.columns:
            found[role] = mapping.columns[role]
            continue
        if role == "time" and mapping.offsets is not None and mapping.offsets.column:
            found[role] = mapping.offsets.column
            continue
        for spelling in map(_role_key, ROLE_NAMES.get(role, ())):
            if spelling in folded and folded[spelling] not in found.values():
                found[role] = folded[spelling]
                break
    return found


def subject_id_column(mapping: Mapping) -> Callable[[list[str]], list[str | None]]:
    """For :mod:`celltrial.ingest.tables` (``id_columns``): the subject column of a header, read
    as text exactly as written."""
    return lambda header: [find_roles(header, mapping, ("subject",)).get("subject")]


def resolve_tests(names: Iterable[str], mapping: Mapping) -> dict[str, tuple[str | None, ...]]:
    """name → (test code or None, unit from the name or mapping, specimen from the mapping)."""
    from celltrial.catalogue import load_catalogue
    from celltrial.errors import DataError
    from celltrial.ingest.names import match_test

    catalogue = load_catalogue()
    resolved: dict[str, tuple[str | None, ...]] = {}
    for name in names:
        entry = mapping.test_for(str(name))
        if entry is False:
            match = match_test(str(name))
            resolved[name] = (match.code, match.unit, None) if match else (None, None, None)
        elif entry is None or entry.test is None:
            resolved[name] = (None, None, None)
        else:
            if entry.test not in catalogue:
                raise DataError(
                    f"mapping: test {entry.test!r} for {name!r} is not a catalogue code; "
                    f"known codes: {', '.join(sorted(catalogue.codes))}"
                )
            resolved[name] = (entry.test, entry.unit, entry.specimen)
    return resolved
