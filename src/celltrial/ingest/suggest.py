"""Propose a column-mapping file for a table: each column's role or recognised test, its unit
and how sure the match is; what could not be recognised is listed for a person to decide."""

from __future__ import annotations

from pathlib import Path

import yaml

from celltrial.catalogue import load_catalogue
from celltrial.ingest.columns import find_roles
from celltrial.ingest.long import LONG_ROLES, REQUIRED, read_sheet
from celltrial.ingest.mapping import ROLES, Mapping
from celltrial.ingest.names import match_test
from celltrial.ingest.tables import is_workbook, read_csv_table
from celltrial.ingest.wide import SUBJECT_ROLES


def suggest_mapping(path: str | Path, *, sample_rows: int = 5000) -> tuple[dict, list[str]]:
    """(proposed mapping as a dict, columns or test names not recognised) for ``path``."""
    path = Path(path)
    if is_workbook(path):
        table = read_sheet(path, Mapping())
    else:
        table = read_csv_table(path, what="lab file", dtype=str, nrows=sample_rows)
    table.columns = [str(c) for c in table.columns]
    long_roles = find_roles(table.columns, Mapping(), LONG_ROLES)
    is_long = all(r in long_roles for r in REQUIRED)
    roles = long_roles if is_long else find_roles(table.columns, Mapping(), SUBJECT_ROLES)
    names = (
        table[roles["test"]].dropna().astype(str).str.strip().unique().tolist()
        if is_long
        else [c for c in table.columns if c not in roles.values()]
    )
    catalogue = load_catalogue()
    tests: dict[str, dict | None] = {}
    unrecognised: list[str] = []
    for name in names:
        match = match_test(name, similar=True)
        if match is None:
            tests[name] = None
            unrecognised.append(name)
            continue
        entry = {"test": match.code, "confidence": match.confidence, "how": match.how}
        unit = match.unit or _unit_from_values(table, name, roles, is_long)
        entry["unit"] = unit or catalogue.get(match.code).unit
        if match.unit is None and unit is None:
            entry["unit_note"] = "not given in the file: canonical unit proposed, please confirm"
        tests[name] = entry
    proposal = {
        "layout": "long" if is_long else "wide",
        "columns": {r: c for r, c in roles.items() if r in ROLES},
        "tests": tests,
    }
    return proposal, unrecognised


def _unit_from_values(table, name, roles, is_long) -> str | None:
    if not is_long or "unit" not in roles:
        return None
    units = table.loc[table[roles["test"]].astype(str).str.strip() == name, roles["unit"]]
    units = units.dropna().astype(str).str.strip()
    return units.mode().iloc[0] if len(units) else None


def write_mapping_proposal(proposal: dict, unrecognised: list[str], out: str | Path) -> Path:
    """Write the proposal as YAML: ``confidence``/``how``/``unit_note`` are comments for the
    reader (removed so that the file is a valid mapping); unrecognised names map to null."""
    out = Path(out)
    lines = ["# Proposed by celltrial import --suggest-mapping: check every entry."]
    clean = {k: v for k, v in proposal.items() if k != "tests"}
    lines.append(yaml.safe_dump(clean, allow_unicode=True, sort_keys=False).rstrip())
    lines.append("tests:")
    for name, entry in proposal["tests"].items():
        key = yaml.safe_dump(name, allow_unicode=True).strip().removesuffix("...").strip()
        if entry is None:
            lines.append(f"  {key}: null  # NOT RECOGNISED: name a catalogue test or leave null")
            continue
        note = f"  # confidence {entry['confidence']:.2f} ({entry['how']})"
        if "unit_note" in entry:
            note += f"; unit {entry['unit_note']}"
        lines.append(f"  {key}: {{test: {entry['test']}, unit: {entry['unit']!r}}}{note}")
    if unrecognised:
        lines.append(f"# {len(unrecognised)} not recognised: " + ", ".join(unrecognised))
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out
