"""CTCAE lab criteria as data: load the shipped table, validate it, compile it per unit.

The criteria live in ``criteria/ctcae_v<major>.csv`` (one row per term and grade, the CTCAE text
beside the machine-readable thresholds); :func:`load_ctcae_criteria` validates the file once and
returns an immutable :class:`CriteriaTable`. A CTCAE v6 file can be added beside v5 without code.

Columns of the CSV (empty cell = not used by that grade):

``absolute``    thresholds as ``op number unit``; equivalent spellings in other units separated by
                ``;`` (``<100 g/L; <10.0 g/dL``): a value reported in one of those units is compared
                with that unit's number as printed in CTCAE, otherwise the first is converted.
``x_uln``/``x_lln``  ``op multiple`` of the upper/lower limit of normal (``>3.0``).
``plus_uln``    ``op offset unit`` above the ULN (hemoglobin increased).
``x_baseline``  ``op multiple`` of the baseline value.
``pct_change``  ``op percent`` change from baseline (``<=-25`` is a decrease of 25 % or more).
``baseline_rule``  how baseline criteria combine with the others: ``if_abnormal`` (baseline
                criteria when the baseline was abnormal on the side of the term, ULN/LLN criteria
                when it was normal), ``if_value_abnormal`` (baseline criteria too, where the value
                itself is beyond LLN/ULN), ``either`` (any criterion; creatinine),
                ``if_anticoagulated`` (baseline criteria on anticoagulation, absolute ones
                otherwise; INR). ``conventions.yaml`` may set the rule of a term it reads one of
                several ways (``readings``), and says how values at or before the first infusion
                and values without a baseline are graded.
``range_missing`` / ``baseline_missing``  ``not_gradable`` (a missing LLN/ULN/baseline makes this
                grade undecidable) or ``ignore`` (the criterion is skipped).
``valence``     charge of the ion, for mEq/L values.
``clinical_part``  non-empty when the grade also has clinical parts (symptoms, transfusion,
                hospitalisation…) that a lab value cannot show: the lab part only is graded.
                Rows without any numeric criterion are clinical-only grades, never assigned.
``ctcae_text``  the CTCAE wording of the grade; ``note``: how celltrial reads it, caveats.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from types import MappingProxyType
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from celltrial.catalogue import load_catalogue
from celltrial.errors import CelltrialError, UnitError
from celltrial.safety.conventions import GradingConventions, load_grading_conventions
from celltrial.units import convert, normalize_unit

Op = Literal["<", "<=", ">", ">="]
Kind = Literal["absolute", "x_uln", "x_lln", "plus_uln", "x_baseline", "pct_change"]
Applies = Literal[
    "always",
    "baseline_normal",
    "baseline_abnormal",
    "value_abnormal",
    "anticoagulated",
    "not_anticoagulated",
]

_NUMERIC_COLUMNS: tuple[Kind, ...] = (
    "absolute",
    "x_uln",
    "x_lln",
    "plus_uln",
    "x_baseline",
    "pct_change",
)
_WITH_UNIT = frozenset({"absolute", "plus_uln"})
_RANGE_KINDS = frozenset({"x_uln", "x_lln", "plus_uln"})
_BASELINE_KINDS = frozenset({"x_baseline", "pct_change"})
_SPEC = re.compile(r"^\s*(<=|>=|<|>)\s*([-+]?\d+(?:\.\d+)?)\s*(.*?)\s*$")


class CriteriaRow(BaseModel):
    """One row of a criteria file: the rule for one grade of one term."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str
    term: str
    ctcae_term: str
    test: str
    direction: Literal["low", "high"]
    grade: int
    absolute: str = ""
    x_uln: str = ""
    x_lln: str = ""
    plus_uln: str = ""
    x_baseline: str = ""
    pct_change: str = ""
    baseline_rule: Literal[
        "", "if_abnormal", "if_value_abnormal", "either", "if_anticoagulated"
    ] = ""
    range_missing: Literal["", "not_gradable", "ignore"] = ""
    baseline_missing: Literal["", "not_gradable", "ignore"] = ""
    valence: int | None = None
    clinical_part: str = ""
    ctcae_text: str
    note: str = ""

    @field_validator("grade")
    @classmethod
    def _grade_range(cls, grade: int) -> int:
        if not 1 <= grade <= 4:
            raise ValueError(
                f"grade must be 1-4 (grade 5 is death, never a lab grade), got {grade}"
            )
        return grade

    @model_validator(mode="after")
    def _consistent(self) -> CriteriaRow:
        used = {k for k in _NUMERIC_COLUMNS if getattr(self, k)}
        if not used and not self.clinical_part:
            raise ValueError("a grade without numeric criteria must say its clinical_part")
        if used & _RANGE_KINDS and not self.range_missing:
            raise ValueError("ULN/LLN criteria need range_missing (not_gradable or ignore)")
        if used & _BASELINE_KINDS and not (self.baseline_missing and self.baseline_rule):
            raise ValueError("baseline criteria need baseline_rule and baseline_missing")
        for kind in used:
            for op, _, unit in _parse_spec(getattr(self, kind)):
                want = ("<", "<=") if self.direction == "low" else (">", ">=")
                if kind != "pct_change" and op not in want:
                    raise ValueError(f"{kind} {op!r} does not fit a {self.direction} term")
                if unit and kind not in _WITH_UNIT:
                    raise ValueError(f"{kind} takes no unit, got {unit!r}")
        return self


