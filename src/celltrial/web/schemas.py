"""Request and response shapes of the web app (pydantic), separate from the ORM models.

Requests are validated here (types, lengths, ranges); the services check the study's rules
(bedside check, vocabulary, windows). Responses are built from the services' result objects.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from celltrial.ingest.alignment import MAX_SUBJECT_CODE
from celltrial.safety.events import load_ae_vocabulary
from celltrial.services import adverse_events, clinical_status, enrolment, infusions, vital_signs
from celltrial.services.casebook import (
    MYCOPLASMA_RESULTS,
    RELEASE_STATUSES,
    STERILITY_RESULTS,
    NewLot,
)
from celltrial.store.unreadable_times import EARLIEST, LATEST
from celltrial.study import StudyHandle

T = TypeVar("T")

_vocabulary = load_ae_vocabulary()
Relatedness = Literal[tuple(_vocabulary["relatedness"])]  # type: ignore[valid-type]
Outcome = Literal[tuple(_vocabulary["outcomes"])]  # type: ignore[valid-type]
Action = Literal[tuple(_vocabulary["actions"])]  # type: ignore[valid-type]
SeriousCriterion = Literal[tuple(_vocabulary["serious_criteria"])]  # type: ignore[valid-type]


def _in_study_years(value: datetime) -> datetime:
    """A time in the years celltrial stores (1900–2099, as imports check)."""
    try:
        utc = value.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:  # year 1 or 9999 moved across midnight by its offset
        utc = None
    if utc is None or not EARLIEST <= utc < LATEST:
        raise ValueError(f"expected a time in the years {EARLIEST.year + 1}–{LATEST.year - 1}")
    return value


#: An aware time in the years celltrial stores: a time outside them is refused on entry, as
#: it could never be read back (see :mod:`celltrial.store.unreadable_times`).
StudyTime = Annotated[AwareDatetime, AfterValidator(_in_study_years)]

ShortText = Field(max_length=64)
LongText = Field(default=None, max_length=2000)
Version = Annotated[int, Field(ge=1, description="The version you read (optimistic locking).")]
Reason = Annotated[str, Field(min_length=1, max_length=2000, description="Why saved data change.")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class _Edit:
    """An edit schema: the record's fields (``entry()``) plus ``version`` (the version read) and
    ``reason``, declared by each subclass (a mixin, so that pydantic keeps the field order)."""

    def save(self, edit: Callable[..., T], study: StudyHandle, row_id: int, user: str) -> T:
        """Save through the service's ``edit`` function (it checks version and reason)."""
        return edit(
            study,
            row_id,
            self.entry(),  # type: ignore[attr-defined]
            version=self.version,  # type: ignore[attr-defined]
            reason=self.reason,  # type: ignore[attr-defined]
            user=user,
        )


class SignInRequest(_Strict):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class SignInResponse(BaseModel):
    username: str
    role: str
    csrf_token: str = Field(description="Send as the X-CSRF-Token header with every write.")
    expires_at: datetime


class InfusionFields(_Strict):
    """An infusion as entered at the bedside."""

    lot_code: str = Field(min_length=1, max_length=64, description="Lot code on the bag.")
    vial_id: str = Field(min_length=1, max_length=64)
    started_at: StudyTime
    ended_at: StudyTime | None = None
    cells_given: float = Field(gt=0, lt=1e12, description="Viable cells infused.")
    volume_ml: float | None = Field(default=None, gt=0, lt=10000)
    completed: bool = True
    stop_reason: str | None = LongText
    premedication: str | None = LongText
    reaction: bool | None = Field(
        default=False,
        description="A reaction during the infusion (null: not recorded, as for imported "
        "infusions).",
    )
    reaction_description: str | None = LongText
    override_reason: str | None = Field(
        default=None,
        max_length=2000,
        description="Why a dose outside the protocol's tolerance is right (audited; without "
        "it such a dose is refused).",
    )
    confirm_warnings: bool = Field(
        default=False,
        description="Save despite the warnings about the dates (audited; without it an entry "
        "with warnings is refused, listing them).",
    )

    def entry(self) -> infusions.InfusionEntry:
        """The fields as the service takes them (without version and reason)."""
        return infusions.InfusionEntry(**self.model_dump(exclude={"version", "reason"}))


class InfusionCreate(InfusionFields):
    number: int | None = Field(default=None, ge=1, le=100, description="Default: the next one.")
    label_subject_code: str = Field(
        min_length=1, max_length=64, description="Subject code read off the bag (identity check)."
    )


class InfusionUpdate(InfusionFields, _Edit):
    version: Version
    reason: Reason


class InfusionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    subject_code: str
    number: int
    lot_code: str | None
    vial_id: str | None
    started_at: datetime | None
    ended_at: datetime | None
    cells_given: float | None
    volume_ml: float | None
    completed: bool
    stop_reason: str | None
    premedication: str | None
    reaction: bool | None
    reaction_description: str | None
    version: int


class AdverseEventFields(_Strict):
    term: str = Field(min_length=1, max_length=200)
    onset_at: StudyTime
    resolved_at: StudyTime | None = None
    grade: int | None = Field(default=None, ge=1, le=5, description="CTCAE grade 1–5.")
    serious: bool = False
    serious_criteria: list[SeriousCriterion] = Field(default_factory=list)  # type: ignore[valid-type]
    relatedness: Relatedness | None = None  # type: ignore[valid-type]
    expected: bool | None = None
    action: Action | None = None  # type: ignore[valid-type]
    outcome: Outcome | None = None  # type: ignore[valid-type]
    description: str | None = LongText
    confirm_warnings: bool = Field(
        default=False,
        description="Save despite the warnings about the dates (audited; without it an entry "
        "with warnings is refused, listing them).",
    )

    def entry(self) -> adverse_events.AdverseEventEntry:
        """The fields as the service takes them (without version and reason)."""
        data = self.model_dump(exclude={"version", "reason"})
        data["serious_criteria"] = tuple(data["serious_criteria"])
        return adverse_events.AdverseEventEntry(**data)


class AdverseEventCreate(AdverseEventFields):
    pass


class AdverseEventUpdate(AdverseEventFields, _Edit):
    version: Version
    reason: Reason


class AdverseEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    subject_code: str
    term: str
    onset_at: datetime
    resolved_at: datetime | None
    grade: int | None
    serious: bool
    serious_criteria: list[str]
    relatedness: str | None
    expected: bool | None
    action: str | None
    outcome: str | None
    description: str | None
    version: int


class AuditEntryOut(BaseModel):
    time: datetime
    user: str
    action: str
    changes: list[tuple[str, Any, Any]] = Field(description="(field, before, after)")
    reason: str | None
    import_batch_id: int | None
    source_sha256: str | None


class AuditTrailOut(BaseModel):
    table: str
    row_id: int
    entries: list[AuditEntryOut]


class DashboardOut(BaseModel):
    study_id: str
    title: str
    as_of: datetime
    enrolment: dict[str, int]
    alerts: list[dict[str, Any]]
    subjects: list[dict[str, Any]]
    deviations: list[dict[str, Any]]
    serious_events: list[dict[str, Any]]
    lab_toxicities: list[dict[str, Any]]
    infusion_signals: list[dict[str, Any]]
    adverse_events: list[dict[str, Any]]
    caveats: list[str]
    lab_baseline_abnormalities: list[dict[str, Any]] = Field(default_factory=list)


class SubjectOut(BaseModel):
    code: str
    details: dict[str, Any]
    infusions: list[dict[str, Any]]
    visits: list[dict[str, Any]]
    timeline: list[dict[str, Any]]
    deviations: list[dict[str, Any]]
    recorded_infusions: list[InfusionOut]
    adverse_events: list[AdverseEventOut]
    vital_signs: list[VitalSignsOut] = Field(default_factory=list)
    clinical_status: list[ClinicalStatusOut] = Field(default_factory=list)
    ct_scans: list[CtScanOut] = Field(default_factory=list)


class ErrorOut(BaseModel):
    detail: str


class EntryRefusedOut(ErrorOut):
    """An entry not saved, field by field (field name -> what is wrong, in plain words); a
    refusal of another kind (the bedside check) has the message only."""

    problems: dict[str, list[str]] = Field(default_factory=dict, description="To correct.")
    overridable: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Saved only with an override_reason (e.g. a dose outside the tolerance).",
    )
    warnings: dict[str, list[str]] = Field(
        default_factory=dict, description="Saved once sent with confirm_warnings."
    )


# --- vital signs ---------------------------------------------------------------------------------

#: A value as typed ("37,8") or a number; converted and checked against the catalogue.
Reading = Annotated[float, Field(allow_inf_nan=False)] | Annotated[str, Field(max_length=32)] | None
TemperatureUnit = Literal[vital_signs.ENTRY_UNITS["temperature"]]  # type: ignore[valid-type]
Fio2Unit = Literal[vital_signs.ENTRY_UNITS["fio2"]]  # type: ignore[valid-type]


