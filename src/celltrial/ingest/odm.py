"""Read REDCap's CDISC ODM 1.3 XML export ("CDISC ODM (XML)" with metadata and data) as the same
dictionary and records tables as the CSV pair, then read them with the REDCap reader.

Recognised by its root element ``ODM`` in the namespace ``http://www.cdisc.org/ns/odm/v1.3``.

- the dictionary comes from ``Study/MetaDataVersion``: each ``ItemDef`` (its ``Name``,
  ``redcap:Variable``, ``redcap:FieldType``, ``redcap:TextValidationType``,
  ``redcap:Identifier``, the label in ``Question/TranslatedText``, the choices of its
  ``CodeListRef`` → ``CodeList``), in the form whose ``FormDef`` refers to its item group; the
  record ID is ``redcap:RecordIdField``. Types are named as in the CSV dictionary (``select`` →
  dropdown, ``textarea`` → notes, validation ``int`` → integer, ``float`` → number); a file
  without REDCap's attributes is read from the ODM ``DataType`` (integer, float, date…);
- the records come from ``ClinicalData/SubjectData[@SubjectKey]/StudyEventData[@StudyEventOID]
  /FormData/ItemGroupData/ItemData[@ItemOID, @Value]``: one row per record × event (the
  ``redcap_event_name`` of ``redcap:UniqueEventName``), a repeating instrument's instances
  (``FormRepeatKey``) and a repeating event's (``StudyEventRepeatKey``) rows of their own, as
  in the CSV export. Each value keeps the line it is on, so that messages point at it.

The file is parsed with the standard library's expat parser into an ElementTree, refusing a
document type declaration or entity declarations (no entity expansion, no external resources)
and files beyond :data:`MAX_BYTES` or :data:`MAX_ELEMENTS`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from xml.parsers import expat
from zoneinfo import ZoneInfo

import pandas as pd

from celltrial.errors import DataError
from celltrial.ingest.mapping import Mapping
from celltrial.ingest.redcap import RedcapProject, check_dictionary, read_project
from celltrial.ingest.report import ValidationReport

ODM_NS = "http://www.cdisc.org/ns/odm/v1.3"
REDCAP_NS = "https://projectredcap.org"
MAX_BYTES = 1 << 30  # 1 GiB
MAX_ELEMENTS = 20_000_000
#: REDCap's internal field types → the names the data dictionary CSV uses.
FIELD_TYPES = {"select": "dropdown", "textarea": "notes", "sql": "dropdown"}
VALIDATIONS = {"int": "integer", "float": "number"}
#: ODM DataType → (field type, validation) for items without REDCap's attributes.
DATA_TYPES = {
    "integer": ("text", "integer"),
    "float": ("text", "number"),
    "double": ("text", "number"),
    "date": ("text", "date_ymd"),
    "datetime": ("text", "datetime_seconds_ymd"),
    "partialdatetime": ("text", "datetime_ymd"),
    "partialdate": ("text", "date_ymd"),
}


def _o(tag: str) -> str:
    return f"{{{ODM_NS}}}{tag}"


def _r(name: str) -> str:
    return f"{{{REDCAP_NS}}}{name}"


class _Stop(Exception):
    """Raised by a handler to stop parsing once the root element is known."""


def _refuse(path: Path, what: str) -> DataError:
    return DataError(
        f"{path}: the XML file has {what}; expected a plain ODM export without a document type "
        "or entity declarations (they are refused: they can make a parser read other files or "
        "expand text without end)"
    )


def _parser(path: Path) -> expat.XMLParserType:
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)

    def doctype(*_args) -> None:
        raise _refuse(path, "a document type declaration (<!DOCTYPE …>)")

    def entity(*_args) -> None:
        raise _refuse(path, "an entity declaration (<!ENTITY …>)")

    def external(*_args) -> int:
        raise _refuse(path, "a reference to an external entity")

    parser.StartDoctypeDeclHandler = doctype
    parser.EntityDeclHandler = entity
    parser.ExternalEntityRefHandler = external
    return parser


def _tag(name: str) -> str:
    uri, _, local = name.rpartition(" ")
    return f"{{{uri}}}{local}" if uri else local


def _xml_error(path: Path, parser: expat.XMLParserType, exc: expat.ExpatError) -> DataError:
    return DataError(
        f"{path}: line {exc.lineno}, column {exc.offset + 1}: not well-formed XML "
        f"({expat.ErrorString(exc.code)}); expected a CDISC ODM XML export"
    )


def _check_size(path: Path) -> None:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    size = path.stat().st_size
    if size == 0:
        raise DataError(f"{path}: the file is empty (expected a CDISC ODM XML export)")
    if size > MAX_BYTES:
        raise DataError(
            f"{path}: {size / 2**20:.0f} MiB is larger than the {MAX_BYTES / 2**20:.0f} MiB an "
            "ODM file may have; export the project in parts (by records or forms) or as CSV"
        )


def _check_declarations(path: Path, data: bytes) -> None:
    """Refuse DOCTYPE/ENTITY before any parsing (also in UTF-16 files)."""
    text = data
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = data.decode("utf-16", errors="replace").encode("utf-8")
    if b"<!DOCTYPE" in text:
        raise _refuse(path, "a document type declaration (<!DOCTYPE …>)")
    if b"<!ENTITY" in text:
        raise _refuse(path, "an entity declaration (<!ENTITY …>)")


def check_odm_root(path: Path) -> None:
    """:class:`DataError` unless ``path`` is XML whose root element is ODM 1.3's ``ODM``."""
    _check_size(path)
    parser = _parser(path)
    found: list[str] = []

    def start(name, _attrs) -> None:
        found.append(_tag(name))
        raise _Stop

    parser.StartElementHandler = start
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 16):
                _check_declarations(path, chunk)
                parser.Parse(chunk, False)
            parser.Parse(b"", True)
    except _Stop:
        pass
    except expat.ExpatError as exc:
        raise _xml_error(path, parser, exc) from None
    if not found:
        raise DataError(f"{path}: no XML element found; expected a CDISC ODM XML export")
    if found[0] != _o("ODM"):
        raise DataError(
            f"{path}: the XML root element is {found[0]!r}; expected ODM in the namespace "
            f'{ODM_NS} (a CDISC ODM 1.3 export such as REDCap\'s "CDISC ODM (XML)")'
        )