def _parse_spec(cell: str) -> list[tuple[Op, float, str]]:
    """``"<100 g/L; <10.0 g/dL"`` → ``[("<", 100.0, "g/L"), ("<", 10.0, "g/dL")]``."""
    out: list[tuple[Op, float, str]] = []
    for part in cell.split(";"):
        match = _SPEC.match(part)
        if not match:
            raise ValueError(f"cannot read threshold {part.strip()!r} (expected e.g. '>3.0')")
        op, number, unit = match.groups()
        out.append((op, float(number), unit))  # type: ignore[arg-type]
    return out


@dataclass(frozen=True)
class Criterion:
    """One numeric criterion of a grade, as written in the file."""

    grade: int
    kind: Kind
    op: Op
    alternatives: tuple[tuple[float, str], ...]  # (number, unit): several for absolute/plus_uln
    applies: Applies
    if_missing: Literal["not_gradable", "ignore"]

    def describe(self, number: float | None = None, unit: str = "") -> str:
        """Readable form, e.g. ``value > 3.0 × ULN (baseline normal)``."""
        n = self.alternatives[0][0] if number is None else number
        shown = f"{n:g}"
        unit = "" if unit in ("1", "") else unit
        body = {
            "absolute": f"value {self.op} {shown} {unit}".rstrip(),
            "x_uln": f"value {self.op} {shown} × ULN",
            "x_lln": f"value {self.op} {shown} × LLN",
            "plus_uln": f"value {self.op} ULN + {shown} {unit}".rstrip(),
            "x_baseline": f"value {self.op} {shown} × baseline",
            "pct_change": f"change from baseline {self.op} {shown} %",
        }[self.kind]
        when = {
            "always": "",
            "baseline_normal": " (baseline normal)",
            "baseline_abnormal": " (baseline abnormal)",
            "value_abnormal": " (value beyond LLN/ULN)",
            "anticoagulated": " (on anticoagulation)",
            "not_anticoagulated": " (not on anticoagulation)",
        }[self.applies]
        return body + when


@dataclass(frozen=True)
class GradeRule:
    """Everything one grade of one term says."""

    grade: int
    criteria: tuple[Criterion, ...]
    clinical_part: str
    ctcae_text: str
    note: str = ""


