"""What follows a posting's outcome: alerts open and resolve, refunds heal, transfers reconcile."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any, Protocol

import structlog

from consumers.posting import Clock, utc_now
from domain.posting import Posting
from domain.reconciliation import Reconciliation
from infra.retry import log_failure
from producers.events import OutcomePublisher, error_body
from schemas.messages import AlertEvent, TransferReconciledEvent, TransferSettled
from schemas.topics import alert_key, reconciled_key

log = structlog.get_logger("paypost.reactions")


class AlertStore(Protocol):
    async def open_task(self, practice_id: str, payment_id: str, account: str | None, at: Any) -> dict[str, Any] | None: ...
    async def open_flag(self, practice_id: str, account: str, payment_id: str, at: Any) -> dict[str, Any] | None: ...
    async def resolve_task(self, practice_id: str, payment_id: str, at: Any) -> dict[str, Any] | None: ...
    async def resolve_flag_if_clear(self, practice_id: str, account: str, at: Any) -> dict[str, Any] | None: ...
    async def due_for_escalation(self, before: Any, limit: int = 500) -> list[dict[str, Any]]: ...
    async def escalate(self, alert_id: str, at: Any) -> dict[str, Any] | None: ...


class TransferStore(Protocol):
    async def settled(self, message: TransferSettled) -> None: ...
    async def get(self, practice_id: str, merchant_transfer_id: str) -> dict[str, Any] | None: ...
    async def reconcile(self, transfer: dict[str, Any]) -> Reconciliation: ...
    async def unreconciled_with_any(self, practice_id: str, posting_ids: list[str]) -> list[dict[str, Any]]: ...
    async def unreconciled(self, limit: int) -> list[dict[str, Any]]: ...
    async def mark_reconciled(self, doc: dict[str, Any], at: Any) -> bool: ...


class RefundHealer(Protocol):
    async def heal_refunds_of(self, practice_id: str, payment_ids: list[str]) -> int: ...

    async def heal_waiting_refunds(self) -> int: ...

    async def replay_stale(self) -> int: ...


class PostingReactions:
    """Called by the posting service and the operations once an outcome is durable."""

    def __init__(self, alerts: AlertStore, transfers: TransferStore, events: OutcomePublisher,
                 escalate_after: float, clock: Clock = utc_now) -> None:
        self._alerts = alerts
        self._transfers = transfers
        self._events = events
        self._escalate_after = escalate_after
        self._clock = clock
        self.healer: RefundHealer | None = None
        self._finished: dict[str, set[str]] = {}
        self._work = asyncio.Event()

    async def failed(self, posting: Posting) -> None:
        now = self._clock()
        practice, account = posting.key.practice_id, posting.patient_account_id
        task = await self._alerts.open_task(practice, posting.key.payment_id, account, now)
        if task:
            await self._alert_event("opened", task, posting)
        if account:
            flag = await self._alerts.open_flag(practice, account, posting.key.payment_id, now)
            if flag:
                await self._alert_event("opened", flag, posting)

    async def finished(self, posting: Posting, had_failed: bool = True) -> None:
        """The posting is LOADED or CLEARED: resolve its alerts now; its refunds and transfers are
        looked at by the next sweep, in one query for every posting finished since the last."""
        practice = posting.key.practice_id
        if had_failed:  # only a posting that failed has alerts to resolve
            now = self._clock()
            task = await self._alerts.resolve_task(practice, posting.key.payment_id, now)
            if task:
                await self._alert_event("resolved", task, posting)
                if posting.patient_account_id:
                    flag = await self._alerts.resolve_flag_if_clear(practice, posting.patient_account_id, now)
                    if flag:
                        await self._alert_event("resolved", flag, posting)
        self._finished.setdefault(practice, set()).add(posting.key.payment_id)
        self._work.set()

    async def sweep(self) -> None:
        """Heal the refunds and reconcile the transfers of every posting finished since the last sweep."""
        finished, self._finished = self._finished, {}
        for practice, ids in finished.items():
            if self.healer is not None:
                await self.healer.heal_refunds_of(practice, sorted(ids))
            for transfer in await self._transfers.unreconciled_with_any(practice, sorted(ids)):
                await self._check_reconciled(transfer)

    async def sweep_all(self) -> None:
        """The slow sweep: catches what another process finished, or a crash left unswept."""
        if self.healer is not None:
            await self.healer.heal_waiting_refunds()
            await self.healer.replay_stale()
        for transfer in await self._transfers.unreconciled(limit=500):
            await self._check_reconciled(transfer)

    async def transfer_settled(self, message: TransferSettled) -> None:
        await self._transfers.settled(message)
        transfer = await self._transfers.get(message.practice_id, message.merchant_transfer_id)
        if transfer is not None and transfer.get("reconciled_at") is None:
            await self._check_reconciled(transfer)

    async def _check_reconciled(self, transfer: dict[str, Any]) -> None:
        result = await self._transfers.reconcile(transfer)
        if not result.balanced or not await self._transfers.mark_reconciled(transfer, self._clock()):
            return
        log.info("transfer_reconciled", practice_id=transfer["practice_id"],
                 merchant_transfer_id=transfer["merchant_transfer_id"], count=result.expected.count)
        await self._events.emit(reconciled_key(transfer["practice_id"]), TransferReconciledEvent(
            event_id=str(uuid.uuid4()), occurred_at=self._clock(), practice_id=transfer["practice_id"],
            event_type="transfer.reconciled", merchant_transfer_id=transfer["merchant_transfer_id"],
            expected_count=result.expected.count, expected_amount=result.expected.amount,
            variance=result.variance,
        ))

    async def _alert_event(self, transition: str, alert: dict[str, Any], posting: Posting | None) -> None:
        await self._events.emit(alert_key(transition, alert["practice_id"], alert["kind"]), AlertEvent(
            event_id=str(uuid.uuid4()), occurred_at=self._clock(), practice_id=alert["practice_id"],
            event_type=f"alert.{transition}",  # type: ignore[arg-type]
            alert_id=alert["alert_id"], kind=alert["kind"], patient_account_id=alert.get("patient_account_id"),
            payment_id=alert.get("payment_id"), state=alert["state"],
            load_status=posting.load_status.value if posting else None,
            load_error=error_body(posting.load_error) if posting else None,
        ))

    async def escalate_due(self) -> int:
        """Escalate every alert open longer than the escalation time; returns how many."""
        now = self._clock()
        escalated = 0
        for alert in await self._alerts.due_for_escalation(now - timedelta(seconds=self._escalate_after)):
            done = await self._alerts.escalate(alert["_id"], now)
            if done:
                escalated += 1
                await self._alert_event("escalated", done, None)
        if escalated:
            log.warning("alerts_escalated", count=escalated)
        return escalated

    async def run_background(self, stop: asyncio.Event, sweep_every: float = 0.2,
                             full_sweep_every: float = 30.0) -> None:
        """Sweeps, full sweeps and escalations, until ``stop`` is set."""
        escalate_every = max(0.2, min(self._escalate_after / 4, 5.0))
        loop = asyncio.get_running_loop()
        next_escalation = next_full = loop.time()
        while not stop.is_set():
            try:
                await self.sweep()
                if loop.time() >= next_full:
                    await self.sweep_all()
                    next_full = loop.time() + full_sweep_every
                if loop.time() >= next_escalation:
                    await self.escalate_due()
                    next_escalation = loop.time() + escalate_every
            except Exception as exc:  # noqa: BLE001 (logged, with its traceback unless an outage)
                log_failure(log, "background_sweep_failed", exc)
            self._work.clear()
            try:
                await asyncio.wait_for(stop.wait(), timeout=sweep_every)
            except TimeoutError:
                pass
        await self.sweep()  # what finished before the stop