def parse_odm(path: Path) -> tuple[ET.Element, dict[ET.Element, int]]:
    """(root element, line of each element) of a safe, bounded parse of ``path``."""
    _check_size(path)
    data = path.read_bytes()
    _check_declarations(path, data)
    parser = _parser(path)
    builder = ET.TreeBuilder()
    lines: dict[ET.Element, int] = {}

    def start(name, attrs) -> None:
        if len(lines) >= MAX_ELEMENTS:
            raise DataError(
                f"{path}: line {parser.CurrentLineNumber}: more than {MAX_ELEMENTS:,} XML "
                "elements; export the project in parts (by records or forms) or as CSV"
            )
        element = builder.start(_tag(name), {_tag(k): v for k, v in attrs.items()})
        lines[element] = parser.CurrentLineNumber

    parser.StartElementHandler = start
    parser.EndElementHandler = lambda name: builder.end(_tag(name))
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise _xml_error(path, parser, exc) from None
    root = builder.close()
    if root.tag != _o("ODM"):
        raise DataError(
            f"{path}: the XML root element is {root.tag!r}; expected ODM in the namespace {ODM_NS}"
        )
    return root, lines


def _text(element: ET.Element | None) -> str:
    if element is None:
        return ""
    translated = element.find(_o("TranslatedText"))
    node = translated if translated is not None else element
    return "".join(node.itertext()).strip()


@dataclass
class _Meta:
    dictionary: pd.DataFrame
    record_id: str
    forms: dict[str, str]  # FormOID → form name
    datetime_items: set[str]
    repeating_forms: set[tuple[str, str]]  # (event, form)
    repeating_events: set[str]