@dataclass(frozen=True)
class TermCriteria:
    """All grades of one term (one test, one direction), with the conventions that apply to it.

    ``baseline_rule``: the rule of its baseline clauses ("" when it has none), after the readings
    of ``conventions.yaml``; ``assume_normal_baseline``: values without a baseline are graded as
    if it had been normal (rules ``if_abnormal``/``if_value_abnormal``); ``before_first_infusion``:
    ``limits`` when values at or before the first infusion are graded without baseline clauses.
    """

    version: str
    term: str
    ctcae_term: str
    test: str
    direction: Literal["low", "high"]
    valence: int | None
    grades: tuple[GradeRule, ...]  # ascending grade
    baseline_rule: str = ""
    assume_normal_baseline: bool = False
    before_first_infusion: Literal["limits", "baseline"] = "baseline"

    @property
    def numeric(self) -> bool:
        """Whether any grade can be assigned from a lab value at all."""
        return any(rule.criteria for rule in self.grades)

    @property
    def uses_baseline_status(self) -> bool:
        return any(
            c.applies in ("baseline_normal", "baseline_abnormal")
            for r in self.grades
            for c in r.criteria
        )

    @property
    def has_baseline_clauses(self) -> bool:
        """Whether some criterion compares the value with the baseline."""
        return any(c.kind in _BASELINE_KINDS for r in self.grades for c in r.criteria)


@dataclass(frozen=True)
class ResolvedCriterion:
    """A criterion with its number expressed in the unit of the values being graded."""

    index: int  # position in CompiledTerm.criteria, highest grade first
    criterion: Criterion
    number: float  # threshold/offset in the value unit, or multiple, or percent

    @property
    def grade(self) -> int:
        return self.criterion.grade


@dataclass(frozen=True)
class CompiledTerm:
    """A term ready to grade values given in one unit."""

    term: TermCriteria
    unit: str
    criteria: tuple[ResolvedCriterion, ...]  # highest grade first

    def describe(self, resolved: ResolvedCriterion) -> str:
        unit = self.unit if resolved.criterion.kind in _WITH_UNIT else ""
        return resolved.criterion.describe(resolved.number, unit)


def _applies(kind: Kind, rule: str) -> Applies:
    if rule == "if_abnormal" and kind != "absolute":
        return "baseline_abnormal" if kind in _BASELINE_KINDS else "baseline_normal"
    if rule == "if_value_abnormal" and kind in _BASELINE_KINDS:
        return "value_abnormal"
    if rule == "if_anticoagulated":
        return "anticoagulated" if kind in _BASELINE_KINDS else "not_anticoagulated"
    return "always"


_READABLE = ("if_abnormal", "if_value_abnormal")  # rules a reading may swap for each other


def _term_from_rows(rows: list[CriteriaRow], conventions: GradingConventions) -> TermCriteria:
    first = rows[0]
    for row in rows:
        for name in ("ctcae_term", "test", "direction", "version"):
            if getattr(row, name) != getattr(first, name):
                raise ValueError(f"term {first.term!r}: {name} differs between its rows")
    rules = {r.baseline_rule for r in rows} - {""}
    if len(rules) > 1:
        raise ValueError(f"term {first.term!r}: several baseline rules {sorted(rules)}")
    rule = next(iter(rules), "")
    reading = conventions.readings.get(first.term)
    if reading is not None:
        if rule not in _READABLE:
            raise ValueError(
                f"conventions.yaml reads {first.term!r} as {reading!r}, but its rows have no "
                f"baseline rule to read (found {rule or 'none'!r})"
            )
        rule = reading
    grades = sorted(r.grade for r in rows)
    if len(set(grades)) != len(grades):
        raise ValueError(f"term {first.term!r}: a grade appears twice")
    valences = {r.valence for r in rows} - {None}
    if len(valences) > 1:
        raise ValueError(f"term {first.term!r}: several valences {sorted(valences)}")
    grade_rules = []
    for row in sorted(rows, key=lambda r: r.grade):
        criteria = []
        for kind in _NUMERIC_COLUMNS:
            cell = getattr(row, kind)
            if not cell:
                continue
            specs = _parse_spec(cell)
            ops = {op for op, _, _ in specs}
            if len(ops) != 1:
                raise ValueError(f"term {row.term!r} grade {row.grade}: mixed operators in {kind}")
            missing = row.baseline_missing if kind in _BASELINE_KINDS else row.range_missing
            criteria.append(
                Criterion(
                    grade=row.grade,
                    kind=kind,
                    op=specs[0][0],
                    alternatives=tuple((n, u) for _, n, u in specs),
                    applies=_applies(kind, rule if row.baseline_rule else ""),
                    if_missing=missing or "not_gradable",  # type: ignore[arg-type]
                )
            )
        grade_rules.append(
            GradeRule(row.grade, tuple(criteria), row.clinical_part, row.ctcae_text, row.note)
        )
    return TermCriteria(
        version=first.version,
        term=first.term,
        ctcae_term=first.ctcae_term,
        test=first.test,
        direction=first.direction,
        valence=next(iter(valences), None),
        grades=tuple(grade_rules),
        baseline_rule=rule,
        assume_normal_baseline=conventions.assume_normal_baseline and rule in _READABLE,
        before_first_infusion=conventions.before_first_infusion(rule) if rule else "baseline",
    )


