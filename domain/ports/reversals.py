"""Money that moves back (contract section 10): what refunds and reversals took from each payment,
and the office tasks and patient flags of loaded reversals."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Protocol

from paypost.domain.alerts import Alert, AlertKind
from paypost.domain.posting import Posting, PostingKey


class PaymentBalances(Protocol):
    """What refunds and reversals took back from each payment, counted with one conditional write
    on the payment, so that two of them at once never both pass when together they take back more
    than the payment (``paypost.domain.reversals.may_take``)."""

    async def take(self, payment: PostingKey, posting_id: str, amount: Decimal | None) -> Decimal | None:
        """Count ``amount`` (None: all that is left, a void) of refund or reversal ``posting_id``
        against its LOADED payment: the amount counted (as counted before, if it was), or None if it
        would take back more than is left. A negative amount (a won dispute) gives back."""

    async def give_back(self, payment: PostingKey, posting_id: str) -> None:
        """Undo ``posting_id``'s count (its load failed); nothing if it is not counted."""

    async def taken(self, payment: PostingKey) -> tuple[Decimal, list[tuple[str, Decimal]]] | None:
        """The payment's amount and what is counted against it, by posting; None without the payment."""


class ReversalAlertStore(Protocol):
    """The office tasks and patient flags of loaded reversals: opened once each, resolved by hand or
    by a won dispute, never by a later load (contract section 10)."""

    async def open(self, kind: AlertKind, posting: Posting, title: str, detail: str, at: datetime) -> Alert | None:
        """Open the reversal's task or flag; None if it was opened before."""

    async def resolve_of(self, practice_id: str, reversal_id: str, at: datetime, reason: str) -> list[Alert]:
        """Resolve the reversal's open alerts (its dispute was won); those this call resolved."""

    async def resolve_by_hand(self, alert_id: str, reason: str, by: str, at: datetime) -> Alert | None:
        """An operator resolves an open alert, recorded in its posting's audit trail; None if it was not open."""
