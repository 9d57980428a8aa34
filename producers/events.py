"""Outcome events on ``paypost.events`` for dashboards (contract section 1.3).

Dashboards are not the office: an event names no patient (no patient account id, no
practice-management id, no text from the practice's system; contract section 12)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import structlog

from paypost.domain.alerts import Alert
from paypost.domain.ids import uuid4_text
from paypost.domain.load_errors import LoadError, base_message
from paypost.domain.model import PostingKind
from paypost.domain.ports.events import Publish
from paypost.domain.posting import AuditEntry, Posting
from paypost.domain.reversals import REVERSAL_KINDS
from paypost.schemas.messages import AlertEvent, LoadErrorBody, PaypostEvent, PostingEvent
from paypost.schemas.topics import (
    EVENTS_EXCHANGE,
    alert_key,
    cleared_key,
    failed_key,
    held_key,
    loaded_key,
    retried_key,
    reversed_key,
)

log = structlog.get_logger("paypost.events")



def _follows(posting: Posting) -> dict[str, str | None]:
    """What a refund or reversal is against, by the name its row gives it (contract sections 3 and 10)."""
    if posting.refunded_payment_id is None:
        return {}
    if posting.kind is PostingKind.REFUND:
        return {"refunded_payment_id": posting.refunded_payment_id}
    if posting.kind is PostingKind.DISPUTE_WON:
        return {"dispute_id": posting.refunded_payment_id}
    return {"reversed_payment_id": posting.refunded_payment_id, "return_code": posting.return_code}


def error_body(error: LoadError | None) -> LoadErrorBody | None:
    """The Load Error as an event carries it: its code's plain words only (contract section 12).

    The posting's own message may add a detail that names the patient (the practice-management id
    its system did not know) or quotes the practice's system; the API's posting row shows the office
    that full message, while events go to dashboards."""
    if error is None:
        return None
    return LoadErrorBody(code=error.code.value, message=base_message(error.code), fix=error.fix)


class OutcomePublisher:
    """Turns posting outcomes into events. Broadcasts: nobody listening is not an error."""

    def __init__(self, publish: Publish, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._publish = publish
        self._clock = clock

    async def emit(self, routing_key: str, event: PaypostEvent) -> None:
        await self._publish(
            EVENTS_EXCHANGE, routing_key, event.model_dump_json().encode(),
            message_id=event.event_id, broadcast=True,
        )

    def _event(self, event_type: str, posting: Posting, audit: AuditEntry | None = None) -> PostingEvent:
        return PostingEvent(
            event_id=uuid4_text(),
            occurred_at=self._clock(),
            practice_id=posting.key.practice_id,
            event_type=event_type,  # type: ignore[arg-type]  # one of the Literal values, chosen by the caller
            payment_id=posting.key.payment_id,
            kind=posting.kind.value,
            load_status=posting.load_status.value,
            load_error=error_body(posting.load_error),
            merchant_transfer_id=posting.merchant_transfer_id,
            amount=posting.amount,
            currency=posting.currency,
            **_follows(posting),
            actor=audit.actor if audit else None,
            reason=audit.reason if audit else None,
        )

    async def loaded(self, posting: Posting) -> None:
        await self.emit(loaded_key(posting.key.practice_id), self._event("posting.loaded", posting))
        if posting.kind in REVERSAL_KINDS:  # contract section 10: a void, return or chargeback loaded
            await self.emit(reversed_key(posting.key.practice_id, posting.kind.value),
                            self._event("payment.reversed", posting))

    async def failed(self, posting: Posting) -> None:
        code = posting.load_error.code.value if posting.load_error else "UNKNOWN"
        await self.emit(failed_key(posting.key.practice_id, code), self._event("posting.failed", posting))

    async def retried(self, posting: Posting, audit: AuditEntry) -> None:
        await self.emit(retried_key(posting.key.practice_id), self._event("posting.retried", posting, audit))

    async def held(self, posting: Posting) -> None:
        await self.emit(held_key(posting.key.practice_id), self._event("posting.held", posting))

    async def alert(self, transition: str, alert: Alert, posting: Posting | None = None) -> None:
        """``alert.opened|resolved|escalated``: an office task or a patient flag, with its posting if known."""
        await self.emit(alert_key(transition, alert.practice_id, alert.kind.value), AlertEvent(
            event_id=str(uuid.uuid4()), occurred_at=self._clock(), practice_id=alert.practice_id,
            event_type=f"alert.{transition}",  # type: ignore[arg-type]  # one of the three Literal values
            alert_id=alert.alert_id, kind=alert.kind.value,
            payment_id=alert.payment_id, state=alert.state.value,
            load_status=posting.load_status.value if posting else None,
            load_error=error_body(posting.load_error) if posting else None,
        ))

    async def cleared(self, posting: Posting, audit: AuditEntry) -> None:
        await self.emit(cleared_key(posting.key.practice_id), self._event("posting.cleared", posting, audit))