@dataclass(frozen=True)
class CriteriaTable:
    """The validated criteria of one CTCAE version, looked up by term or by (test, direction)."""

    version: str
    source: str
    terms: Mapping[str, TermCriteria]
    _by_test: Mapping[tuple[str, str], str] = field(repr=False)
    conventions: GradingConventions = field(default_factory=load_grading_conventions, repr=False)
    _compiled: dict[tuple[str, str], CompiledTerm | UnitError] = field(
        default_factory=dict, repr=False, compare=False
    )

    def term(self, name: str) -> TermCriteria:
        """The criteria of ``name`` (case-insensitive); a :class:`CelltrialError` if unknown."""
        found = self.terms.get(name) or next(
            (t for key, t in self.terms.items() if key.casefold() == name.casefold()), None
        )
        if found is None:
            reason = next(
                (
                    why
                    for key, why in self.conventions.not_graded.items()
                    if key.casefold() == name.casefold()
                ),
                None,
            )
            if reason is not None:
                raise CelltrialError(
                    f"CTCAE v{self.version} term {name!r} is not graded from lab values by "
                    f"celltrial: {reason} (conventions.yaml, not_graded)"
                )
            raise CelltrialError(
                f"no CTCAE v{self.version} lab term {name!r} in {self.source}; known terms: "
                f"{', '.join(sorted(self.terms))} (D-dimer, CRP, IL-6, CD19 and CD16+56 have no "
                "CTCAE term and are not graded)"
            )
        return found

    def for_test(self, test: str, direction: str) -> TermCriteria | None:
        """The term grading ``test`` in ``direction`` ("low"/"high"), or None."""
        name = self._by_test.get((test, direction))
        return None if name is None else self.terms[name]

    @property
    def tests(self) -> frozenset[str]:
        return frozenset(test for test, _ in self._by_test)

    def compile(self, term: TermCriteria, unit: str) -> CompiledTerm:
        """``term`` with every threshold expressed in ``unit``; :class:`UnitError` if impossible.

        A threshold printed in CTCAE in the same unit is used as printed; otherwise the first
        spelling is converted with the test's molar mass and the term's valence (never guessed).
        """
        key = (term.term, unit)
        cached = self._compiled.get(key)
        if cached is None:
            try:
                cached = _compile(term, unit)
            except UnitError as exc:
                cached = exc
            self._compiled[key] = cached
        if isinstance(cached, UnitError):
            raise cached
        return cached


def _compile(term: TermCriteria, unit: str) -> CompiledTerm:
    catalogue = load_catalogue()
    test = catalogue.get(term.test)
    molar_mass = test.molar_mass
    target = normalize_unit(unit)
    try:
        convert(1.0, unit, test.unit, molar_mass=molar_mass, valence=term.valence)
    except UnitError as exc:
        raise UnitError(
            f"{term.term}: values in {unit!r} cannot be graded: not convertible to the "
            f"{test.code} unit {test.unit!r} ({exc})"
        ) from exc
    resolved: list[ResolvedCriterion] = []
    ordered = [c for rule in reversed(term.grades) for c in rule.criteria]
    for index, criterion in enumerate(ordered):
        if criterion.kind in _WITH_UNIT:
            number = _in_unit(criterion, target, unit, molar_mass, term.valence)
        else:
            number = criterion.alternatives[0][0]
        resolved.append(ResolvedCriterion(index, criterion, number))
    return CompiledTerm(term=term, unit=unit, criteria=tuple(resolved))


