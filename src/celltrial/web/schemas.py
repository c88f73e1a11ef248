"""Request and response shapes of the web app (pydantic), separate from the ORM models.

Requests are validated here (types, lengths, ranges); the services check the study's rules
(bedside check, vocabulary, windows). Responses are built from the services' result objects.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime
from functools import cache
from typing import Annotated, Any, Literal, TypeVar, get_args

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)

from celltrial.ingest import facts
from celltrial.ingest.alignment import MAX_SUBJECT_CODE
from celltrial.ingest.subject_codes import ALLOWED, ALLOWED_PUNCTUATION, subject_code_problem
from celltrial.safety.events import load_ae_vocabulary
from celltrial.services import adverse_events, clinical_status, enrolment, infusions, vital_signs
from celltrial.services.casebook import (
    MYCOPLASMA_RESULTS,
    RELEASE_STATUSES,
    STERILITY_RESULTS,
    NewLot,
)
from celltrial.study import StudyHandle
from celltrial.web.validation import API_TIME_EXAMPLE, PATTERN_WORDS, register_pattern, shown

T = TypeVar("T")

_vocabulary = load_ae_vocabulary()
Relatedness = Literal[tuple(_vocabulary["relatedness"])]  # type: ignore[valid-type]
Outcome = Literal[tuple(_vocabulary["outcomes"])]  # type: ignore[valid-type]
Action = Literal[tuple(_vocabulary["actions"])]  # type: ignore[valid-type]
SeriousCriterion = Literal[tuple(_vocabulary["serious_criteria"])]  # type: ignore[valid-type]


#: A time as the API takes it: RFC 3339 (``format: date-time``) in the years 1900–2099 as
#: written, with seconds (fractions to the microsecond) and its UTC offset. Any such time is
#: within the years celltrial stores once moved to UTC (see
#: :mod:`celltrial.store.unreadable_times`: a time outside them could never be read back).
TIME_PATTERN = register_pattern(
    r"^(19|20)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]([01][0-9]|2[0-3]):[0-5][0-9]"
    r":[0-5][0-9](\.[0-9]{1,6})?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$",
    f"a date and time in the years 1900–2099 with its UTC offset ({API_TIME_EXAMPLE})",
)
#: A calendar date (``format: date``), years 1800–2099.
DATE_PATTERN = register_pattern(
    r"^(18|19|20)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$",
    "a date in the years 1800–2099 (e.g. 1960-05-31)",
)
#: Text that is more than spaces (JSON Schema patterns match anywhere in the value).
NOT_BLANK = register_pattern(
    r"^\s*[^\s\x00][^\x00]*$", "some text, not only spaces, without NUL characters"
)
#: Any text a database can keep: PostgreSQL refuses the NUL character in text.
TEXT = register_pattern(r"^[^\x00]*$", "text without NUL characters")
#: A new subject's code, the rule of :mod:`celltrial.ingest.subject_codes` (letters and digits
#: of any alphabet: Python's ``\w``, which the schema's patterns follow, see ``_Strict``).
_PUNCTUATION = "".join(c for c in ALLOWED_PUNCTUATION if c not in "_-")  # _ is in \w
_INNER = rf"[\w{_PUNCTUATION}-]"
_LAST = rf"[\w{_PUNCTUATION.replace(' ', '')}-]"
SUBJECT_CODE_PATTERN = register_pattern(rf"^[^\W_](?:{_INNER}*{_LAST})?$", ALLOWED)


def _parsed(pattern: str, kind: type) -> Callable[[Any], Any]:
    """A validator that reads a time or date from text of ``pattern`` only (a value already of
    ``kind``, from a form, passes): what the schema says, and nothing pydantic would also read
    (numbers as Unix times, other layouts)."""
    compiled = re.compile(pattern)
    words = PATTERN_WORDS[pattern]

    def read(value: Any) -> Any:
        if isinstance(value, kind):
            return value
        if not isinstance(value, str) or not compiled.search(value):
            raise ValueError(f"{shown(value)} is not {words}")
        try:
            return kind.fromisoformat(value.upper())
        except ValueError:  # 2021-02-29, 2020-04-31: the pattern lets days up to 31 through
            raise ValueError(f"{shown(value)} is not a day of the calendar") from None

    return read


def _in_study_years(value: datetime) -> datetime:
    """A time in the years 1900–2099 as written (a form's local time, as the API's)."""
    if not 1900 <= value.year <= 2099:
        raise ValueError("expected a time in the years 1900–2099")
    return value


#: An aware time in the years celltrial stores: a time outside them is refused on entry, as
#: it could never be read back (see :mod:`celltrial.store.unreadable_times`).
StudyTime = Annotated[
    AwareDatetime,
    BeforeValidator(_parsed(TIME_PATTERN, datetime)),
    AfterValidator(_in_study_years),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": TIME_PATTERN}),
]
StudyDate = Annotated[
    date,
    BeforeValidator(_parsed(DATE_PATTERN, date)),
    WithJsonSchema({"type": "string", "format": "date", "pattern": DATE_PATTERN}),
]

ShortText = Field(max_length=64, pattern=TEXT)
LongText = Field(default=None, max_length=2000, pattern=TEXT)


Version = Annotated[int, Field(ge=1, description="The version you read (optimistic locking).")]
Reason = Annotated[
    str,
    Field(min_length=1, max_length=2000, pattern=NOT_BLANK, description="Why saved data change."),
]


@cache
def _integer_fields(model: type[BaseModel]) -> frozenset[str]:
    """The fields of ``model`` that hold an integer (or none)."""
    return frozenset(
        name
        for name, field in model.model_fields.items()
        if field.annotation is int or set(get_args(field.annotation)) == {int, type(None)}
    )


class _Strict(BaseModel):
    """A request: exactly the schema's types (no number for a time, no 0 for false, no "2" for
    2), no unknown fields, text as sent (the forms strip their values), patterns matched as
    Python's ``re`` matches them (the engine schemathesis and the subject-code rule use)."""

    model_config = ConfigDict(extra="forbid", strict=True, regex_engine="python-re")

    @model_validator(mode="before")
    @classmethod
    def _whole_numbers(cls, data: Any) -> Any:
        """A JSON number without a fraction is an integer to JSON Schema (7.0 is 7): given to
        an integer field, it is taken as one (strict integers take only 7)."""
        if not isinstance(data, dict):
            return data
        whole = _integer_fields(cls)
        return {
            key: int(value)
            if key in whole and isinstance(value, float) and value.is_integer()
            else value
            for key, value in data.items()
        }


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
    username: str = Field(min_length=1, max_length=64, pattern=TEXT)
    password: str = Field(min_length=1, max_length=1024, pattern=TEXT)