def _metadata(path: Path, root: ET.Element, lines: dict) -> _Meta:
    study = root.find(_o("Study"))
    version = study.find(_o("MetaDataVersion")) if study is not None else None
    if version is None:
        raise DataError(
            f"{path}: no Study/MetaDataVersion (the field definitions); expected an ODM export "
            'that includes the metadata (REDCap: "CDISC ODM (XML)" with the project\'s '
            "metadata and data)"
        )
    forms: dict[str, str] = {}
    group_form: dict[str, str] = {}
    for form in version.iter(_o("FormDef")):
        oid = form.get("OID", "")
        name = form.get(_r("FormName")) or oid.removeprefix("Form.")
        forms[oid] = name
        for ref in form.iter(_o("ItemGroupRef")):
            group_form.setdefault(ref.get("ItemGroupOID", ""), name)
    item_form: dict[str, str] = {}
    for group in version.iter(_o("ItemGroupDef")):
        oid = group.get("OID", "")
        form = group_form.get(oid) or oid.partition(".")[0]
        for ref in group.iter(_o("ItemRef")):
            item_form.setdefault(ref.get("ItemOID", ""), form)
    codelists: dict[str, ET.Element] = {c.get("OID", ""): c for c in version.iter(_o("CodeList"))}
    form_names = set(forms.values())
    rows, where, datetime_items, seen = [], [], set(), set()
    for item in version.iter(_o("ItemDef")):
        oid, name = item.get("OID", ""), item.get("Name") or item.get("OID", "")
        variable = item.get(_r("Variable")) or name
        form = item_form.get(oid, "")
        if name in {f"{f}_complete" for f in form_names} | {f"{f}_timestamp" for f in form_names}:
            continue  # form status and survey time: columns of the records, not dictionary fields
        kind = item.get(_r("FieldType"))
        validation = item.get(_r("TextValidationType"), "")
        ref = item.find(_o("CodeListRef"))
        codelist = codelists.get(ref.get("CodeListOID", "")) if ref is not None else None
        if kind is None:  # plain ODM: from the data type
            data_type = item.get("DataType", "text").casefold()
            kind, validation = DATA_TYPES.get(data_type, ("text", ""))
            if codelist is not None:
                kind, validation = "dropdown", ""
        kind = FIELD_TYPES.get(kind.casefold(), kind.casefold())
        validation = VALIDATIONS.get(validation.casefold(), validation.casefold())
        if validation.startswith("datetime"):
            datetime_items.add(name)
        if variable in seen:  # the other choices of a checkbox
            continue
        seen.add(variable)
        if kind in ("yesno", "truefalse"):
            choices = ""  # fixed codes, as in the CSV dictionary
        elif kind == "checkbox":
            choices = codelist.get(_r("CheckboxChoices"), "") if codelist is not None else ""
        elif codelist is not None:
            choices = " | ".join(
                f"{c.get('CodedValue', '')}, {_text(c.find(_o('Decode')))}"
                for c in codelist.iter(_o("CodeListItem"))
            )
        else:
            choices = item.get(_r("Calculation"), "")
        rows.append(
            {
                "field": variable,
                "form": form,
                "type": kind,
                "validation": validation,
                "label": _text(item.find(_o("Question"))),
                "choices": choices,
                "identifier": item.get(_r("Identifier"), ""),
                "units": item.get(_r("FieldUnits"), ""),
            }
        )
        where.append(lines.get(item, 0))
    table = pd.DataFrame(rows, columns=["field", "form", "type", "validation", "label",
                                        "choices", "identifier", "units"])  # fmt: skip
    record_id = version.get(_r("RecordIdField")) or (table["field"].iloc[0] if len(table) else "")
    if record_id in set(table["field"]):
        first = table.index[table["field"] == record_id][0]
        order = [first, *(i for i in table.index if i != first)]
        table, where = table.loc[order], [where[i] for i in order]
    dictionary = check_dictionary(table, path, pd.Series(where, index=table.index))
    repeating_forms, repeating_events = set(), set()
    for node in root.iter(_r("RepeatingInstrument")):
        repeating_forms.add(
            (node.get(_r("UniqueEventName"), ""), node.get(_r("RepeatInstrument"), ""))
        )
    for node in root.iter(_r("RepeatingEvent")):
        repeating_events.add(node.get(_r("UniqueEventName"), ""))
    return _Meta(dictionary, record_id, forms, datetime_items, repeating_forms, repeating_events)


