"""A settled merchant transfer: what the payments platform says it carries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class SettledTransfer:
    practice_id: str
    merchant_transfer_id: str
    payment_ids: tuple[str, ...]
    refund_ids: tuple[str, ...]
    gross_amount: Decimal
    fees_amount: Decimal
    net_amount: Decimal
    currency: str
    settled_at: datetime
    event_id: str
    reconciled_at: datetime | None = None
    # (1.2) returns and chargebacks deducted from the transfer: expected negative items
    reversal_ids: tuple[str, ...] = ()
