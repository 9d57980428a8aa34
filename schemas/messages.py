"""Messages of contract sections 1.1 (payments), 1.2 (commands) and 1.3 (events), version 1."""

from __future__ import annotations

import enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from paypost.schemas.types import (
    Currency,
    Identifier,
    LoadErrorCodeName,
    LoadStatusName,
    Money,
    PostingKindName,
    PracticeId,
    Timestamp,
)


class WireModel(BaseModel):
    """Base of every message: strict types (no number for a string), unknown fields ignored."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class PaymentMethod(enum.StrEnum):
    CARD = "card"
    ACH = "ach"
    CASH = "cash"
    CHECK = "check"
    HSA = "hsa"
    FSA = "fsa"
    OTHER = "other"


Memo = str


# 1.1 paypost.payments: upstream publishes


class PaymentPosted(WireModel):
    """``payment.posted``: a payment the platform has posted, to be loaded into the ledger."""

    event_id: Identifier
    practice_id: PracticeId
    payment_id: Identifier
    patient_account_id: Identifier
    ehr_patient_id: Identifier | None = None
    amount: Money
    currency: Currency
    method: PaymentMethod
    occurred_at: Timestamp
    merchant_transfer_id: Identifier | None = None
    memo: Memo | None = Field(default=None, max_length=2000)


class PaymentRefunded(WireModel):
    """``payment.refunded``: posted to the ledger as a negative entry against the original payment."""

    event_id: Identifier
    practice_id: PracticeId
    refund_id: Identifier
    payment_id: Identifier
    amount: Money
    currency: Currency
    occurred_at: Timestamp
    memo: Memo | None = Field(default=None, max_length=2000)

    @field_validator("amount")
    @classmethod
    def _positive(cls, amount: object) -> object:
        from decimal import Decimal

        if isinstance(amount, Decimal) and amount <= 0:
            raise ValueError("a refund's amount must be greater than 0")
        return amount


class TransferSettled(WireModel):
    """``transfer.settled``: a merchant transfer and the payments and refunds it carries."""

    event_id: Identifier
    practice_id: PracticeId
    merchant_transfer_id: Identifier
    payment_ids: list[Identifier]
    refund_ids: list[Identifier] = Field(default_factory=list)
    gross_amount: Money
    fees_amount: Money
    net_amount: Money
    currency: Currency
    settled_at: Timestamp


class PatientMappingUpdated(WireModel):
    """``patient.mapping.updated``: the practice-management id of a patient account."""

    event_id: Identifier
    practice_id: PracticeId
    patient_account_id: Identifier
    ehr_patient_id: Identifier


# 1.2 paypost.commands: operator commands


class PostingRetry(WireModel):
    """``posting.retry``: send failed payments back through loading."""

    command_id: Identifier
    operation_id: Identifier | None = None
    practice_id: PracticeId
    payment_ids: list[Identifier] = Field(min_length=1)
    operator: str = Field(min_length=1, max_length=200)
    requested_at: Timestamp


class ClearItem(WireModel):
    """One payment to clear. An empty reason is readable here and rejected per item (section 1.2)."""

    payment_id: Identifier
    reason: str = Field(default="", max_length=2000)
    manual_reference: str | None = Field(default=None, max_length=200)


class PostingClear(WireModel):
    """``posting.clear``: mark failed payments reviewed and posted by hand."""

    command_id: Identifier
    operation_id: Identifier | None = None
    practice_id: PracticeId
    items: list[ClearItem] = Field(min_length=1)
    operator: str = Field(min_length=1, max_length=200)
    requested_at: Timestamp


# 1.3 paypost.events: paypost publishes, dashboards subscribe


class LoadErrorBody(WireModel):
    """A Load Error: code, plain-language message (the code's own words in an event), and what fixes it."""

    code: LoadErrorCodeName
    message: str
    fix: str


class PaypostEvent(WireModel):
    """Fields every event on ``paypost.events`` carries. No patient identifier or detail, ever
    (contract section 12): not the patient account id, not the practice-management id."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)

    event_id: str
    occurred_at: Timestamp
    practice_id: PracticeId


class PostingEvent(PaypostEvent):
    """``posting.loaded|failed|retried|cleared|held.*``: a posting's outcome, operator action, or wait."""

    event_type: Literal["posting.loaded", "posting.failed", "posting.retried", "posting.cleared", "posting.held"]
    payment_id: str  # an unreadable row's is its message's id, which no pattern of ours bounds
    kind: PostingKindName
    load_status: LoadStatusName
    load_error: LoadErrorBody | None = None
    merchant_transfer_id: Identifier | None = None
    amount: Money | None = None
    currency: Currency | None = None
    actor: str | None = None
    reason: str | None = None


class AlertEvent(PaypostEvent):
    """``alert.opened|resolved|escalated.<practice_id>.<task|patient>``."""

    event_type: Literal["alert.opened", "alert.resolved", "alert.escalated"]
    alert_id: str
    kind: Literal["task", "patient"]
    payment_id: str | None = None  # as PostingEvent's
    load_status: LoadStatusName | None = None
    load_error: LoadErrorBody | None = None
    state: Literal["open", "escalated", "resolved"]


class TransferReconciledEvent(PaypostEvent):
    """``transfer.reconciled.<practice_id>``: every item is loaded or cleared and amounts balance."""

    event_type: Literal["transfer.reconciled"]
    merchant_transfer_id: Identifier
    expected_count: int = Field(ge=0)
    expected_amount: Money
    variance: Money


INBOUND_MESSAGES: dict[str, type[WireModel]] = {
    "payment.posted": PaymentPosted,
    "payment.refunded": PaymentRefunded,
    "transfer.settled": TransferSettled,
    "patient.mapping.updated": PatientMappingUpdated,
    "posting.retry": PostingRetry,
    "posting.clear": PostingClear,
}
