"""The study protocol as validated pydantic models.

A protocol file (YAML) describes the study, the cell product and its release criteria, the regimen,
the assessment schedule relative to study day 0 (= first infusion) and the safety monitoring
windows.
Reading and error reporting live in :mod:`celltrial.protocol.loader`.
"""

from __future__ import annotations

from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from celltrial.catalogue import load_catalogue


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _check_test_codes(codes: tuple[str, ...], *, category: set[str] | None = None) -> None:
    catalogue = load_catalogue()
    for code in codes:
        if code not in catalogue:
            raise ValueError(
                f"unknown test code {code!r}; known codes: {', '.join(sorted(catalogue.codes))}"
            )
        if category is not None and catalogue.get(code).category not in category:
            wanted = " or ".join(sorted(category))
            raise ValueError(f"{code} is a {catalogue.get(code).category}, expected {wanted}")
    duplicates = sorted({c for c in codes if codes.count(c) > 1})
    if duplicates:
        raise ValueError(f"listed twice: {', '.join(duplicates)}")


class Study(_Strict):
    """Who and what the study is about."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)
    title: str = Field(min_length=1)
    phase: str = ""
    population: str = Field(min_length=1)
    eligibility: tuple[str, ...] = Field(min_length=1)
    timezone: str = "UTC"
    planned_subjects: int | None = Field(default=None, ge=1)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r} (e.g. 'Europe/Paris')") from exc
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class ReleaseCriteria(_Strict):
    """Lot release criteria of the cell product (ISCT minimal criteria and safety tests)."""

    viability_min_pct: float = Field(ge=0, le=100)
    positive_markers_min_pct: dict[str, float] = Field(default_factory=dict)
    negative_markers_max_pct: dict[str, float] = Field(default_factory=dict)
    sterility: Literal["no growth"] = "no growth"
    mycoplasma: Literal["negative"] = "negative"
    endotoxin_max_eu_per_kg_per_h: float = Field(default=5.0, gt=0)

    @field_validator("positive_markers_min_pct", "negative_markers_max_pct")
    @classmethod
    def _percentages(cls, value: dict[str, float]) -> dict[str, float]:
        for marker, pct in value.items():
            if not 0 <= pct <= 100:
                raise ValueError(f"{marker}: {pct} is not a percentage between 0 and 100")
        return value


class Product(_Strict):
    """The cell product given."""

    name: str = Field(min_length=1)
    description: str = ""
    tissue_source: str = Field(min_length=1)
    release: ReleaseCriteria


class Dose(_Strict):
    """Cells per infusion, either a fixed number or per kg of body weight, with a tolerance."""

    cells: float = Field(gt=0)
    basis: Literal["per_infusion", "per_kg"] = "per_infusion"
    tolerance_pct: float = Field(default=10, ge=0, le=100)

    def target_cells(self, weight_kg: float | None) -> float | None:
        """Cells to give to a subject; None for a per-kg dose when the weight is unknown."""
        if self.basis == "per_infusion":
            return self.cells
        return None if weight_kg is None else self.cells * weight_kg

    def within_tolerance(self, cells_given: float, weight_kg: float | None) -> bool | None:
        """Whether ``cells_given`` is within ± tolerance of the target (None if not computable)."""
        target = self.target_cells(weight_kg)
        if target is None:
            return None
        return abs(cells_given - target) <= target * self.tolerance_pct / 100 * (1 + 1e-12)


class InfusionWindow(_Strict):
    """How many days before or after its planned study day an infusion may be given."""

    early_days: int = Field(default=0, ge=0)
    late_days: int = Field(default=1, ge=0)


class Regimen(_Strict):
    """Number, dose, route and spacing of the infusions."""

    n_infusions: int = Field(ge=1, le=100)
    dose: Dose
    route: Literal["intravenous", "intra-arterial", "intramuscular", "intrathecal", "local"]
    interval_days: int = Field(default=3, ge=1)
    infusion_window: InfusionWindow = InfusionWindow()
    infusion_duration_min: float = Field(default=30, gt=0)

    @property
    def infusion_days(self) -> tuple[int, ...]:
        """Planned study days of the infusions (the first is day 0)."""
        return tuple(i * self.interval_days for i in range(self.n_infusions))


class Baseline(_Strict):
    """Baseline = last value before the first infusion within this many days."""

    window_days: int = Field(default=3, ge=1)


class Visit(_Strict):
    """A scheduled visit relative to study day 0, with its window and assessments."""

    name: str = Field(min_length=1)
    day: int
    window_before: int = Field(default=0, ge=0)
    window_after: int = Field(default=0, ge=0)
    labs: tuple[str, ...] = ()
    vitals: tuple[str, ...] = ()
    clinical_status: bool = False
    chest_ct: bool = False

    @field_validator("labs")
    @classmethod
    def _labs_known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        _check_test_codes(value, category={"lab", "immunophenotype", "blood_gas"})
        return value

    @field_validator("vitals")
    @classmethod
    def _vitals_known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        _check_test_codes(value, category={"vital"})
        return value

    @property
    def first_day(self) -> int:
        return self.day - self.window_before

    @property
    def last_day(self) -> int:
        return self.day + self.window_after

    @property
    def assessments(self) -> tuple[str, ...]:
        """Everything due at the visit: test codes, then ``WHO`` and ``CT`` when due."""
        extra = (("WHO",) if self.clinical_status else ()) + (("CT",) if self.chest_ct else ())
        return self.labs + self.vitals + extra


class Daily(_Strict):
    """Assessments due every day while the subject is in hospital."""

    from_day: int = 0
    to_day: int = Field(ge=0)
    vitals: tuple[str, ...] = ()
    clinical_status: bool = False

    @field_validator("vitals")
    @classmethod
    def _vitals_known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        _check_test_codes(value, category={"vital"})
        return value

    @model_validator(mode="after")
    def _ordered(self) -> Daily:
        if self.to_day < self.from_day:
            raise ValueError(f"to_day {self.to_day} is before from_day {self.from_day}")
        return self


class Safety(_Strict):
    """Safety monitoring windows."""

    infusion_reaction_window_hours: float = Field(default=24, gt=0)
    ae_follow_up_days: int = Field(default=28, ge=0)
    peri_infusion_vitals_min: tuple[int, ...] = (-30, 15, 30, 60, 120, 240, 1440)


class Analysis(_Strict):
    """Analysis choices fixed before the data are seen.

    ``key_visit_day``: the day of the visit at which each efficacy marker's change from baseline
    is stated and tested (the findings); it must be the day of a scheduled visit after day 0.
    Optional (protocol files written before it stay valid): by default the last scheduled visit
    with lab tests.
    """

    key_visit_day: int | None = Field(default=None, ge=1)


class Protocol(_Strict):
    """A whole study protocol."""

    schema_version: Literal[1] = 1
    study: Study
    product: Product
    regimen: Regimen
    baseline: Baseline = Baseline()
    visits: tuple[Visit, ...] = Field(min_length=1)
    daily: Daily | None = None
    safety: Safety = Safety()
    follow_up_days: int = Field(ge=0)
    analysis: Analysis = Analysis()

    @property
    def key_visit(self) -> Visit | None:
        """The pre-specified key efficacy visit: ``analysis.key_visit_day``'s visit, else the
        last visit after day 0 with lab tests (None when no visit has any)."""
        if self.analysis.key_visit_day is not None:
            return next(v for v in self.visits if v.day == self.analysis.key_visit_day)
        with_labs = [v for v in self.visits if v.day > 0 and v.labs]
        return with_labs[-1] if with_labs else None

    @model_validator(mode="after")
    def _schedule_consistent(self) -> Protocol:
        names = [v.name for v in self.visits]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"visit names must be unique; repeated: {', '.join(repeated)}")
        days = [v.day for v in self.visits]
        if days != sorted(days) or len(set(days)) != len(days):
            raise ValueError(f"visits must be in strictly increasing day order; days are {days}")
        for earlier, later in zip(self.visits, self.visits[1:], strict=False):
            if earlier.last_day >= later.first_day:
                raise ValueError(
                    f"windows of visits {earlier.name!r} "
                    f"(days {earlier.first_day}..{earlier.last_day}) and {later.name!r} "
                    f"(days {later.first_day}..{later.last_day}) overlap"
                )
        last_infusion = self.regimen.infusion_days[-1]
        if self.follow_up_days < last_infusion:
            raise ValueError(
                f"follow_up_days {self.follow_up_days} ends before the last infusion "
                f"(day {last_infusion})"
            )
        if self.visits[-1].day > self.follow_up_days:
            raise ValueError(
                f"visit {self.visits[-1].name!r} on day {self.visits[-1].day} is after the end of "
                f"follow-up (day {self.follow_up_days})"
            )
        key = self.analysis.key_visit_day
        if key is not None and key not in [v.day for v in self.visits if v.day > 0]:
            raise ValueError(
                f"analysis.key_visit_day {key} is not the day of a scheduled visit after day 0; "
                f"visit days: {', '.join(str(v.day) for v in self.visits if v.day > 0)}"
            )
        return self
