"""The alerts of money that moves back (contract section 10).

A loaded return or chargeback opens an office task and a patient flag (the patient owes the
amount again), a void an office task. They are not resolved by a later load: the office resolves
them by hand (``POST /alerts/{alert_id}/resolve``), and a won dispute resolves its chargeback's.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from paypost.domain.alerts import Alert, AlertKind
from paypost.domain.events import PostingLoaded
from paypost.domain.model import PostingKind
from paypost.domain.ports.reversals import ReversalAlertStore
from paypost.domain.posting import Posting
from paypost.domain.reversals import FLAGS_THE_PATIENT, OPENS_A_TASK, reversal_flag_text, reversal_task_text
from paypost.handlers.clock import Clock, utc_now
from paypost.producers.events import OutcomePublisher

log = structlog.get_logger("paypost.reversal_alerts")


class ReversalAlerts:
    """Subscribed to loaded postings: opens a reversal's alerts, resolves a won dispute's chargeback's."""

    def __init__(self, store: ReversalAlertStore, events: OutcomePublisher, wake: Callable[[], None],
                 clock: Clock = utc_now) -> None:
        self._store = store
        self._events = events
        self._wake = wake  # the delivery to the practices' systems: something changed for it
        self._clock = clock

    async def loaded(self, event: PostingLoaded) -> None:
        """Each step is safe to run again for the same event (an alert opens and resolves once)."""
        posting, now = event.posting, self._clock()
        changed: list[tuple[str, Alert]] = []
        if posting.kind in OPENS_A_TASK:
            title, detail = reversal_task_text(posting, posting.return_code, posting.fee_amount)
            if (task := await self._store.open(AlertKind.TASK, posting, title, detail, now)) is not None:
                changed.append(("opened", task))
            if posting.kind in FLAGS_THE_PATIENT and posting.patient_account_id:
                title, detail = reversal_flag_text(posting)
                if (flag := await self._store.open(AlertKind.PATIENT, posting, title, detail, now)) is not None:
                    changed.append(("opened", flag))
        elif posting.kind is PostingKind.DISPUTE_WON and posting.refunded_payment_id:
            reason = f"dispute {posting.refunded_payment_id} won ({posting.key.payment_id})"
            resolved = await self._store.resolve_of(posting.key.practice_id, posting.refunded_payment_id, now, reason)
            changed.extend(("resolved", alert) for alert in resolved)
        await self._announce(changed, posting)

    async def resolve_by_hand(self, alert_id: str, reason: str, actor: str) -> Alert | None:
        """An operator resolves an open alert; None if it was not open."""
        resolved = await self._store.resolve_by_hand(alert_id, reason, actor, self._clock())
        if resolved is not None:
            log.info("alert_resolved_by_hand", alert_id=alert_id, practice_id=resolved.practice_id)
            await self._announce([("resolved", resolved)], None)
        return resolved

    async def _announce(self, changed: list[tuple[str, Alert]], posting: Posting | None) -> None:
        for transition, alert in changed:
            await self._events.alert(transition, alert, posting)
        if changed:
            self._wake()
