"""Propose a column-mapping file for a table: each column's role or recognised test, its unit
and how sure the match is; what could not be recognised is listed for a person to decide.

Columns whose name identifies a person (a name, phone, e-mail, address, record number… listed
in ``identifying.yaml``) are never proposed as tests. A REDCap project (folder, records file with
its dictionary beside it, or ODM XML) is proposed from its data dictionary: only number fields
whose label or name is a lab test are proposed; identifier, date, choice, checkbox, notes and
calculated fields never are, and the subject facts (sex, age, height…) become ``columns:``.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from pathlib import Path

import yaml

from celltrial.catalogue import load_catalogue
from celltrial.ingest.columns import find_roles
from celltrial.ingest.long import LONG_ROLES, REQUIRED, read_sheet
from celltrial.ingest.mapping import ROLES, Mapping
from celltrial.ingest.names import match_test
from celltrial.ingest.tables import is_workbook, read_csv_table
from celltrial.ingest.wide import SUBJECT_ROLES

IDENTIFYING_FILE = Path(__file__).with_name("identifying.yaml")
_WORD_SPLIT = re.compile(r"[^0-9a-z]+")


@cache
def _identifying_words() -> tuple[tuple[tuple[str, ...], ...], tuple[str, ...]]:
    data = yaml.safe_load(IDENTIFYING_FILE.read_text(encoding="utf-8")) or {}
    words = tuple(tuple(_words(w)) for w in data.get("words", []) if _words(w))
    substrings = tuple(str(s).casefold() for s in data.get("substrings", []))
    return words, substrings


def _words(text: str) -> list[str]:
    folded = unicodedata.normalize("NFKC", str(text)).casefold()
    return [w for w in _WORD_SPLIT.split(folded) if w]


def looks_identifying(name: str) -> bool:
    """Whether a column or field name (or label) names something that identifies a person."""
    words, substrings = _identifying_words()
    folded = unicodedata.normalize("NFKC", str(name)).casefold()
    if any(s in folded for s in substrings):
        return True
    tokens = _words(name)
    for phrase in words:
        n = len(phrase)
        if any(tuple(tokens[i : i + n]) == phrase for i in range(len(tokens) - n + 1)):
            return True
    return False


def suggest_mapping(path: str | Path, *, sample_rows: int = 5000) -> tuple[dict, list[str]]:
    """(proposed mapping as a dict, columns or test names not recognised) for ``path``.

    A REDCap proposal's ``labels`` (field → label) are written as comments; its
    ``not_proposed`` lists the columns left out on purpose (identifying, or
    REDCap fields that cannot hold a lab value); :func:`write_mapping_proposal` writes it as a
    comment.
    """
    from celltrial.ingest.layouts import detect_layout

    path = Path(path)
    layout = detect_layout(path, Mapping())
    if layout in ("redcap", "odm"):
        return suggest_redcap_mapping(path, layout=layout)
    if is_workbook(path):
        table = read_sheet(path, Mapping())
    else:
        table = read_csv_table(path, what="lab file", dtype=str, nrows=sample_rows)
    table.columns = [str(c) for c in table.columns]
    long_roles = find_roles(table.columns, Mapping(), LONG_ROLES)
    is_long = all(r in long_roles for r in REQUIRED)
    roles = long_roles if is_long else find_roles(table.columns, Mapping(), SUBJECT_ROLES)
    not_proposed: list[str] = []
    if is_long:
        names = table[roles["test"]].dropna().astype(str).str.strip().unique().tolist()
    else:
        names = [c for c in table.columns if c not in roles.values()]
        not_proposed = [c for c in names if looks_identifying(c)]
        names = [c for c in names if c not in not_proposed]
    tests, unrecognised = _propose_tests(
        names, unit_of=lambda name: _unit_from_values(table, name, roles, is_long)
    )
    proposal = {
        "layout": "long" if is_long else "wide",
        "columns": {r: c for r, c in roles.items() if r in ROLES},
        "tests": tests,
    }
    if not_proposed:
        proposal["not_proposed"] = not_proposed
    return proposal, unrecognised


def _propose_tests(names, *, unit_of, labels=None) -> tuple[dict[str, dict | None], list[str]]:
    """name → proposed test entry (None when not recognised), and the names not recognised.
    ``labels`` (name → label) are matched first when given (REDCap field labels)."""
    catalogue = load_catalogue()
    tests: dict[str, dict | None] = {}
    unrecognised: list[str] = []
    for name in names:
        label = (labels or {}).get(name)
        match = (
            (match_test(label) if label else None)
            or match_test(name)
            or (match_test(label, similar=True) if label else None)
            or match_test(name, similar=True)
        )
        if match is None:
            tests[name] = None
            unrecognised.append(name)
            continue
        entry = {"test": match.code, "confidence": match.confidence, "how": match.how}
        unit = match.unit or unit_of(name)
        entry["unit"] = unit or catalogue.get(match.code).unit
        if match.unit is None and unit is None:
            entry["unit_note"] = "not given in the file: canonical unit proposed, please confirm"
        tests[name] = entry
    return tests, unrecognised


def suggest_redcap_mapping(path: Path, *, layout: str = "redcap") -> tuple[dict, list[str]]:
    """A proposal for a REDCap project from its data dictionary (see module doc)."""
    from celltrial.ingest import redcap

    if layout == "odm":
        from celltrial.ingest.odm import read_odm_project

        project = read_odm_project(path)
    else:
        project = redcap.read_redcap_project(path)
    dictionary, records = project.dictionary, project.records
    subject = dictionary["field"].iloc[0]
    roles = redcap.fact_fields(dictionary, records, Mapping())
    proposed, not_proposed, labels, units = [], [], {}, {}
    for _, field in dictionary.iterrows():
        name = field["field"]
        if name == subject or name in roles.values():
            continue
        numeric = field["type"] == "text" and redcap.is_number_field(field)
        if numeric and not redcap.is_identifying(field):
            proposed.append(name)
            labels[name] = str(field["label"])
            units[name] = str(field["units"]).strip() or None
        else:
            not_proposed.append(name)
    tests, unrecognised = _propose_tests(proposed, unit_of=units.get, labels=labels)
    columns = {"subject": subject}
    columns |= {role: name for role, name in roles.items() if role in ROLES}
    proposal = {"layout": "redcap", "columns": columns, "tests": tests, "labels": labels}
    if not_proposed:
        proposal["not_proposed"] = not_proposed
    return proposal, unrecognised


def _unit_from_values(table, name, roles, is_long) -> str | None:
    if not is_long or "unit" not in roles:
        return None
    units = table.loc[table[roles["test"]].astype(str).str.strip() == name, roles["unit"]]
    units = units.dropna().astype(str).str.strip()
    return units.mode().iloc[0] if len(units) else None


def write_mapping_proposal(proposal: dict, unrecognised: list[str], out: str | Path) -> Path:
    """Write the proposal as YAML: ``confidence``/``how``/``unit_note`` are comments for the
    reader (removed so that the file is a valid mapping); unrecognised names map to null;
    columns left out on purpose (``not_proposed``) are listed in a comment."""
    out = Path(out)
    lines = ["# Proposed by celltrial import --suggest-mapping: check every entry."]
    clean = {k: v for k, v in proposal.items() if k not in ("tests", "not_proposed", "labels")}
    labels = proposal.get("labels") or {}
    lines.append(yaml.safe_dump(clean, allow_unicode=True, sort_keys=False).rstrip())
    lines.append("tests:")
    for name, entry in proposal["tests"].items():
        key = yaml.safe_dump(name, allow_unicode=True).strip().removesuffix("...").strip()
        label = " ".join(str(labels[name]).split()) if name in labels else ""
        label = f" {label!r}" if label else ""
        if entry is None:
            lines.append(
                f"  {key}: null  # NOT RECOGNISED{label}: name a catalogue test or leave null"
            )
            continue
        note = f"  #{label} confidence {entry['confidence']:.2f} ({entry['how']})"
        if "unit_note" in entry:
            note += f"; unit {entry['unit_note']}"
        lines.append(f"  {key}: {{test: {entry['test']}, unit: {entry['unit']!r}}}{note}")
    if unrecognised:
        lines.append(f"# {len(unrecognised)} not recognised: " + ", ".join(unrecognised))
    left_out = proposal.get("not_proposed") or []
    if left_out:
        lines.append(
            f"# {len(left_out)} not proposed (identifying, or not a lab value): "
            + ", ".join(map(str, left_out)).replace("\n", " ")
        )
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out
