"""Column-mapping files (YAML) for layouts celltrial cannot recognise on its own.

Example (wide LIS export)::

    layout: wide
    timezone: Asia/Shanghai
    columns: {subject: PATIENT_ID, time: RE_DATE, sex: gender, admitted: Admission time}
    sex_codes: {"1": M, "2": F}
    tests:
      D-D dimer: {test: DDIMER, unit: mg/L FEU}
      HBsAg: null            # ignore this column (its results are reported, not stored)
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from celltrial.errors import DataError

ROLES = (
    "subject",
    "time",
    "test",
    "value",
    "unit",
    "ref_low",
    "ref_high",
    "reference",
    "specimen",
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


class TestColumn(BaseModel):
    """How one source test name or column is read."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    __test__ = False

    test: str | None = None
    unit: str | None = None
    specimen: str | None = None


class Mapping(BaseModel):
    """A mapping file: layout, roles of columns, and the test of each source name."""

    model_config = ConfigDict(extra="forbid")

    layout: Literal["long", "wide", "redcap", "fhir"] | None = None
    sheet: str | int | None = None
    timezone: str | None = None
    columns: dict[str, str] = Field(default_factory=dict)
    tests: dict[str, TestColumn | str | None] = Field(default_factory=dict)
    sex_codes: dict[str, Literal["M", "F"]] = Field(default_factory=dict)
    died_codes: list[str] = Field(default_factory=list)
    dictionary: str | None = None  # REDCap data dictionary (relative to the mapping file)

    def test_for(self, name: str) -> TestColumn | Literal[False] | None:
        """The mapping's entry for ``name``: a TestColumn, ``None`` (ignore) or False (absent)."""
        if name not in self.tests:
            stripped = {k.strip(): v for k, v in self.tests.items()}
            if name.strip() not in stripped:
                return False
            entry = stripped[name.strip()]
        else:
            entry = self.tests[name]
        if entry is None or entry == "ignore":
            return None
        if isinstance(entry, str):
            return TestColumn(test=entry)
        return entry


def read_mapping(path: str | Path | None) -> Mapping:
    """Read and validate a mapping file; an empty mapping when ``path`` is ``None``."""
    if path is None:
        return Mapping()
    from celltrial.protocol.loader import MAX_DEPTH, flow_depth

    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
        if flow_depth(text) > MAX_DEPTH:
            raise RecursionError
        data = yaml.safe_load(text) or {}
    except UnicodeDecodeError as exc:
        raise DataError(
            f"cannot read mapping file {path}: not UTF-8 text (byte {exc.start + 1} cannot be "
            "read); save it as UTF-8"
        ) from None
    except (OSError, yaml.YAMLError) as exc:
        raise DataError(f"cannot read mapping file {path}: {exc}") from None
    except (RecursionError, ValueError) as exc:  # nested too deeply; 2020-02-31; 10**5000
        why = (
            "nested too deeply"
            if isinstance(exc, RecursionError)
            else "a number with thousands of digits"
            if "digits" in str(exc)
            else str(exc)[:80]
        )
        raise DataError(
            f"cannot read mapping file {path}: a value cannot be read ({why})"
        ) from None
    if not isinstance(data, dict):
        raise DataError(
            f"mapping file {path}: expected sections such as layout:, columns:, tests: (a "
            f"mapping), got {type(data).__name__}"
        )
    columns = data.get("columns", {}) or {}
    if not isinstance(columns, dict):
        raise DataError(f"mapping file {path}: columns: expected role: column name pairs")
    unknown = {str(role) for role in columns} - set(ROLES)
    if unknown:
        raise DataError(
            f"mapping file {path}: unknown column role(s) {', '.join(sorted(unknown))}; "
            f"expected some of {', '.join(ROLES)}"
        )
    try:
        mapping = Mapping.model_validate(data)
    except ValidationError as exc:
        raise DataError(f"mapping file {path} is invalid:\n{exc}") from None
    if mapping.dictionary is not None and not Path(mapping.dictionary).is_absolute():
        mapping.dictionary = str(path.parent / mapping.dictionary)
    return mapping
