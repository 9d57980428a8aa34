"""Bank deposits and the merchant transfers they carry (contract section 11): matching and aging.

A deposit that names its transfers matches them. Otherwise it is matched by amount and date: one
transfer, or up to ``MAX_PARTS`` together, whose net amounts sum to the deposit's amount within the
practice's tolerance, settled within its window of days before the deposit. More than one way to
explain a deposit is ``ambiguous``: it waits for an operator with its candidates, never guessed.

The search (``candidates``) is a subset sum, bounded three ways so that a practice with hundreds of
open transfers is answered in milliseconds: only the practice's unmatched transfers settled inside
the window take part; amounts are whole cents, sorted, and a branch is cut as soon as the smallest
or largest sum its remaining picks could reach misses the target (prefix and suffix sums); and the
search stops after ``MAX_CANDIDATES`` explanations (two already make it ambiguous) or ``step_budget``
steps, whichever comes first. A search cut short by its budget matches nothing by itself: the
deposit stays unmatched with ``search_cut_short`` and an operator matches it by hand.
"""

from __future__ import annotations

import bisect
import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from paypost.domain.errors import PaypostError

MAX_PARTS = 5
MAX_CANDIDATES = 10
STEP_BUDGET = 200_000
ZERO = Decimal("0.00")
CENT = Decimal("0.01")


class DepositStatus(enum.StrEnum):
    MATCHED = "matched"
    UNMATCHED = "unmatched"
    AMBIGUOUS = "ambiguous"


class DepositError(PaypostError):
    """A match or unmatch that cannot be done; the message says why."""


@dataclass(frozen=True, slots=True)
class ReconciliationSettings:
    """A practice's matching settings: ``amount_tolerance`` either way, a window of ``days``."""

    amount_tolerance: Decimal = ZERO
    days: int = 3


@dataclass(frozen=True, slots=True)
class OpenTransfer:
    """A settled merchant transfer with no deposit yet."""

    merchant_transfer_id: str
    net_amount: Decimal
    settled_at: datetime


@dataclass(frozen=True, slots=True)
class Deposit:
    practice_id: str
    deposit_id: str
    amount: Decimal
    currency: str
    deposited_at: datetime
    named_transfer_ids: tuple[str, ...] = ()
    bank_reference: str | None = None
    status: DepositStatus = DepositStatus.UNMATCHED
    merchant_transfer_ids: tuple[str, ...] = ()
    difference: Decimal | None = None
    candidates: tuple[tuple[str, ...], ...] = ()
    search_cut_short: bool = False
    revision: int = 0  # grows with every change: a match is written only over the revision it read
    unmatched_by_hand: bool = False  # an operator undid its match: only an operator matches it again


@dataclass(frozen=True, slots=True)
class Search:
    """What the amount-and-date search found: each candidate a set of transfer ids, by amount sorted."""

    candidates: list[tuple[str, ...]] = field(default_factory=list)
    cut_short: bool = False
    steps: int = 0


def _cents(amount: Decimal) -> int:
    return int((amount / CENT).to_integral_value())


def in_window(transfer: OpenTransfer, deposited_at: datetime, days: int) -> bool:
    """Settled no later than the deposit (a day's grace for clocks) and within ``days`` before it."""
    return deposited_at - timedelta(days=days) <= transfer.settled_at <= deposited_at + timedelta(days=1)


def candidates(amount: Decimal, deposited_at: datetime, transfers: Sequence[OpenTransfer],
               settings: ReconciliationSettings, *, step_budget: int = STEP_BUDGET) -> Search:
    """Every set of one to ``MAX_PARTS`` of ``transfers`` in the window whose net amounts sum to
    ``amount`` within the tolerance (up to ``MAX_CANDIDATES`` of them)."""
    pool = sorted((t for t in transfers if in_window(t, deposited_at, settings.days)),
                  key=lambda t: (t.net_amount, t.merchant_transfer_id))
    search = _SubsetSum([_cents(t.net_amount) for t in pool], _cents(amount),
                        abs(_cents(settings.amount_tolerance)), step_budget)
    for size in range(1, min(MAX_PARTS, len(pool)) + 1):
        search.walk(0, [], 0, size)
        if search.done:
            break
    found = [tuple(pool[i].merchant_transfer_id for i in picked) for picked in search.found]
    return Search(found, search.cut, search.steps)


