"""Request and response shapes of the web app (pydantic), separate from the ORM models.

Requests are validated here (types, lengths, ranges); the services check the study's rules
(bedside check, vocabulary, windows). Responses are built from the services' result objects.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from celltrial.safety.events import load_ae_vocabulary

_vocabulary = load_ae_vocabulary()
Relatedness = Literal[tuple(_vocabulary["relatedness"])]  # type: ignore[valid-type]
Outcome = Literal[tuple(_vocabulary["outcomes"])]  # type: ignore[valid-type]
Action = Literal[tuple(_vocabulary["actions"])]  # type: ignore[valid-type]
SeriousCriterion = Literal[tuple(_vocabulary["serious_criteria"])]  # type: ignore[valid-type]

ShortText = Field(max_length=64)
LongText = Field(default=None, max_length=2000)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


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
    started_at: AwareDatetime
    ended_at: AwareDatetime | None = None
    cells_given: float = Field(gt=0, lt=1e12, description="Viable cells infused.")
    volume_ml: float | None = Field(default=None, gt=0, lt=10000)
    completed: bool = True
    stop_reason: str | None = LongText
    premedication: str | None = LongText
    reaction: bool = Field(default=False, description="A reaction during the infusion.")
    reaction_description: str | None = LongText


class InfusionCreate(InfusionFields):
    number: int | None = Field(default=None, ge=1, le=100, description="Default: the next one.")
    label_subject_code: str = Field(
        min_length=1, max_length=64, description="Subject code read off the bag (identity check)."
    )


class InfusionUpdate(InfusionFields):
    version: int = Field(ge=1, description="The version you read (optimistic locking).")
    reason: str = Field(min_length=1, max_length=2000, description="Why saved data change.")


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
    onset_at: AwareDatetime
    resolved_at: AwareDatetime | None = None
    grade: int | None = Field(default=None, ge=1, le=5, description="CTCAE grade 1–5.")
    serious: bool = False
    serious_criteria: list[SeriousCriterion] = Field(default_factory=list)  # type: ignore[valid-type]
    relatedness: Relatedness | None = None  # type: ignore[valid-type]
    expected: bool | None = None
    action: Action | None = None  # type: ignore[valid-type]
    outcome: Outcome | None = None  # type: ignore[valid-type]
    description: str | None = LongText


class AdverseEventCreate(AdverseEventFields):
    pass


class AdverseEventUpdate(AdverseEventFields):
    version: int = Field(ge=1)
    reason: str = Field(min_length=1, max_length=2000)


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


class SubjectOut(BaseModel):
    code: str
    details: dict[str, Any]
    infusions: list[dict[str, Any]]
    visits: list[dict[str, Any]]
    timeline: list[dict[str, Any]]
    deviations: list[dict[str, Any]]
    recorded_infusions: list[InfusionOut]
    adverse_events: list[AdverseEventOut]


class ErrorOut(BaseModel):
    detail: str


QueryTable = Literal["observation", "infusion", "adverse_event"]


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
