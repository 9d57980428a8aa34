"""What follows a posting's outcome: alerts open and resolve, refunds heal, transfers reconcile."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any, Protocol

import structlog

from consumers.posting import Clock, utc_now
from domain.model import PostingKind
from domain.posting import Posting
from domain.reconciliation import Reconciliation
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
    async def unreconciled_with(self, practice_id: str, posting_id: str) -> list[dict[str, Any]]: ...
    async def mark_reconciled(self, doc: dict[str, Any], at: Any) -> bool: ...


class RefundHealer(Protocol):
    async def heal_refunds(self, practice_id: str, payment_id: str) -> int: ...


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

    async def finished(self, posting: Posting) -> None:
        """The posting is LOADED or CLEARED: resolve its alerts, heal its refunds, reconcile its transfers."""
        now = self._clock()
        practice = posting.key.practice_id
        task = await self._alerts.resolve_task(practice, posting.key.payment_id, now)
        if task:
            await self._alert_event("resolved", task, posting)
            if posting.patient_account_id:
                flag = await self._alerts.resolve_flag_if_clear(practice, posting.patient_account_id, now)
                if flag:
                    await self._alert_event("resolved", flag, posting)
        if self.healer is not None and posting.kind is PostingKind.PAYMENT:
            await self.healer.heal_refunds(practice, posting.key.payment_id)
        for transfer in await self._transfers.unreconciled_with(practice, posting.key.payment_id):
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

    async def run_escalations(self, stop: asyncio.Event) -> None:
        """Check for alerts to escalate until ``stop`` is set."""
        interval = max(0.2, min(self._escalate_after / 4, 5.0))
        while not stop.is_set():
            try:
                await self.escalate_due()
            except Exception:  # noqa: BLE001 - the loop must outlive a database hiccup
                log.exception("escalation_check_failed")
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
            except TimeoutError:
                pass