class SignInResponse(BaseModel):
    username: str
    role: str
    csrf_token: str = Field(description="Send as the X-CSRF-Token header with every write.")
    expires_at: datetime


class InfusionFields(_Strict):
    """An infusion as entered at the bedside."""

    lot_code: str = Field(
        min_length=1, pattern=NOT_BLANK, max_length=64, description="Lot code on the bag."
    )
    vial_id: str = Field(min_length=1, pattern=NOT_BLANK, max_length=64)
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
        pattern=TEXT,
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
        min_length=1,
        max_length=64,
        pattern=NOT_BLANK,
        description="Subject code read off the bag (identity check).",
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
    term: str = Field(min_length=1, pattern=NOT_BLANK, max_length=200)
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

    code: str = Field(min_length=1, pattern=NOT_BLANK, max_length=64)
    release_status: Literal[RELEASE_STATUSES]  # type: ignore[valid-type]
    viability_pct: Percent | None = None
    markers_pct: dict[Annotated[str, Field(min_length=1, max_length=32)], Percent] = Field(
        default_factory=dict, max_length=40, description="ISCT marker -> % of cells."
    )
    sterility: Literal[STERILITY_RESULTS] | None = None  # type: ignore[valid-type]
    mycoplasma: Literal[MYCOPLASMA_RESULTS] | None = None  # type: ignore[valid-type]
    endotoxin_eu_per_ml: float | None = Field(default=None, ge=0, lt=1e6)
    total_cells: float | None = Field(default=None, gt=0, lt=1e13)
    donor_id: str | None = Field(default=None, max_length=64, pattern=TEXT)
    tissue_source: str | None = Field(default=None, max_length=2000, pattern=TEXT)
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
    field: str = Field(min_length=1, pattern=NOT_BLANK, max_length=64)
    question: str = Field(min_length=1, pattern=NOT_BLANK, max_length=2000)


