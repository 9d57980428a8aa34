"""Alerts: office tasks and patient flags, their outbox, and the practice's system that receives them."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from paypost.domain.access import EVERY, Scope
from paypost.domain.alerts import Alert, AlertState, Delivery, OutboxItem
from paypost.domain.posting import (
    Integration,
    Posting,
    PostingKey,
)


class AlertStore(Protocol):
    """Office tasks and patient flags (``paypost.domain.alerts``); each change happens once however many ask."""

    # ``sent``: whether the practice has a system to send its alerts to (``AlertDelivery.sends_to``).
    # Without one the change is written as delivered, "not sent": nothing more is written for it.

    async def open_task(self, posting: Posting, at: datetime, sent: bool = True) -> Alert | None:
        """Open the posting's task; None if it has one already."""

    async def open_flag(self, posting: Posting, at: datetime, sent: bool = True) -> Alert | None:
        """Open the posting's patient account's flag; None unless this call opened it."""

    async def resolve_task(self, key: PostingKey, at: datetime, sent: bool = True) -> Alert | None:
        """Resolve the posting's task; None unless this call resolved it."""

    async def resolve_flag_if_clear(self, practice_id: str, patient_account_id: str, at: datetime,
                                    sent: bool = True) -> Alert | None:
        """Resolve the account's flag once none of its postings is still failing; None otherwise."""

    async def open_outage_task(self, practice_id: str, task_id: str, detail: str, at: datetime) -> Alert | None:
        """Open the office task of a hold (``paypost.domain.outages.outage_task_id``); None if it is open already."""

    async def resolve_outage_task(self, practice_id: str, at: datetime) -> Alert | None:
        """Resolve the practice's open outage task; None if none was open."""

    async def due_for_escalation(self, before: datetime, limit: int = 500,
                                 now: datetime | None = None) -> list[Alert]:
        """Open alerts opened before ``before`` and not snoozed past ``now``."""

    async def escalate(self, alert_id: str, at: datetime, sent: bool = True) -> Alert | None:
        """Escalate an open alert unless it is snoozed past ``at``; None unless this call escalated it."""

    async def get(self, alert_id: str) -> Alert | None: ...

    async def snooze(self, alert_id: str, until: datetime, reason: str, by: str, at: datetime) -> Alert | None:
        """Keep an alert that is not resolved from escalating before ``until``; None if it is resolved."""

    async def list(self, practice_id: str | None, state: AlertState | None, limit: int = 500,
                   scope: Scope = EVERY) -> list[Alert]:
        """Newest first, within ``scope``; ``AlertState.OPEN`` includes escalated alerts."""


class AlertOutbox(Protocol):
    """The alerts whose latest change their practice's system has not got (written with the change)."""

    async def claim(self, now: datetime, limit: int, lease_seconds: float) -> list[OutboxItem]:
        """Alerts due to be sent, each claimed for ``lease_seconds`` so no other process sends it meanwhile."""

    async def delivered(self, item: OutboxItem, state: Delivery, put: bool, patient_id: str | None) -> None:
        """The system has ``item``'s version (or needs nothing): due again only if the alert changed since."""

    async def later(self, item: OutboxItem, at: datetime, state: Delivery, error: str | None) -> None:
        """Not delivered: due again at ``at``."""

    async def nudge(self, practice_id: str, patient_account_id: str) -> int:
        """The account's mapping was entered: its flags waiting for one are due now; how many."""

    async def wait_for_system(self, item: OutboxItem, at: datetime, reason: str) -> None:
        """Not sent: its practice's system is failing or held. Due again at ``at``, or sooner when the
        system answers (``system_answers``); not counted as an attempt (its backoff does not grow)."""

    async def system_answers(self, practice_id: str) -> int:
        """The practice's system answers again (or its hold was released): what waited for it is due
        now; how many."""

    async def next_due(self) -> datetime | None:
        """When the next alert is due to be sent (a retry's time, a claim's end); None: none is."""


class AlertSystem(Protocol):
    """A practice's system, for the office tasks and patient flags paypost puts in it (contract 7)."""

    async def put_task(self, alert: Alert) -> None: ...

    async def delete_task(self, alert_id: str) -> None:
        """Gone already (404) is done too."""

    async def put_flag(self, patient_id: str, alert: Alert) -> None: ...

    async def delete_flag(self, patient_id: str, alert_id: str) -> None:
        """Gone already (404) is done too."""


class AlertSystems(Protocol):
    def alerts_for(self, integration: Integration) -> AlertSystem | None:
        """The practice's system for its alerts; None if it has none (built-in ledger, ``tasks: false``)."""
