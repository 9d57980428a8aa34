"""Messages of contract sections 1.1 (payments), 1.2 (commands) and 1.3 (events), version 1."""

from __future__ import annotations

import enum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

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


def _more_than_zero(amount: object, what: str) -> object:
    from decimal import Decimal

    if isinstance(amount, Decimal) and amount <= 0:
        raise ValueError(f"{what} must be greater than 0")
    return amount


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
        return _more_than_zero(amount, "a refund's amount")


# 1.1 paypost.payments, version 1.2: money that moves back (contract section 10)


class PaymentVoided(WireModel):
    """``payment.voided``: the payment is undone before it settled; what is left of it is reversed."""

    event_id: Identifier
    practice_id: PracticeId
    void_id: Identifier
    payment_id: Identifier
    occurred_at: Timestamp
    memo: Memo | None = Field(default=None, max_length=2000)


ReturnCode = Annotated[str, StringConstraints(min_length=1, max_length=16, pattern=r"^[^\x00-\x1f\x7f]+$")]
"""A bank's return code: ``R01`` … ``R99`` for ACH, free text up to 16 characters otherwise."""


class PaymentReturned(WireModel):
    """``payment.returned``: the bank returned the money (ACH, check)."""

    event_id: Identifier
    practice_id: PracticeId
    return_id: Identifier
    payment_id: Identifier
    amount: Money
    currency: Currency
    return_code: ReturnCode
    occurred_at: Timestamp
    fee_amount: Money | None = None
    memo: Memo | None = Field(default=None, max_length=2000)

    @field_validator("amount")
    @classmethod
    def _positive(cls, amount: object) -> object:
        return _more_than_zero(amount, "a return's amount")

    @field_validator("fee_amount")
    @classmethod
    def _fee_not_negative(cls, fee: object) -> object:
        from decimal import Decimal

        if isinstance(fee, Decimal) and fee < 0:
            raise ValueError("a fee may not be negative")
        return fee


class PaymentDisputed(WireModel):
    """``payment.disputed``: a chargeback; the amount is taken from the practice."""

    event_id: Identifier
    practice_id: PracticeId
    dispute_id: Identifier
    payment_id: Identifier
    amount: Money
    currency: Currency
    reason: str = Field(min_length=1, max_length=200)
    occurred_at: Timestamp

    @field_validator("amount")
    @classmethod
    def _positive(cls, amount: object) -> object:
        return _more_than_zero(amount, "a dispute's amount")


class DisputeOutcome(enum.StrEnum):
    WON = "won"
    LOST = "lost"


class DisputeClosed(WireModel):
    """``dispute.closed``: won gives the disputed amount back to the practice; lost leaves it taken."""

    event_id: Identifier
    practice_id: PracticeId
    dispute_id: Identifier
    outcome: DisputeOutcome
    occurred_at: Timestamp


class TransferSettled(WireModel):
    """``transfer.settled``: a merchant transfer and the payments and refunds it carries."""

    event_id: Identifier
    practice_id: PracticeId
    merchant_transfer_id: Identifier
    payment_ids: list[Identifier]
    refund_ids: list[Identifier] = Field(default_factory=list)
    # (1.2) returns and chargebacks deducted from this transfer: expected negative items
    reversal_ids: list[Identifier] = Field(default_factory=list)
    gross_amount: Money
    fees_amount: Money
    net_amount: Money
    currency: Currency
    settled_at: Timestamp


class DepositReceived(WireModel):
    """``deposit.received`` (section 11): a deposit the bank shows, to be matched to merchant transfers."""

    event_id: Identifier
    practice_id: PracticeId
    deposit_id: Identifier
    amount: Money
    currency: Currency
    deposited_at: Timestamp
    merchant_transfer_ids: list[Identifier] | None = Field(default=None, max_length=100)
    bank_reference: str | None = Field(default=None, max_length=200)


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
    """``posting.loaded|failed|retried|cleared|held.*``: a posting's outcome, operator action, or wait;
    ``payment.reversed.<practice_id>.<kind>`` (1.2): a void, return or chargeback loaded."""

    event_type: Literal["posting.loaded", "posting.failed", "posting.retried", "posting.cleared", "posting.held",
                        "payment.reversed"]
    payment_id: str  # an unreadable row's is its message's id, which no pattern of ours bounds
    kind: PostingKindName  # payment, refund, void, return, chargeback, dispute_won or unreadable
    refunded_payment_id: str | None = None  # a refund's payment
    reversed_payment_id: str | None = None  # (1.2) a void's, return's or chargeback's payment
    dispute_id: str | None = None  # (1.2) a won dispute's chargeback
    return_code: str | None = None  # (1.2) a return's bank code
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


class DepositMatchedEvent(PaypostEvent):
    """``deposit.matched.<practice_id>`` (section 11): a deposit was matched to its transfers."""

    event_type: Literal["deposit.matched"]
    deposit_id: str
    amount: Money
    merchant_transfer_ids: list[str]
    difference: Money
    matched_by: str  # "named", "amount" or the operator who matched it by hand


INBOUND_MESSAGES: dict[str, type[WireModel]] = {
    "payment.posted": PaymentPosted,
    "payment.refunded": PaymentRefunded,
    "payment.voided": PaymentVoided,
    "payment.returned": PaymentReturned,
    "payment.disputed": PaymentDisputed,
    "dispute.closed": DisputeClosed,
    "transfer.settled": TransferSettled,
    "deposit.received": DepositReceived,
    "patient.mapping.updated": PatientMappingUpdated,
    "posting.retry": PostingRetry,
    "posting.clear": PostingClear,
}