class VitalSignsFields(_Strict):
    """One round of vital signs: the time and any of the values (at least one)."""

    time: StudyTime
    temperature: Reading = None
    temperature_unit: TemperatureUnit = Field(default="degC", description="degC or degF")  # type: ignore[valid-type]
    heart_rate: Reading = Field(default=None, description="beats per minute")
    systolic_bp: Reading = Field(default=None, description="mmHg")
    diastolic_bp: Reading = Field(default=None, description="mmHg")
    respiratory_rate: Reading = Field(default=None, description="breaths per minute")
    spo2: Reading = Field(default=None, description="%")
    fio2: Reading = Field(default=None, description="a fraction (0.21–1), or % with fio2_unit")
    fio2_unit: Fio2Unit = "1"  # type: ignore[valid-type]

    def entry(self) -> vital_signs.VitalSignsEntry:
        """The fields as the service takes them (without version and reason)."""
        return vital_signs.VitalSignsEntry(**self.model_dump(exclude={"version", "reason"}))


class VitalSignsCreate(VitalSignsFields):
    pass


class VitalSignsUpdate(VitalSignsFields, _Edit):
    version: str = Field(
        pattern=r"^\d{1,12}\.\d{1,9}(-\d{1,12}\.\d{1,9}){0,20}$",
        description="The version of the round you read (optimistic locking).",
    )
    reason: Reason


class VitalValueOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int = Field(description="The observation (its audit trail: /api/v1/audit/observation/ID)")
    field: str
    test: str = Field(description="Catalogue test code.")
    value: float | None = Field(description="In the catalogue's canonical unit.")
    unit: str | None
    raw_value: str | None = Field(description="As entered or imported.")
    raw_unit: str | None
    version: int


class VitalSignsOut(BaseModel):
    """A round, values in canonical units (°C, /min, mmHg, %, FiO2 as a fraction)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    subject_code: str
    time: datetime
    temperature: float | None
    heart_rate: float | None
    systolic_bp: float | None
    diastolic_bp: float | None
    respiratory_rate: float | None
    spo2: float | None
    fio2: float | None
    values: list[VitalValueOut]
    version: str
    source: str | None


# --- clinical status -----------------------------------------------------------------------------

OxygenSupport = Literal[clinical_status.support_options()]  # type: ignore[valid-type]


class ClinicalStatusFields(_Strict):
    """The day's status: WHO clinical progression scale, oxygen support and FiO2."""

    assessed_at: StudyTime = Field(description="When assessed (one status a calendar day).")
    who_scale: int = Field(ge=0, le=10, description="WHO clinical progression scale 0–10.")
    oxygen_support: OxygenSupport | None = None  # type: ignore[valid-type]
    fio2: Reading = Field(default=None, description="a fraction (0.21–1), or % with fio2_unit")
    fio2_unit: Fio2Unit = "1"  # type: ignore[valid-type]

    def entry(self) -> clinical_status.ClinicalStatusEntry:
        """The fields as the service takes them (without version and reason)."""
        return clinical_status.ClinicalStatusEntry(**self.model_dump(exclude={"version", "reason"}))


class ClinicalStatusCreate(ClinicalStatusFields):
    pass


class ClinicalStatusUpdate(ClinicalStatusFields, _Edit):
    version: Version
    reason: Reason


class ClinicalStatusOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    subject_code: str
    assessed_at: datetime
    who_scale: int | None
    who_label: str | None
    oxygen_support: str | None
    fio2: float | None
    version: int


# --- product lots --------------------------------------------------------------------------------

Percent = Annotated[float, Field(ge=0, le=100)]


class LotFields(_Strict):
    """A product lot and its release results (from the certificate of analysis)."""

    code: str = Field(min_length=1, max_length=64)
    release_status: Literal[RELEASE_STATUSES]  # type: ignore[valid-type]
    viability_pct: Percent | None = None
    markers_pct: dict[Annotated[str, Field(min_length=1, max_length=32)], Percent] = Field(
        default_factory=dict, max_length=40, description="ISCT marker -> % of cells."
    )
    sterility: Literal[STERILITY_RESULTS] | None = None  # type: ignore[valid-type]
    mycoplasma: Literal[MYCOPLASMA_RESULTS] | None = None  # type: ignore[valid-type]
    endotoxin_eu_per_ml: float | None = Field(default=None, ge=0, lt=1e6)
    total_cells: float | None = Field(default=None, gt=0, lt=1e13)
    donor_id: str | None = Field(default=None, max_length=64)
    tissue_source: str | None = Field(default=None, max_length=2000)
    manufactured_at: StudyTime | None = None
    expires_at: StudyTime | None = None

    def entry(self) -> NewLot:
        """The fields as the service takes them (without version and reason)."""
        return NewLot(**self.model_dump(exclude={"version", "reason"}))


class LotCreate(LotFields):
    pass


class LotUpdate(LotFields, _Edit):
    version: Version
    reason: Reason


class LotOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    code: str
    release_status: str
    viability_pct: float | None
    markers_pct: dict[str, float]
    sterility: str | None
    mycoplasma: str | None
    endotoxin_eu_per_ml: float | None
    total_cells: float | None
    donor_id: str | None
    tissue_source: str | None
    manufactured_at: datetime | None
    expires_at: datetime | None
    version: int
    criteria_met: bool = Field(description="Meets the protocol's release criteria.")
    release_failures: list[str] = Field(description="Every criterion the lot does not meet.")
    expired: bool
    infusions: int = Field(description="Infusions given from this lot.")


# --- chest CT ------------------------------------------------------------------------------------


class CtScanOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    subject_code: str
    time: datetime
    study_day: int | None
    method: str
    lung_ml: float | None
    ggo_ml: float | None
    consolidation_ml: float | None
    lesion_ml: float | None
    involvement_pct: float | None
    score: float | None
    status: str | None = Field(description="baseline, improved, stable or progressed")
    lesion_change_ml: float | None = Field(description="Change from the baseline scan.")
    checksum: str | None


QueryTable = Literal["observation", "infusion", "adverse_event", "clinical_status"]


class QueryCreate(_Strict):
    """A data manager's question about one stored value."""

    table: QueryTable
    row_id: int = Field(ge=1, lt=2**31)
    field: str = Field(min_length=1, max_length=64)
    question: str = Field(min_length=1, max_length=2000)


class QueryAnswer(_Strict):
    answer: str = Field(min_length=1, max_length=2000)
    version: int | None = Field(default=None, ge=1, description="The version you read.")


class QueryClose(_Strict):
    note: str | None = Field(default=None, max_length=2000)
    version: int | None = Field(default=None, ge=1, description="The version you read.")


class QueryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    subject_code: str
    table_name: str
    row_id: int
    field: str
    value_text: str | None
    question: str
    status: str
    raised_by: str
    raised_at: datetime
    answer: str | None
    answered_by: str | None
    answered_at: datetime | None
    close_note: str | None
    closed_by: str | None
    closed_at: datetime | None
    version: int
    record_label: str = Field(default="", description="The record queried, in words.")
    record_time: datetime | None = Field(default=None, description="The record's time.")
    field_label: str = Field(default="", description="The field queried, in words.")
    value_shown: str | None = Field(default=None, description="The value when raised, as shown.")
    value_time: datetime | None = Field(default=None, description="The value, when a time.")


class SignatureCreate(_Strict):
    password: str = Field(min_length=1, max_length=1024, description="Your password, again.")
    meaning: Literal["review", "approval"] = Field(description="What the signature means.")


class SignatureOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    subject_code: str
    signed_by: str
    signer_name: str
    signer_role: str
    meaning: str
    signed_at: datetime
    data_sha256: str
    valid: bool
    invalidated_by: str | None


# --- enrolment and demographics ------------------------------------------------------------------

Measure = Annotated[float, Field(allow_inf_nan=False)]


class DemographicsFields(_Strict):
    """A subject's demographics (checked as imports check them: plausible ranges, sex words)."""

    sex: str | None = Field(default=None, max_length=16, description="F or M (female, male).")
    birth_date: date | None = Field(
        default=None, description="Gives the age at admission (only the age is stored)."
    )
    age: Measure | None = Field(default=None, description="Completed years.")
    height_cm: Measure | None = None
    weight_kg: Measure | None = None
    admitted_at: StudyTime | None = Field(default=None, description="Hospital admission.")
    enrolled_at: StudyTime | None = Field(
        default=None, description="Enrolment (consent); default now, an edit without it keeps it."
    )

    def entry(self) -> enrolment.DemographicsEntry:
        """The fields as the service takes them (without code, site, version and reason)."""
        return enrolment.DemographicsEntry(
            **self.model_dump(exclude={"code", "site", "version", "reason"})
        )


class SubjectEnrol(DemographicsFields):
    code: str = Field(min_length=1, max_length=MAX_SUBJECT_CODE, description="Subject code.")
    site: str | None = Field(default=None, max_length=32, description="Default: the first site.")


class DemographicsUpdate(DemographicsFields, _Edit):
    version: Version
    reason: Reason


class DemographicsOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    site: str | None
    sex: str | None
    age: float | None
    height_cm: float | None
    weight_kg: float | None
    enrolled_at: datetime | None
    admitted_at: datetime | None
    version: int


class LabResultOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int = Field(description="The observation (raise a query on table observation).")
    time: datetime
    study_day: int | None
    value: float | None
    qualifier: str
    text: str | None = Field(description="The value as received, when not a number.")
    ref_low: float | None
    ref_high: float | None
    grade: int | None = Field(description="CTCAE grade (the worse side).")
    ctcae_term: str | None
    not_gradable: str | None
    flags: list[str]


class LabTestOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    name: str
    unit: str
    results: list[LabResultOut]