def read_odm_project(path: str | Path, mapping: Mapping | None = None) -> RedcapProject:
    """The dictionary and records (text, as in the CSV export) of an ODM XML file, with the line
    of every record row and value."""
    path = Path(path)
    root, lines = parse_odm(path)
    meta = _metadata(path, root, lines)
    records: dict[tuple, dict[str, str | None]] = {}
    cells: dict[tuple, dict[str, int]] = {}
    starts: dict[tuple, int] = {}
    longitudinal = repeating = False
    for subject in root.iter(_o("SubjectData")):
        key = subject.get("SubjectKey")
        if key is None or not key.strip():
            raise DataError(
                f"{path}: line {lines.get(subject)}: SubjectData without a SubjectKey; expected "
                "every record to carry its record ID"
            )
        events = subject.findall(_o("StudyEventData"))
        blocks = [(e, e.get(_r("UniqueEventName")) or e.get("StudyEventOID", "").removeprefix(
            "Event."), e.get("StudyEventRepeatKey", "")) for e in events]  # fmt: skip
        if subject.findall(_o("FormData")):
            blocks.append((subject, "", ""))
        for block, event, event_repeat in blocks:
            longitudinal |= bool(event)
            for form_data in block.findall(_o("FormData")):
                oid = form_data.get("FormOID", "")
                form = meta.forms.get(oid, oid.removeprefix("Form."))
                form_repeat = form_data.get("FormRepeatKey", "")
                if (event, form) in meta.repeating_forms or form_repeat not in ("", "1"):
                    row = (key, event, form, form_repeat or "1")
                elif event in meta.repeating_events or event_repeat not in ("", "1"):
                    row = (key, event, "", event_repeat or "1")
                else:
                    row = (key, event, "", "")
                repeating |= bool(row[3])
                values = records.setdefault(row, {})
                where = cells.setdefault(row, {})
                starts.setdefault(row, lines.get(form_data, 0))
                for item in form_data.iter(_o("ItemData")):
                    name, value = item.get("ItemOID", ""), item.get("Value")
                    if value is not None and name in meta.datetime_items:
                        value = value.replace("T", " ")
                    value = value if value not in (None, "") else None
                    if name in values and values[name] != value and value is not None:
                        raise DataError(
                            f"{path}: lines {where[name]} and {lines.get(item)}: record {key!r}"
                            f"{f' event {event}' if event else ''} gives {name} twice "
                            f"({values[name]!r} and {value!r}); expected one value"
                        )
                    if value is not None or name not in values:
                        values[name] = value
                        where[name] = lines.get(item, 0)
    system = (["redcap_event_name"] if longitudinal else []) + (
        ["redcap_repeat_instrument", "redcap_repeat_instance"] if repeating else []
    )
    item_names = [
        i.get("Name") or i.get("OID", "")
        for i in root.iter(_o("ItemDef"))
        if (i.get("Name") or i.get("OID", "")) != meta.record_id
    ]
    extra = sorted({n for v in records.values() for n in v} - set(item_names) - {meta.record_id})
    columns = [meta.record_id, *system, *item_names, *extra]
    table = pd.DataFrame.from_records(
        [
            {
                **values,
                meta.record_id: row[0],
                "redcap_event_name": row[1] or None,
                "redcap_repeat_instrument": row[2] or None,
                "redcap_repeat_instance": row[3] or None,
            }
            for row, values in records.items()
        ],
        columns=columns,
    ).astype(object)
    table = table.where(table.notna(), None)
    line_table = pd.DataFrame.from_records(list(cells.values()), columns=columns)
    line_table[meta.record_id] = list(starts.values())
    rows = pd.Series(list(starts.values()), index=table.index, dtype=int)
    return RedcapProject(meta.dictionary, table, path, rows=rows, cells=line_table)


def read_odm(
    path: Path, mapping: Mapping, report: ValidationReport, *, zone: ZoneInfo | str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(raw long frame, subject information) of an ODM XML export, read by the REDCap reader."""
    return read_project(read_odm_project(path, mapping), mapping, report, zone=zone)
