"""Reconciliation of a merchant transfer: what it should carry against what loaded."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from paypost.domain.model import LoadStatus

ZERO = Decimal("0.00")


@dataclass(frozen=True, slots=True)
class Item:
    """A posting the transfer carries: its id, whether it takes money out (a refund, a return, a
    chargeback), its status and amount as published."""

    posting_id: str
    is_refund: bool
    load_status: LoadStatus | None  # None: not received yet
    amount: Decimal | None
    clear_verified: bool | None = None  # a CLEARED item: its manual entry found in the system?

    @property
    def signed_amount(self) -> Decimal:
        """A refund or a reversal takes money out of the transfer."""
        if self.amount is None:
            return ZERO
        return -self.amount if self.is_refund else self.amount


@dataclass(slots=True)
class Bucket:
    count: int = 0
    amount: Decimal = ZERO

    def add(self, item: Item) -> None:
        self.count += 1
        self.amount += item.signed_amount


@dataclass(frozen=True, slots=True)
class Reconciliation:
    expected: Bucket
    loaded: Bucket
    cleared: Bucket
    failed: Bucket
    pending: Bucket
    fees_amount: Decimal
    net_amount: Decimal
    variance: Decimal
    balanced: bool
    missing: list[str] = field(default_factory=list)
    unverified_clears: int = 0  # cleared items whose manual entry the system did not confirm


_BUCKET = {
    LoadStatus.LOADED: "loaded",
    LoadStatus.CLEARED: "cleared",
    LoadStatus.FAILED: "failed",
    LoadStatus.PENDING: "pending",
    LoadStatus.RETRYING: "pending",
    LoadStatus.HELD: "pending",
}


def reconcile(items: Sequence[Item], gross_amount: Decimal, fees_amount: Decimal,
              net_amount: Decimal) -> Reconciliation:
    """Balanced when every item is loaded or cleared, and what loaded or was cleared adds up to the
    transfer's gross amount, whose fees and net agree with it."""
    buckets = {name: Bucket() for name in ("loaded", "cleared", "failed", "pending")}
    missing = []
    for item in items:
        if item.load_status is None:
            missing.append(item.posting_id)
            buckets["pending"].count += 1
            continue
        buckets[_BUCKET[item.load_status]].add(item)
    posted = buckets["loaded"].amount + buckets["cleared"].amount
    variance = gross_amount - posted
    balanced = (
        buckets["failed"].count == 0
        and buckets["pending"].count == 0
        and variance == 0
        and gross_amount - fees_amount == net_amount
    )
    return Reconciliation(
        expected=Bucket(len(items), gross_amount), loaded=buckets["loaded"], cleared=buckets["cleared"],
        failed=buckets["failed"], pending=buckets["pending"], fees_amount=fees_amount, net_amount=net_amount,
        variance=variance, balanced=balanced, missing=missing,
        unverified_clears=sum(1 for i in items if i.load_status is LoadStatus.CLEARED and i.clear_verified is not True),
    )


def expected_items(payment_ids: Iterable[str], refund_ids: Iterable[str],
                   reversal_ids: Iterable[str] = ()) -> list[tuple[str, bool]]:
    """The transfer's items, each with whether it takes money out: its refunds and (1.2) the returns
    and chargebacks deducted from it are expected negative items."""
    ids = [(p, False) for p in dict.fromkeys(payment_ids)]
    return ids + [(r, True) for r in dict.fromkeys([*refund_ids, *reversal_ids])]
