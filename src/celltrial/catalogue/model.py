"""Validated model of the shipped test catalogue (``tests.yaml``)."""

from __future__ import annotations

from functools import cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from celltrial.datafiles import read_shipped_yaml
from celltrial.errors import CelltrialError

Category = Literal["lab", "vital", "blood_gas", "immunophenotype"]


class TestDefinition(BaseModel):
    """One catalogued test: its code, canonical unit, LOINC code and ranges."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    __test__ = False  # not a pytest test class despite its name

    code: str = Field(pattern=r"^[A-Z][A-Z0-9]*$")
    name: str
    category: Category
    unit: str
    loinc: str | None = Field(default=None, pattern=r"^\d{1,7}-\d$")
    specimen: str
    reference: tuple[float, float]
    plausible: tuple[float, float]
    molar_mass: float | None = Field(default=None, gt=0)
    log_normal: bool = False
    aliases: tuple[str, ...] = ()
    units: tuple[str, ...] = ()
    analyte: str | None = None
    basis: Literal["FEU", "DDU"] | None = None

    @model_validator(mode="after")
    def _ranges_ordered(self) -> TestDefinition:
        for label, (low, high) in (("reference", self.reference), ("plausible", self.plausible)):
            if low > high:
                raise ValueError(f"{label} range low {low} is above high {high}")
        return self


class Catalogue(BaseModel):
    """All catalogued tests, looked up by code."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tests: tuple[TestDefinition, ...]

    @model_validator(mode="after")
    def _codes_unique(self) -> Catalogue:
        seen: set[str] = set()
        for test in self.tests:
            if test.code in seen:
                raise ValueError(f"test code {test.code} appears twice")
            seen.add(test.code)
        return self

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(t.code for t in self.tests)

    def __contains__(self, code: object) -> bool:
        return any(t.code == code for t in self.tests)

    def get(self, code: str) -> TestDefinition:
        """The definition of ``code``; a :class:`CelltrialError` naming known codes if absent."""
        for test in self.tests:
            if test.code == code:
                return test
        raise CelltrialError(
            f"unknown test code {code!r}; known codes: {', '.join(sorted(self.codes))}"
        )


@cache
def load_catalogue() -> Catalogue:
    """Load and validate the shipped test catalogue (cached: it never changes at run time)."""
    data = read_shipped_yaml("celltrial.catalogue", "tests.yaml")
    try:
        return Catalogue.model_validate(data)
    except ValidationError as exc:  # a packaging bug, but say exactly where
        raise CelltrialError(f"celltrial/catalogue/tests.yaml is invalid:\n{exc}") from exc
