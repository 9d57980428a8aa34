"""``/postings``: the Merchant Transfers report's rows, one posting's detail, and the totals per Load Status."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


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
    reversed_payment_id: str | None = None  # the payment a void, return or chargeback reverses (section 10)
    dispute_id: str | None = None  # a won dispute's chargeback
    return_code: str | None = None  # a return's bank code
    fee_amount: str | None = None  # a return's fee to charge
    load_status: str
    load_error: LoadErrorOut | None
    attempts_count: int
    clear_verified: bool | None = None  # a clear's manual reference found in the practice's system
    assignee: str | None = None  # who is looking at it (contract section 8)
    notes_count: int = 0
    late_for_closed_period: bool = False  # it arrived after its month was closed (contract section 11)
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
    """A refund or reversal of a payment, or a won dispute of one of its chargebacks (section 10)."""

    payment_id: str
    kind: str
    amount: str | None
    currency: str | None
    load_status: str


class PostingDetail(PostingRow):
    attempts: list[AttemptOut]
    audit: list[AuditOut]
    load_error_history: list[LoadErrorOut]
    # a payment's: what took money back from it, and what is left of it once that is counted
    taken_back: list[TakenBackOut] | None = None
    left: str | None = None


class PostingPage(BaseModel):
    items: list[PostingRow]
    next_cursor: str | None


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
