"""The target-trial specification of an external control arm (YAML, validated at load).

The shipped default is ``target_trial.yaml`` in this package; a study may keep its own beside the
protocol (``DIR/target_trial.yaml``) or name one with ``--spec FILE``. Eligibility rules, time zero,
matching, outcomes and the test each arm uses for each marker are data, not code: a marker measured
by different tests in the two arms (CRP vs hs-CRP) must be declared, with its reason, and is then
named in every result's caveats.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from celltrial.errors import CelltrialError

SPEC_FILE = "target_trial.yaml"

#: Comparison operators of eligibility rules (the edge itself: "<" excludes it, "<=" keeps it).
OPERATORS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
#: Subject-level fields a rule may use.
FIELDS = ("age",)


class SpecError(CelltrialError):
    """A target-trial specification file is missing, unreadable or invalid."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MarkerSpec(_Model):
    treated: str
    external: str
    unit: str
    label: str
    substitution: str | None = None

    @model_validator(mode="after")
    def _declared(self) -> MarkerSpec:
        if self.treated != self.external and not self.substitution:
            raise ValueError(
                f"tests differ between arms ({self.treated} vs {self.external}): declare the "
                "substitution and its reason in 'substitution'"
            )
        return self


class TimeZeroSpec(_Model):
    treated: Literal["first infusion"] = "first infusion"
    landmark_step_hours: float = Field(24.0, gt=0)
    max_landmarks: int = Field(14, ge=0)
    baseline_window_hours: float = Field(48.0, gt=0)


class RuleSpec(_Model):
    marker: str | None = None
    field: str | None = None
    op: Literal["<", "<=", ">", ">="]
    value: float

    @model_validator(mode="after")
    def _one_target(self) -> RuleSpec:
        if (self.marker is None) == (self.field is None):
            raise ValueError("a rule names exactly one of 'marker' or 'field'")
        if self.field is not None and self.field not in FIELDS:
            raise ValueError(f"unknown field {self.field!r}; rules may use {', '.join(FIELDS)}")
        return self

    @property
    def name(self) -> str:
        return f"{self.marker or self.field} {self.op} {self.value:g}"


class SensitivitySpec(_Model):
    caliper: float | None = Field(None, gt=0)
    ratio: int = Field(1, ge=1)
    #: Variables added to the matching in a sensitivity analysis reported with the main result
    #: (default: days since admission, which aligns the arms' landmarks).
    add_variables: tuple[str, ...] = ("days_since_admission",)


class MatchingSpec(_Model):
    exact: tuple[Literal["sex", "age_band"], ...] = ("sex", "age_band")
    age_bands: tuple[float, ...] = (18, 50, 65, 86)
    method: Literal["mahalanobis", "propensity"] = "mahalanobis"
    variables: tuple[str, ...] = ("age", "log_LYM", "log_CRP")
    ratio: int = Field(3, ge=1)
    replace: bool = False
    caliper: float | None = Field(None, gt=0)
    sensitivity: SensitivitySpec = SensitivitySpec()

    @model_validator(mode="after")
    def _bands(self) -> MatchingSpec:
        if len(self.age_bands) < 2 or list(self.age_bands) != sorted(set(self.age_bands)):
            raise ValueError("age_bands must be at least two increasing edges")
        if not self.variables:
            raise ValueError("matching needs at least one variable")
        return self


class BalanceSpec(_Model):
    """Variables whose balance is shown, and the target each must meet after matching:
    |SMD| < ``smd_below`` and variance ratio within ``variance_ratio`` (Austin 2009)."""

    variables: tuple[str, ...] = ("age", "male", "log_LYM", "log_CRP")
    smd_below: float = Field(0.1, gt=0)
    variance_ratio: tuple[float, float] = (0.5, 2.0)

    @model_validator(mode="after")
    def _range(self) -> BalanceSpec:
        low, high = self.variance_ratio
        if not 0 < low < 1 < high:
            raise ValueError("variance_ratio must be [low, high] with 0 < low < 1 < high")
        return self


class BootstrapSpec(_Model):
    """Accepted for specification files written for earlier versions; no interval is
    bootstrapped any more (percentile bootstrap intervals are far too narrow with 2–5 subjects
    per arm)."""

    resamples: int = Field(2000, ge=100)
    seed: int = 20200210


class NormalisationSpec(_Model):
    """Time to normalisation: the first value of ``marker`` at or above ``at_least``."""

    marker: str = "LYM"
    at_least: float = Field(1.1, gt=0)


class OutcomeSpec(_Model):
    mortality_days: float = Field(28.0, gt=0)
    normalisation: NormalisationSpec = NormalisationSpec()
    discharge: Literal["censor", "alive"] = "censor"
    trajectory_markers: tuple[str, ...] = ("LYM", "CRP")
    trajectory_days: tuple[int, int] = (0, 14)
    change_days: dict[int, int] = {3: 1, 7: 1, 14: 2}
    bootstrap: BootstrapSpec = BootstrapSpec()