class QueryAnswer(_Strict):
    answer: str = Field(min_length=1, pattern=NOT_BLANK, max_length=2000)
    version: int | None = Field(default=None, ge=1, description="The version you read.")


class QueryClose(_Strict):
    note: str | None = Field(default=None, max_length=2000, pattern=TEXT)
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
    password: str = Field(
        min_length=1, max_length=1024, pattern=TEXT, description="Your password, again."
    )
    meaning: Literal["review", "approval"] = Field(description="What the signature means.")
    confirm_open_queries: bool = Field(
        default=False,
        description="Sign although queries on the casebook are not closed (the signature's "
        "audit entry names them; without it such a casebook is not signed: 422 lists the "
        "queries under warnings.open_queries).",
    )


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


def _plausible(fact: str, description: str) -> Any:
    """A fact's field: a number within the plausible range every import checks (inclusive;
    the schema says it, the service refuses a value outside it in its own words)."""
    low, high = facts.PLAUSIBLE[fact]
    return Field(
        default=None,
        description=f"{description} ({low:g}–{high:g}).",
        json_schema_extra={"minimum": low, "maximum": high},
    )


def _new_code(code: str) -> str:
    """A new subject's code as the schema's pattern says (the rule of every way in, in its
    words; no spaces at its ends: the API takes a code as written)."""
    problem = subject_code_problem(code)
    if problem is None and code != code.strip():
        problem = "spaces at its start or end"
    if problem is not None:
        raise ValueError(f"{shown(code)}: {problem}; use {ALLOWED}")
    return code


#: How a sex may be written: F or M, or a word that means one of them, in lower case, capitalised
#: or upper case ("female", "Female", "FEMALE").
SEX_SPELLINGS = tuple(
    dict.fromkeys(
        spelling
        for word in (*enrolment.SEXES, *facts.SEX_WORDS)
        for spelling in (word, word.capitalize(), word.upper())
    )
)


class DemographicsFields(_Strict):
    """A subject's demographics (checked as imports check them: plausible ranges, sex)."""

    sex: Literal[SEX_SPELLINGS] | None = Field(  # type: ignore[valid-type]
        default=None, description="F (female) or M (male), or a word for either."
    )
    birth_date: StudyDate | None = Field(
        default=None,
        description="Gives the age at admission (only the age is stored); not after the "
        "admission (else the enrolment), nor more than 120 years before it.",
    )
    age: Measure | None = _plausible("age", "Completed years")
    height_cm: Measure | None = _plausible("height_cm", "cm")
    weight_kg: Measure | None = _plausible("weight_kg", "kg")
    admitted_at: StudyTime | None = Field(
        default=None, description="Hospital admission (not in the future)."
    )
    enrolled_at: StudyTime | None = Field(
        default=None,
        description="Enrolment (consent; not in the future); default now, an edit without it "
        "keeps it.",
    )

    def entry(self) -> enrolment.DemographicsEntry:
        """The fields as the service takes them (without code, site, version and reason)."""
        return enrolment.DemographicsEntry(
            **self.model_dump(exclude={"code", "site", "version", "reason"})
        )


class SubjectEnrol(DemographicsFields):
    code: Annotated[str, AfterValidator(_new_code)] = Field(
        min_length=1,
        max_length=MAX_SUBJECT_CODE,
        json_schema_extra={"pattern": SUBJECT_CODE_PATTERN},
        description=f"Subject code: {ALLOWED}.",
    )
    site: str | None = Field(
        default=None, max_length=32, description="A site of the study; default: the first."
    )


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