class _SubsetSum:
    """Sets of sorted whole-cent ``values`` summing to ``target`` within ``tolerance``, each branch cut
    as soon as the smallest or largest sum its remaining picks could reach misses."""

    def __init__(self, values: list[int], target: int, tolerance: int, budget: int) -> None:
        self.values, self.target, self.tolerance, self.budget = values, target, tolerance, budget
        self.prefix = [0]
        for v in values:
            self.prefix.append(self.prefix[-1] + v)
        self.found: list[tuple[int, ...]] = []
        self.steps = 0
        self.cut = False

    @property
    def done(self) -> bool:
        return self.cut or len(self.found) >= MAX_CANDIDATES

    def _largest(self, r: int) -> int:
        """The sum of the r largest values (an upper bound for any r of them)."""
        n = len(self.values)
        return self.prefix[n] - self.prefix[n - r] if r else 0

    def _last(self, start: int, picked: list[int], total: int, low_target: int, high: int) -> None:
        """The last pick: the values in range are found by bisection, not by a walk."""
        self.steps += 1
        first = bisect.bisect_left(self.values, low_target - total, lo=start)
        for i in range(first, bisect.bisect_right(self.values, high - total, lo=start)):
            self.found.append((*picked, i))
            if self.done:
                return

    def walk(self, start: int, picked: list[int], total: int, r: int) -> None:
        if r == 0:
            if abs(total - self.target) <= self.tolerance:
                self.found.append(tuple(picked))
            return
        high, low_target = self.target + self.tolerance, self.target - self.tolerance
        if r == 1:
            self._last(start, picked, total, low_target, high)
            return
        for i in range(start, len(self.values) - r + 1):
            self.steps += 1
            if self.steps > self.budget:
                self.cut = True
                return
            if total + self.prefix[i + r] - self.prefix[i] > high:
                return  # the r smallest from here already overshoot; later ones start higher
            if total + self.values[i] + self._largest(r - 1) < low_target:
                continue  # even the largest rest cannot reach it
            picked.append(i)
            self.walk(i + 1, picked, total + self.values[i], r - 1)
            picked.pop()
            if self.done:
                return


@dataclass(frozen=True, slots=True)
class Decision:
    """What a deposit's matching decides: its status, its transfers, and the candidates it shows."""

    status: DepositStatus
    merchant_transfer_ids: tuple[str, ...] = ()
    candidates: tuple[tuple[str, ...], ...] = ()
    cut_short: bool = False


def decide(deposit: Deposit, open_transfers: Sequence[OpenTransfer],
           settings: ReconciliationSettings) -> Decision:
    """Match ``deposit`` against its practice's open transfers.

    Named transfers match once every one of them is open (a transfer that has not arrived yet
    leaves the deposit unmatched until it does); otherwise the amount-and-date search decides.
    """
    if deposit.named_transfer_ids:
        open_ids = {t.merchant_transfer_id for t in open_transfers}
        if all(t in open_ids for t in deposit.named_transfer_ids):
            return Decision(DepositStatus.MATCHED, deposit.named_transfer_ids)
        return Decision(DepositStatus.UNMATCHED)
    search = candidates(deposit.amount, deposit.deposited_at, open_transfers, settings)
    if len(search.candidates) == 1 and not search.cut_short:
        return Decision(DepositStatus.MATCHED, search.candidates[0])
    if len(search.candidates) > 1:
        return Decision(DepositStatus.AMBIGUOUS, candidates=tuple(search.candidates), cut_short=search.cut_short)
    return Decision(DepositStatus.UNMATCHED, cut_short=search.cut_short)


def difference(deposit_amount: Decimal, transfers: Sequence[OpenTransfer]) -> Decimal:
    """The deposit less the net amounts of its transfers (within the tolerance when matched by amount)."""
    return (deposit_amount - sum((t.net_amount for t in transfers), ZERO)).quantize(CENT)


# Aging (contract section 11): by whole days since a transfer settled or a deposit arrived.
AGING_BUCKETS = ("0-2", "3-5", "6-10", "over-10")


def aging_bucket(since: datetime, now: datetime) -> str:
    days = max((now - since).days, 0)
    if days <= 2:
        return "0-2"
    if days <= 5:
        return "3-5"
    if days <= 10:
        return "6-10"
    return "over-10"


@dataclass(slots=True)
class AgingBucket:
    count: int = 0
    amount: Decimal = ZERO


def aging(items: Sequence[tuple[datetime, Decimal]], now: datetime) -> dict[str, AgingBucket]:
    """Count and sum ``(since, amount)`` items into the aging buckets, every bucket present."""
    buckets = {name: AgingBucket() for name in AGING_BUCKETS}
    for since, amount in items:
        bucket = buckets[aging_bucket(since, now)]
        bucket.count += 1
        bucket.amount += amount
    return buckets
