"""HTTP bodies of contract section 3."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Discriminator, Field, HttpUrl, Tag, model_validator

from paypost.domain.integrations import CONTRACT_KINDS, LEDGER_KIND_PATTERN, SECRET_FIELDS
from paypost.schemas.types import Identifier


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BuiltinLedgerConfig(Body):
    kind: Literal["builtin"]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "USD"


class BearerAuth(Body):
    kind: Literal["bearer"]
    token: str = Field(min_length=1, max_length=4096, repr=False)  # write-only: sealed, never shown


class ClientCredentialsAuth(Body):
    kind: Literal["oauth2_client_credentials"]
    token_url: HttpUrl
    client_id: str = Field(min_length=1, max_length=512)
    client_secret: str = Field(min_length=1, max_length=4096, repr=False)  # write-only: sealed, never shown
    scope: str | None = Field(default=None, max_length=1024)


class HttpLedgerConfig(Body):
    kind: Literal["http"]
    base_url: HttpUrl
    timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    max_requests_per_second: float | None = Field(default=None, gt=0, le=10_000)
    auth: Annotated[BearerAuth | ClientCredentialsAuth, Field(discriminator="kind")] | None = None
    tasks: bool = True  # office tasks and patient flags go into the system too (contract section 7)


# An adapter's settings: plain JSON whose field names MongoDB stores as they are, of a modest size.
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_SETTINGS_BYTES = 16_384


def _unstorable(value: object, depth: int = 0) -> list[str]:
    """What in an adapter's settings MongoDB could not store as given: odd field names, integers past 64 bits."""
    if depth > 8:
        return ["settings nested more than 8 deep"]
    if isinstance(value, dict):
        return [problem for name, inner in value.items()
                for problem in ([] if _SETTING_NAME.match(str(name)) else [f"setting name {str(name)[:64]!r}"])
                + _unstorable(inner, depth + 1)]
    if isinstance(value, list):
        return [problem for inner in value for problem in _unstorable(inner, depth + 1)]
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        return ["an integer past 64 bits"]
    return []


class AdapterLedgerConfig(BaseModel):
    """A ledger of a kind an installed adapter provides (README, "Ledger adapters for other systems").

    Here only its shape is checked; its adapter checks the settings when the practice is saved. Its
    credentials go in ``auth`` (sealed, write-only, as an ``http`` ledger's), never in another field.
    """

    model_config = ConfigDict(extra="allow")

    kind: Annotated[str, Field(pattern=LEDGER_KIND_PATTERN)]
    auth: Annotated[BearerAuth | ClientCredentialsAuth, Field(discriminator="kind")] | None = None

    @model_validator(mode="after")
    def _plain_settings(self) -> Self:
        settings = self.model_extra or {}
        if secrets := sorted(set(settings) & set(SECRET_FIELDS)):
            raise ValueError(f"{', '.join(secrets)}: credentials go in auth, which paypost keeps sealed")
        if problems := _unstorable(settings):
            raise ValueError("settings must be plain JSON with names of letters, digits and _: "
                             + ", ".join(problems[:5]))
        if len(json.dumps(settings, default=str)) > MAX_SETTINGS_BYTES:
            raise ValueError(f"settings must be at most {MAX_SETTINGS_BYTES} bytes of JSON")
        return self


def _ledger_kind(value: Any) -> str | None:
    """Which model reads a ledger: the contract's kinds their own, any other kind an adapter's."""
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    if not isinstance(kind, str):
        return None
    return kind if kind in CONTRACT_KINDS else "adapter"


LedgerConfig = Annotated[
    Annotated[BuiltinLedgerConfig, Tag("builtin")]
    | Annotated[HttpLedgerConfig, Tag("http")]
    | Annotated[AdapterLedgerConfig, Tag("adapter")],
    Discriminator(_ledger_kind, custom_error_type="invalid_ledger",
                  custom_error_message="a ledger needs a kind: builtin, http, or an installed adapter's"),
]


class PracticeIn(Body):
    name: str = Field(min_length=1, max_length=200)
    ledger: LedgerConfig
    enabled: bool = True


class EmptyBody(BaseModel):
    model_config = ConfigDict(extra="ignore")