def _in_unit(
    criterion: Criterion, target: str, unit: str, molar_mass: float | None, valence: int | None
) -> float:
    for number, spelled in criterion.alternatives:
        if spelled and normalize_unit(spelled) == target:
            return number
    number, spelled = criterion.alternatives[0]
    spelled = spelled or "1"
    if criterion.kind == "plus_uln":  # an offset converts without the temperature zero shift
        zero = convert(0.0, spelled, unit, molar_mass=molar_mass, valence=valence)
        return convert(number, spelled, unit, molar_mass=molar_mass, valence=valence) - zero
    return convert(number, spelled, unit, molar_mass=molar_mass, valence=valence)


def load_ctcae_criteria(version: str | None = None) -> CriteriaTable:
    """Load and validate the shipped CTCAE criteria of ``version`` (cached), by default the
    version ``conventions.yaml`` names, with the shipped conventions applied."""
    return _load_ctcae_criteria(version or load_grading_conventions().ctcae_version)


@cache
def _load_ctcae_criteria(version: str) -> CriteriaTable:
    name = f"ctcae_v{version.split('.')[0]}.csv"
    resource = files("celltrial.safety").joinpath("criteria", name)
    if not resource.is_file():
        raise CelltrialError(f"no CTCAE criteria file for version {version!r} ({name})")
    source = f"celltrial/safety/criteria/{name}"
    table = read_criteria(resource.read_text(encoding="utf-8"), source=source)
    unknown = sorted(set(table.conventions.readings) - set(table.terms))
    if unknown:
        raise CelltrialError(f"conventions.yaml reads terms {unknown} that {source} does not have")
    if table.version != version:
        raise CelltrialError(f"{source} holds CTCAE v{table.version}, not v{version}")
    return table


def read_criteria(
    text: str, *, source: str, conventions: GradingConventions | None = None
) -> CriteriaTable:
    """Validate criteria CSV ``text`` into a :class:`CriteriaTable`; errors name the row.

    ``conventions``: those to apply (default: the shipped ``conventions.yaml``)."""
    conventions = conventions or load_grading_conventions()
    reader = csv.DictReader(io.StringIO(text))
    rows: list[CriteriaRow] = []
    for line, raw in enumerate(reader, start=2):
        cells = {k: (v or "").strip() for k, v in raw.items() if k is not None}
        if cells.get("valence") == "":
            cells.pop("valence")
        try:
            rows.append(CriteriaRow.model_validate(cells))
        except ValidationError as exc:
            raise CelltrialError(f"{source} line {line} ({cells.get('term')!r}):\n{exc}") from exc
    versions = {r.version for r in rows}
    if len(versions) != 1:
        raise CelltrialError(f"{source}: expected one version, found {sorted(versions)}")
    catalogue = load_catalogue()
    by_term: dict[str, list[CriteriaRow]] = {}
    for row in rows:
        if row.test not in catalogue:
            raise CelltrialError(f"{source}: term {row.term!r} names unknown test {row.test!r}")
        by_term.setdefault(row.term, []).append(row)
    terms: dict[str, TermCriteria] = {}
    by_test: dict[tuple[str, str], str] = {}
    for name, term_rows in by_term.items():
        try:
            term = _term_from_rows(term_rows, conventions)
        except ValueError as exc:
            raise CelltrialError(f"{source}: {exc}") from exc
        key = (term.test, term.direction)
        if key in by_test:
            raise CelltrialError(f"{source}: {key} is graded by {by_test[key]!r} and {name!r}")
        by_test[key] = name
        terms[name] = term
    return CriteriaTable(
        version=versions.pop(),
        source=source,
        terms=MappingProxyType(terms),
        _by_test=MappingProxyType(by_test),
        conventions=conventions,
    )