class TargetTrialSpec(_Model):
    """A validated target-trial specification (see ``target_trial.yaml``)."""

    name: str
    cohort: str | None = None
    markers: dict[str, MarkerSpec]
    time_zero: TimeZeroSpec = TimeZeroSpec()
    eligibility: tuple[RuleSpec, ...]
    treated_not_eligible: Literal["exclude", "keep"] = "exclude"
    matching: MatchingSpec = MatchingSpec()
    balance: BalanceSpec = BalanceSpec()
    outcomes: OutcomeSpec = OutcomeSpec()
    #: What the external data cannot tell, in plain words (stated with every result).
    data_limits: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _known_markers(self) -> TargetTrialSpec:
        known = set(self.markers)
        used = {r.marker for r in self.eligibility if r.marker}
        used |= set(self.outcomes.trajectory_markers)
        used.add(self.outcomes.normalisation.marker)
        for name in (
            *self.matching.variables,
            *self.matching.sensitivity.add_variables,
            *self.balance.variables,
        ):
            if name.startswith("log_"):
                used.add(name[4:])
            elif name not in ("age", "male", "days_since_admission"):
                raise ValueError(
                    f"unknown variable {name!r}: use age, male, days_since_admission or "
                    "log_<MARKER>"
                )
        missing = sorted(used - known)
        if missing:
            raise ValueError(f"marker(s) {', '.join(missing)} used but not declared in 'markers'")
        return self

    def test_of(self, marker: str, arm: str) -> str:
        """The test code ``arm`` ("treated" or "external") uses for ``marker``."""
        spec = self.markers[marker]
        return spec.treated if arm == "treated" else spec.external

    @property
    def rule_markers(self) -> list[str]:
        return list(dict.fromkeys(r.marker for r in self.eligibility if r.marker))

    @property
    def baseline_markers(self) -> list[str]:
        """Markers whose baseline value is needed (rules, matching, balance, trajectories)."""
        names = [*self.rule_markers]
        for name in (
            *self.matching.variables,
            *self.matching.sensitivity.add_variables,
            *self.balance.variables,
        ):
            if name.startswith("log_"):
                names.append(name[4:])
        names += list(self.outcomes.trajectory_markers)
        return list(dict.fromkeys(names))

    def substitution_caveats(self, markers: list[str] | None = None) -> list[str]:
        """Plain-words statements of every declared test substitution among ``markers``."""
        out = []
        for name, spec in self.markers.items():
            if (markers is None or name in markers) and spec.treated != spec.external:
                out.append(f"{name}: {spec.substitution}")
        return out

    def rule_text(self) -> list[str]:
        """Each eligibility rule in words, naming the test each arm uses."""
        out = []
        for rule in self.eligibility:
            if rule.field:
                out.append(f"{rule.field} {rule.op} {rule.value:g}")
                continue
            spec = self.markers[rule.marker]
            tests = (
                spec.treated
                if spec.treated == spec.external
                else f"{spec.treated} in treated, {spec.external} in controls"
            )
            out.append(
                f"{spec.label} {rule.op} {rule.value:g} {spec.unit} ({tests}; last value in the "
                f"{self.time_zero.baseline_window_hours:g} h before time zero)"
            )
        return out


def parse_target_trial(text: str, *, source: str = "target-trial specification") -> TargetTrialSpec:
    """Validate YAML text as a :class:`TargetTrialSpec`; errors name the source and field."""
    from celltrial.protocol.loader import MAX_DEPTH, MAX_VALUES, expanded_size, flow_depth

    if flow_depth(text) > MAX_DEPTH:
        raise SpecError(f"{source}: lists or sections nested more than {MAX_DEPTH} levels deep")
    try:
        if expanded_size(yaml.compose(text, Loader=yaml.SafeLoader)) > MAX_VALUES:
            raise SpecError(
                f"{source}: the specification expands to more than {MAX_VALUES:,} values through "
                "YAML aliases (*name); expected its sections written out"
            )
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{source}: expected a mapping of sections, got {type(data).__name__}")
    try:
        return TargetTrialSpec.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'top level'}: {e['msg']}" for e in exc.errors()
        )
        raise SpecError(f"{source}: {problems}") from None


@cache
def load_target_trial() -> TargetTrialSpec:
    """The shipped default specification."""
    text = files("celltrial.external").joinpath(SPEC_FILE).read_text(encoding="utf-8")
    return parse_target_trial(text, source=f"built-in {SPEC_FILE}")


def read_target_trial(path: str | Path) -> TargetTrialSpec:
    """Read and validate a specification file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read target-trial specification {path}: {exc}") from None
    return parse_target_trial(text, source=str(path))


def resolve_target_trial(
    directory: str | Path | None = None, spec: str | Path | None = None
) -> TargetTrialSpec:
    """``spec`` if given, else ``DIR/target_trial.yaml`` if present, else the shipped default."""
    if spec is not None:
        return read_target_trial(spec)
    if directory is not None and (Path(directory) / SPEC_FILE).exists():
        return read_target_trial(Path(directory) / SPEC_FILE)
    return load_target_trial()
