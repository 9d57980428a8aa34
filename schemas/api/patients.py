"""``/practices/{practice_id}/ehr-patients``: patients of the built-in ledger and their entries."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class EmptyBody(BaseModel):
    model_config = ConfigDict(extra="ignore")


class PatientOut(BaseModel):
    practice_id: str
    ehr_patient_id: str
    created: bool


class LedgerEntryOut(BaseModel):
    entry_id: str
    payment_id: str
    refund_id: str | None
    kind: str = "payment"  # payment, refund, void, return, chargeback or dispute_won (section 10)
    reversal_id: str | None = None  # a reversal's own id (a refund's is refund_id)
    amount: str
    currency: str
    posted_at: str


class LedgerOut(BaseModel):
    items: list[LedgerEntryOut]
