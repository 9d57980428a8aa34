"""``/transfers``: a merchant transfer's reconciliation."""

from __future__ import annotations

from pydantic import BaseModel


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
