"""What follows a posting's outcome: alerts open and resolve, refunds heal, transfers reconcile."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

import structlog

from paypost.domain.alerts import Alert, flag_opens
from paypost.domain.events import PostingCleared, PostingFailed, PostingLoaded
from paypost.domain.ports.alerts import AlertStore
from paypost.domain.ports.transfers import TransferStore
from paypost.domain.posting import Posting
from paypost.domain.transfers import SettledTransfer
from paypost.handlers.clock import Clock, utc_now
from paypost.handlers.operations import PostingOperations
from paypost.producers.events import OutcomePublisher
from paypost.schemas.messages import TransferReconciledEvent, TransferSettled
from paypost.schemas.topics import reconciled_key

log = structlog.get_logger("paypost.reactions")


def settled_transfer(message: TransferSettled) -> SettledTransfer:
    return SettledTransfer(
        practice_id=message.practice_id, merchant_transfer_id=message.merchant_transfer_id,
        payment_ids=tuple(message.payment_ids), refund_ids=tuple(message.refund_ids),
        gross_amount=message.gross_amount, fees_amount=message.fees_amount, net_amount=message.net_amount,
        currency=message.currency, settled_at=message.settled_at, event_id=message.event_id,
        reversal_ids=tuple(message.reversal_ids),
    )


SWEEP_BATCH = 100  # the sweep of what just finished runs at once once this many wait for it

class PostingReactions:
    """Subscribed to the outcomes of postings: opens and resolves their alerts at once, and heals
    refunds and reconciles transfers in a sweep shortly after."""

    def __init__(self, alerts: AlertStore, transfers: TransferStore, events: OutcomePublisher,
                 healer: PostingOperations, escalate_after: float, clock: Clock = utc_now,
                 mapping_sweep: Callable[[], Awaitable[int]] | None = None, sweep_batch: int = SWEEP_BATCH,
                 alerts_changed: Callable[[], None] | None = None,
                 sends_to: Callable[[str], Awaitable[bool]] | None = None) -> None:
        self._alerts = alerts
        self._mapping_sweep = mapping_sweep  # Healing.sweep: mapping failures a cut-short heal left
        self._transfers = transfers
        self._events = events
        self._healer = healer
        self._escalate_after = escalate_after
        self._clock = clock
        self._finished: dict[str, set[str]] = {}
        self._unswept = 0
        self._unswept_since: float | None = None  # the loop's time the first unswept posting finished
        # Set when the sweep has work: the first posting finished since the last sweep, and each
        # ``sweep_batch`` more (the sweep loop sleeps until then, not on a timer).
        self.work = asyncio.Event()
        self.sweep_batch = sweep_batch
        self._alerts_changed = alerts_changed  # their delivery to the practices' systems goes now
        self._sends_to = sends_to  # AlertDelivery.sends_to: whether a practice's alerts go to a system

    async def failed(self, event: PostingFailed) -> None:
        """Open the posting's office task and its patient's flag (each once, however often asked)."""
        posting, now = event.posting, self._clock()
        sent = await self._sent(posting.key.practice_id)
        task = await self._alerts.open_task(posting, now, sent)
        if task:
            await self._alert_event("opened", task, posting)
        if flag_opens(posting):
            flag = await self._alerts.open_flag(posting, now, sent)
            if flag:
                await self._alert_event("opened", flag, posting)

    async def loaded(self, event: PostingLoaded) -> None:
        await self._finished_now(event.posting, had_failed=event.had_failed)

    async def cleared(self, event: PostingCleared) -> None:
        await self._finished_now(event.posting, had_failed=True)

    async def _finished_now(self, posting: Posting, had_failed: bool) -> None:
        """The posting is LOADED or CLEARED: resolve its alerts now; its refunds and transfers are
        looked at by the next sweep, in one query for every posting finished since the last."""
        practice = posting.key.practice_id
        if had_failed:  # only a posting that failed has alerts to resolve
            now, sent = self._clock(), await self._sent(practice)
            task = await self._alerts.resolve_task(posting.key, now, sent)
            if task:
                await self._alert_event("resolved", task, posting)
                if posting.patient_account_id:
                    flag = await self._alerts.resolve_flag_if_clear(practice, posting.patient_account_id, now, sent)
                    if flag:
                        await self._alert_event("resolved", flag, posting)
        self._finished.setdefault(practice, set()).add(posting.key.payment_id)
        self._unswept += 1
        if self._unswept_since is None:
            self._unswept_since = asyncio.get_running_loop().time()
        if self._unswept == 1 or self._unswept % self.sweep_batch == 0:
            self.work.set()

    async def _sent(self, practice_id: str) -> bool:
        return self._sends_to is None or await self._sends_to(practice_id)

    def unswept(self) -> int:
        """How many finished postings the next sweep looks at."""
        return self._unswept

    def unswept_since(self) -> float | None:
        """When (the event loop's clock) the first posting the next sweep looks at finished; None: none."""
        return self._unswept_since

    async def sweep(self) -> None:
        """Heal the refunds and reconcile the transfers of every posting finished since the last sweep."""
        finished, self._finished = self._finished, {}
        self._unswept, self._unswept_since = 0, None
        for practice, ids in finished.items():
            await self._healer.heal_refunds_of(practice, sorted(ids))
            for transfer in await self._transfers.unreconciled_with_any(practice, sorted(ids)):
                await self._check_reconciled(transfer)

    async def sweep_all(self, mappings: bool = True) -> None:
        """The slow sweep: catches what another process finished, or a crash left unswept.

        ``mappings``: with the page of mapping failures whose account has a mapping by now (a heal cut
        short); its rhythm is slower than the rest's (``paypost.runtime.run_sweeps``), since it reads a
        page of failures each time, however few of them a mapping could heal."""
        await self._healer.heal_waiting_refunds()
        await self._healer.replay_stale()
        if mappings and self._mapping_sweep is not None:
            await self._mapping_sweep()
        for transfer in await self._transfers.unreconciled(limit=500):
            await self._check_reconciled(transfer)

    async def transfer_settled(self, message: TransferSettled) -> None:
        settled = settled_transfer(message)
        await self._transfers.settled(settled)
        transfer = await self._transfers.get(settled.practice_id, settled.merchant_transfer_id)
        if transfer is not None and transfer.reconciled_at is None:
            await self._check_reconciled(transfer)

    async def _check_reconciled(self, transfer: SettledTransfer) -> None:
        result = await self._transfers.reconcile(transfer)
        if not result.balanced or not await self._transfers.mark_reconciled(transfer, self._clock()):
            return
        log.info("transfer_reconciled", practice_id=transfer.practice_id,
                 merchant_transfer_id=transfer.merchant_transfer_id, count=result.expected.count)
        await self._events.emit(reconciled_key(transfer.practice_id), TransferReconciledEvent(
            event_id=str(uuid.uuid4()), occurred_at=self._clock(), practice_id=transfer.practice_id,
            event_type="transfer.reconciled", merchant_transfer_id=transfer.merchant_transfer_id,
            expected_count=result.expected.count, expected_amount=result.expected.amount,
            variance=result.variance,
        ))

    async def _alert_event(self, transition: str, alert: Alert, posting: Posting | None) -> None:
        await self._events.alert(transition, alert, posting)

    async def escalate_due(self) -> int:
        """Escalate every alert open longer than the escalation time; returns how many."""
        now = self._clock()
        escalated = 0
        for alert in await self._alerts.due_for_escalation(now - timedelta(seconds=self._escalate_after), now=now):
            done = await self._alerts.escalate(alert.alert_id, now, await self._sent(alert.practice_id))
            if done:
                escalated += 1
                await self._alert_event("escalated", done, None)
        if escalated:
            log.warning("alerts_escalated", count=escalated)
            if self._alerts_changed is not None:
                self._alerts_changed()
        return escalated