class MappingIn(Body):
    ehr_patient_id: Identifier


class ClearIn(Body):
    payment_id: Identifier
    reason: str = Field(max_length=2000)
    manual_reference: str | None = Field(default=None, max_length=200)


class ClearGroupIn(Body):
    group_id: Identifier
    reason: str = Field(max_length=2000)
    manual_reference: str | None = Field(default=None, max_length=200)


class ChangesIn(Body):
    practice_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    retry: list[Identifier] = Field(default_factory=list, max_length=50_000)
    clear: list[ClearIn] = Field(default_factory=list, max_length=50_000)
    retry_groups: list[Identifier] = Field(default_factory=list, max_length=1000)
    clear_groups: list[ClearGroupIn] = Field(default_factory=list, max_length=1000)
    canary: int | None = Field(default=None, ge=1, le=1000,
                               description="replay the first k retries, and the rest only if every one loads")


class NoteIn(Body):
    text: str = Field(min_length=1, max_length=4000, pattern=r"\S")


class AssigneeIn(Body):
    assignee: str | None = Field(min_length=1, max_length=200, pattern=r"\S")


class SnoozeIn(Body):
    until: AwareDatetime
    reason: str = Field(min_length=1, max_length=2000, pattern=r"\S")


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorOut(BaseModel):
    error: ErrorDetail


class LoadErrorOut(BaseModel):
    code: str
    message: str
    fix: str


class PostingRow(BaseModel):
    practice_id: str
    payment_id: str
    kind: Literal["payment", "refund", "void", "return", "chargeback", "dispute_won", "unreadable"]
    patient_account_id: str | None
    ehr_patient_id: str | None
    amount: str | None
    currency: str | None
    method: str | None
    merchant_transfer_id: str | None
    refunded_payment_id: str | None = None
    reversed_payment_id: str | None = None  # (1.2) the payment a void, return or chargeback reverses
    dispute_id: str | None = None  # (1.2) a won dispute's chargeback
    return_code: str | None = None  # (1.2) a return's bank code
    fee_amount: str | None = None  # (1.2) a return's fee to charge
    load_status: str
    load_error: LoadErrorOut | None
    attempts_count: int
    clear_verified: bool | None = None  # a clear's manual reference found in the practice's system
    assignee: str | None = None  # who is looking at it (contract section 8)
    notes_count: int = 0
    received_at: str
    updated_at: str


class AttemptOut(BaseModel):
    at: str
    duration_ms: float
    outcome: str
    load_error: LoadErrorOut | None


class AuditOut(BaseModel):
    at: str
    actor: str
    action: str
    reason: str | None
    detail: str | None


class TakenBackOut(BaseModel):
    """(1.2) A refund or reversal of a payment, or a won dispute of one of its chargebacks."""

    payment_id: str
    kind: str
    amount: str | None
    currency: str | None
    load_status: str


class PostingDetail(PostingRow):
    attempts: list[AttemptOut]
    audit: list[AuditOut]
    load_error_history: list[LoadErrorOut]
    # (1.2) a payment's: what took money back from it, and what is left of it once that is counted
    taken_back: list[TakenBackOut] | None = None
    left: str | None = None


class PostingPage(BaseModel):
    items: list[PostingRow]
    next_cursor: str | None


class LedgerEntryOut(BaseModel):
    entry_id: str
    payment_id: str
    refund_id: str | None
    kind: str = "payment"  # (1.2) payment, refund, void, return, chargeback or dispute_won
    reversal_id: str | None = None  # (1.2) a reversal's own id (a refund's is refund_id)
    amount: str
    currency: str
    posted_at: str


class LedgerOut(BaseModel):
    items: list[LedgerEntryOut]


class HoldIn(Body):
    reason: str = Field(min_length=1, max_length=2000)


class HoldOut(BaseModel):
    """A practice whose system is failing or held (contract section 7); absent when healthy."""

    health: Literal["failing", "held"]
    since: str | None  # when it started failing (or was held by hand)
    held_since: str | None
    reason: str | None
    held_by: str | None  # the operator of a hold by hand; null when paypost held it
    last_error: str | None
    next_try_at: str | None
    waiting: int  # its payments waiting for the system (HELD or about to be)


