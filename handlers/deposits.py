"""Deposits (contract section 11): each matched to the merchant transfers it carries, or left for an
operator with its candidates; a transfer that arrives after its deposit matches then."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal

import structlog

from paypost.domain.deposits import (
    AgingBucket,
    Decision,
    Deposit,
    DepositError,
    DepositStatus,
    OpenTransfer,
    ReconciliationSettings,
    aging,
    decide,
    difference,
)
from paypost.domain.ports import Record
from paypost.domain.ports.deposits import DepositStore, PeriodSettings
from paypost.domain.posting import PAYPOST_ACTOR, AuditEntry
from paypost.handlers.clock import Clock, utc_now
from paypost.handlers.practices import NotFound
from paypost.producers.events import OutcomePublisher
from paypost.schemas.messages import DepositMatchedEvent, DepositReceived, TransferSettled
from paypost.schemas.topics import deposit_matched_key

log = structlog.get_logger("paypost.deposits")

ATTEMPTS = 5  # a decision written over a revision another worker moved is decided again, this often
BACKOFF = 0.05  # seconds, times the attempt: a concurrent transaction commits meanwhile


def deposit_from_message(message: DepositReceived) -> Deposit:
    return Deposit(practice_id=message.practice_id, deposit_id=message.deposit_id, amount=message.amount,
                   currency=message.currency, deposited_at=message.deposited_at,
                   named_transfer_ids=tuple(dict.fromkeys(message.merchant_transfer_ids or ())),
                   bank_reference=message.bank_reference)


class Deposits:
    def __init__(self, store: DepositStore, settings: PeriodSettings, events: OutcomePublisher,
                 clock: Clock = utc_now) -> None:
        self._store = store
        self._settings = settings
        self._events = events
        self._clock = clock

    async def received(self, message: DepositReceived) -> Deposit | None:
        """Keep a deposit and match it; a deposit received again is matched again if it still waits."""
        await self._store.received(deposit_from_message(message), self._clock())
        return await self.match(message.practice_id, message.deposit_id)

    async def transfer_settled(self, message: TransferSettled) -> None:
        """A transfer arrived: the deposits it may belong to (received up to the window after it) try again."""
        _, settings = await self._settings.settings_of(message.practice_id)
        for deposit in await self._store.waiting(message.practice_id, message.settled_at - timedelta(days=1),
                                                 message.settled_at + timedelta(days=settings.days)):
            await self.match(deposit.practice_id, deposit.deposit_id)

    async def match(self, practice_id: str, deposit_id: str) -> Deposit | None:
        """Decide a waiting deposit, over the revision read; a concurrent decision wins, and is kept."""
        _, settings = await self._settings.settings_of(practice_id)
        for attempt in range(ATTEMPTS):
            if attempt:
                await asyncio.sleep(BACKOFF * attempt)
            deposit = await self._store.get(practice_id, deposit_id)
            if deposit is None or deposit.status is DepositStatus.MATCHED or deposit.unmatched_by_hand:
                return deposit  # matched, or unmatched by an operator: not decided again by itself
            open_transfers = await self._window(deposit, settings)
            decision = decide(deposit, open_transfers, settings)
            if _unchanged(deposit, decision):
                return deposit
            chosen = [t for t in open_transfers if t.merchant_transfer_id in decision.merchant_transfer_ids]
            diff = difference(deposit.amount, chosen) if decision.status is DepositStatus.MATCHED else None
            how = "named" if deposit.named_transfer_ids else "amount"
            audit = AuditEntry(self._clock(), PAYPOST_ACTOR, f"{decision.status.value}",
                               detail=_decision_detail(decision, how))
            if await self._store.decide(deposit, decision, diff, audit, self._clock()):
                if decision.status is DepositStatus.MATCHED:
                    await self._announce(deposit, decision.merchant_transfer_ids, diff or Decimal("0.00"), how)
                return await self._store.get(practice_id, deposit_id)
        return await self._store.get(practice_id, deposit_id)

    async def _window(self, deposit: Deposit, settings: ReconciliationSettings) -> list[OpenTransfer]:
        if deposit.named_transfer_ids:
            return await self._store.open_transfers(deposit.practice_id)
        return await self._store.open_transfers(deposit.practice_id,
                                                deposit.deposited_at - timedelta(days=settings.days),
                                                deposit.deposited_at + timedelta(days=1))

    async def match_by_hand(self, practice_id: str, deposit_id: str, transfer_ids: Sequence[str], reason: str,
                            actor: str) -> Deposit:
        """An operator matches a deposit to transfers that no other deposit holds."""
        deposit = await self._found(practice_id, deposit_id)
        if deposit.status is DepositStatus.MATCHED:
            raise DepositError(f"Deposit {deposit_id} is matched already: unmatch it first.")
        wanted = list(dict.fromkeys(transfer_ids))
        open_by_id = {t.merchant_transfer_id: t for t in await self._store.open_transfers(practice_id)}
        missing = [t for t in wanted if t not in open_by_id]
        if missing:
            raise DepositError("Not settled, or held by another deposit: " + ", ".join(missing[:10]) + ".")
        decision = Decision(DepositStatus.MATCHED, tuple(wanted))
        diff = difference(deposit.amount, [open_by_id[t] for t in wanted])
        audit = AuditEntry(self._clock(), actor, "match", reason=reason,
                           detail=f"matched by hand to {', '.join(wanted)}; difference {diff}")
        if not await self._store.decide(deposit, decision, diff, audit, self._clock()):
            raise DepositError(f"Deposit {deposit_id} changed while it was being matched: look again.")
        await self._announce(deposit, decision.merchant_transfer_ids, diff, actor)
        return await self._found(practice_id, deposit_id)

    async def unmatch(self, practice_id: str, deposit_id: str, reason: str, actor: str) -> Deposit:
        """An operator undoes a match: the transfers are open again, the deposit waits for a match by hand."""
        deposit = await self._found(practice_id, deposit_id)
        if deposit.status is not DepositStatus.MATCHED:
            raise DepositError(f"Deposit {deposit_id} is not matched.")
        audit = AuditEntry(self._clock(), actor, "unmatch", reason=reason,
                           detail=f"released {', '.join(deposit.merchant_transfer_ids)}")
        if not await self._store.unmatch(deposit, audit, self._clock()):
            raise DepositError(f"Deposit {deposit_id} changed while it was being unmatched: look again.")
        return await self._found(practice_id, deposit_id)

    async def listed(self, practice_id: str, status: DepositStatus | None, limit: int = 500) -> list[Deposit]:
        return await self._store.listed(practice_id, status, limit)

    async def audit(self, practice_id: str, deposit_id: str) -> list[Record]:
        await self._found(practice_id, deposit_id)
        return await self._store.audit_of(practice_id, deposit_id)

    async def aging(self, practice_id: str) -> tuple[dict[str, AgingBucket], dict[str, AgingBucket]]:
        """(transfers without a deposit, deposits without a transfer), by age bucket."""
        transfers, deposits = await self._store.aging(practice_id)
        now = self._clock()
        return aging(transfers, now), aging(deposits, now)

    async def _found(self, practice_id: str, deposit_id: str) -> Deposit:
        deposit = await self._store.get(practice_id, deposit_id)
        if deposit is None:
            raise NotFound(f"Deposit {deposit_id} of practice {practice_id} is not known.")
        return deposit

    async def _announce(self, deposit: Deposit, transfer_ids: Sequence[str], diff: Decimal, by: str) -> None:
        log.info("deposit_matched", practice_id=deposit.practice_id, deposit_id=deposit.deposit_id,
                 transfers=len(transfer_ids))
        await self._events.emit(deposit_matched_key(deposit.practice_id), DepositMatchedEvent(
            event_id=str(uuid.uuid4()), occurred_at=self._clock(), practice_id=deposit.practice_id,
            event_type="deposit.matched", deposit_id=deposit.deposit_id, amount=deposit.amount,
            merchant_transfer_ids=list(transfer_ids), difference=diff, matched_by=by))


def _unchanged(deposit: Deposit, decision: Decision) -> bool:
    return (decision.status is deposit.status and decision.candidates == deposit.candidates
            and decision.cut_short == deposit.search_cut_short and decision.status is not DepositStatus.MATCHED)


def _decision_detail(decision: Decision, how: str) -> str:
    if decision.status is DepositStatus.MATCHED:
        return f"matched by {how} to {', '.join(decision.merchant_transfer_ids)}"
    if decision.status is DepositStatus.AMBIGUOUS:
        return f"{len(decision.candidates)} ways to explain it: waits for an operator"
    return "no transfer explains it yet" + (" (search cut short at its budget)" if decision.cut_short else "")
