"""The grading conventions: the choices CTCAE leaves open, as shipped data.

``criteria/conventions.yaml`` says which CTCAE version is graded, how a missing baseline and the
values taken before the first infusion are graded, how celltrial reads ambiguous terms (fibrinogen
"if abnormal"), what counts as a treatment-emergent lab toxicity, and which lab-based CTCAE terms
are not graded and why. :func:`load_grading_conventions` validates it once; the criteria table
(:func:`celltrial.safety.criteria.load_ctcae_criteria`) and the safety tables apply it.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from celltrial.errors import CelltrialError

#: Baseline rules of the criteria file that have baseline clauses (``baseline_rule`` column).
BASELINE_RULES = ("if_abnormal", "if_value_abnormal", "either", "if_anticoagulated")
BaselineRule = Literal["if_abnormal", "if_value_abnormal", "either", "if_anticoagulated"]


class BaselineConventions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    missing: Literal["assume_normal", "not_gradable"]
    before_first_infusion: dict[BaselineRule, Literal["limits", "baseline"]]

    @model_validator(mode="after")
    def _every_rule(self) -> BaselineConventions:
        absent = set(BASELINE_RULES) - set(self.before_first_infusion)
        if absent:
            raise ValueError(
                f"before_first_infusion must name every rule; missing {sorted(absent)}"
            )
        return self


class TreatmentEmergentConventions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    rule: Literal["worse_than_baseline", "any_after_first_infusion"]
    missing_baseline_grade: int = Field(ge=0, le=4)


class GradingConventions(BaseModel):
    """The validated ``conventions.yaml``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ctcae_version: str
    baseline: BaselineConventions
    readings: dict[str, Literal["if_abnormal", "if_value_abnormal"]] = Field(default_factory=dict)
    treatment_emergent: TreatmentEmergentConventions
    not_graded: dict[str, str] = Field(default_factory=dict)

    @property
    def assume_normal_baseline(self) -> bool:
        return self.baseline.missing == "assume_normal"

    def before_first_infusion(self, rule: str) -> Literal["limits", "baseline"]:
        """How values at or before the first infusion are graded on a term with ``rule``."""
        return self.baseline.before_first_infusion.get(rule, "baseline")  # type: ignore[arg-type]

    def describe(self) -> str:
        """The conventions in one sentence, for the safety section and the dashboard."""
        missing = (
            "a missing baseline taken as normal (rows flagged)"
            if self.assume_normal_baseline
            else "values a missing baseline could regrade not gradable"
        )
        te = self.treatment_emergent
        emergent = (
            "lab toxicities counted when worse than the subject's baseline grade "
            f"({te.missing_baseline_grade} when none), values no worse shown apart"
            if te.rule == "worse_than_baseline"
            else "every value after the first infusion counted"
        )
        words = {"if_abnormal": "an abnormal baseline", "if_value_abnormal": "an abnormal value"}
        readings = "".join(
            f"; {term}: 'if abnormal' read as {words[rule]}"
            for term, rule in sorted(self.readings.items())
        )
        return (
            "Grading conventions (conventions.yaml): values at or before the first infusion "
            f"graded against LLN/ULN; {missing}; {emergent}{readings}."
        )


@cache
def load_grading_conventions() -> GradingConventions:
    """Load and validate the shipped ``criteria/conventions.yaml`` (cached)."""
    resource = files("celltrial.safety").joinpath("criteria", "conventions.yaml")
    text = resource.read_text(encoding="utf-8")
    return read_grading_conventions(text, source="celltrial/safety/criteria/conventions.yaml")


def read_grading_conventions(text: str, *, source: str) -> GradingConventions:
    """Validate conventions YAML ``text``; errors name ``source`` and the field."""
    try:
        return GradingConventions.model_validate(yaml.safe_load(text))
    except (ValidationError, ValueError, yaml.YAMLError) as exc:
        raise CelltrialError(f"{source} is invalid:\n{exc}") from exc