class PracticeOut(BaseModel):
    practice_id: str
    name: str
    ledger: dict[str, object]
    enabled: bool
    hold: HoldOut | None = None


class PatientOut(BaseModel):
    practice_id: str
    ehr_patient_id: str
    created: bool


class MappingOut(BaseModel):
    practice_id: str
    patient_account_id: str
    ehr_patient_id: str
    retried: int


class OperationAccepted(BaseModel):
    operation_id: str


class OperationItemOut(BaseModel):
    payment_id: str
    action: Literal["retry", "clear"]
    result: Literal["retried", "cleared", "unchanged", "rejected"] | None
    message: str | None


class CanaryOut(BaseModel):
    size: int
    state: Literal["waiting", "passed", "stopped"]
    payment_ids: list[str]


class OperationOut(BaseModel):
    operation_id: str
    practice_id: str
    actor: str
    status: Literal["pending", "running", "completed"]
    total: int
    done: int
    items: list[OperationItemOut]
    created_at: str
    canary: CanaryOut | None = None
    message: str | None = None  # why the operation stopped short (a canary that did not load)


class PreviewItemOut(BaseModel):
    payment_id: str
    action: Literal["retry", "clear"]
    result: Literal["retried", "cleared", "unchanged", "rejected"]
    message: str


class PreviewOut(BaseModel):
    """A dry run of Save Changes: what each item would become now; nothing was changed."""

    total: int
    items: list[PreviewItemOut]


class FailureGroupOut(BaseModel):
    group_id: str
    practice_id: str
    error_code: str
    cause: str | None
    message: str = ""  # the Load Error's plain words, once for the group
    fix: str = ""  # what fixes it, once for the group (the Load Error's fix)
    count: int
    amount: str
    first_failed_at: str | None
    last_failed_at: str | None


class FailureGroupPage(BaseModel):
    items: list[FailureGroupOut]


class StatusTotalOut(BaseModel):
    count: int
    amount: str


class PostingSummaryOut(BaseModel):
    """Count and amount per Load Status (every status, zeros included) and in all."""

    practice_id: str | None
    received_from: str | None
    received_to: str | None
    statuses: dict[Literal["PENDING", "LOADED", "FAILED", "RETRYING", "CLEARED", "HELD"], StatusTotalOut]
    total: StatusTotalOut


class NoteOut(BaseModel):
    practice_id: str
    payment_id: str
    notes_count: int
    note: AuditOut


class AssigneeOut(BaseModel):
    practice_id: str
    payment_id: str
    assignee: str | None
    audit: AuditOut


class BucketOut(BaseModel):
    count: int
    amount: str


class TransferOut(BaseModel):
    practice_id: str
    merchant_transfer_id: str
    currency: str | None
    expected: BucketOut
    loaded: BucketOut
    cleared: BucketOut
    failed: BucketOut
    pending: BucketOut
    fees_amount: str
    net_amount: str
    variance: str
    balanced: bool
    not_received: list[str]
    unverified_clears: int = 0  # cleared items whose manual entry the practice's system did not confirm
    settled_at: str | None
    reconciled_at: str | None


class AlertOut(BaseModel):
    alert_id: str
    kind: Literal["task", "patient"]
    practice_id: str
    patient_account_id: str | None
    payment_id: str | None
    state: Literal["open", "escalated", "resolved"]
    opened_at: str
    resolved_at: str | None
    escalated_at: str | None
    title: str | None = None  # (1.1) as the office reads it in its practice-management system
    detail: str | None = None
    # (1.1) where it stands in the practice's system: pending, sent, waiting_for_mapping or not_sent
    delivery: Literal["pending", "sent", "waiting_for_mapping", "not_sent"] | None = None
    delivery_error: str | None = None
    snoozed_until: str | None = None  # not escalated before then
    snooze_reason: str | None = None
    snoozed_by: str | None = None


class AlertPage(BaseModel):
    items: list[AlertOut]


# alerts (1.2): resolved by hand (contract section 10)


class ResolveIn(Body):
    reason: str = Field(min_length=1, max_length=2000, pattern=r"\S")
