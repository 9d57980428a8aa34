"""Office tasks and patient flags into the practice's system, from the alerts' outbox (contract 7).

Every change of an alert (opened, escalated, resolved) marks it due in the same write
(``infra/mongo/alerts.py``); this delivers what is due in the background: a PUT while the alert is open,
a DELETE once it resolves (if the system holds it). Each is idempotent at the system (the alert's id
is in the URL), claimed by one process at a time, and retried with backoff, so a crash, an outage of
the system or a lost answer neither loses nor doubles one. A patient flag waits for the account's
mapping (the system files a flag under its own patient id); entering the mapping sends it at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

import structlog

from paypost.domain.alerts import AlertKind, Delivery, OutboxItem, wants_put
from paypost.domain.errors import LoadFailure, TransientFailure, loggable
from paypost.domain.patient_ref import patient_ref
from paypost.domain.ports.alerts import AlertOutbox, AlertSystem, AlertSystems
from paypost.domain.ports.practices import MappingStore, PracticeDirectory
from paypost.handlers.clock import Clock, until_set, utc_now
from paypost.handlers.outages import OutageBoard

log = structlog.get_logger("paypost.alert_delivery")

WAIT_FOR_MAPPING = 30.0  # a flag for an unmapped account is looked at again this often (or when mapped)
# An alert of a practice whose system is failing or held is looked at again this often, or at once
# when the system answers again (``system_answers``).
WAIT_FOR_SYSTEM = 30.0
SYSTEM_AWAITED = ("Waiting for the practice's system: its payments are held or waiting for it to answer; "
                  "sent when it answers again or the practice is released.")
# What another process (whose view of the outages is up to a second old) or a delivery in hand may
# still set waiting after the system answered: made due again this long after the first time.
ANSWERED_AGAIN_AFTER = 2.0
MAX_BACKOFF = 60.0


def backoff(attempts: int) -> float:
    return min(2.0 ** attempts, MAX_BACKOFF)


class AlertDelivery:
    def __init__(self, outbox: AlertOutbox, directory: PracticeDirectory, systems: AlertSystems,
                 mappings: MappingStore, clock: Clock = utc_now, batch: int = 100, lease: float = 30.0,
                 outages: OutageBoard | None = None) -> None:
        """``outages``: which practices' systems are failing or held; their alerts wait for them."""
        self._outbox = outbox
        self._outages = outages
        self._again: set[asyncio.Future[None]] = set()
        self._directory = directory
        self._systems = systems
        self._mappings = mappings
        self._clock = clock
        self._batch = batch
        self._lease = lease
        self._woken = asyncio.Event()

    def wake(self) -> None:
        """An alert changed in this process: deliver now rather than at the next round."""
        self._woken.set()

    async def run(self, stop: asyncio.Event, every: float = 10.0,
                  on_error: Callable[[BaseException], None] | None = None) -> None:
        """Deliver what is due until ``stop``: at once while there is more or when woken, else when
        the next alert falls due (a retry's time), and at least every ``every`` seconds for what
        another process changed."""
        while not stop.is_set():
            self._woken.clear()
            within = every
            try:
                if await self.round() == self._batch:
                    continue
                if (due := await self._outbox.next_due()) is not None:
                    within = min(every, max(0.0, (due - self._clock()).total_seconds()))
            except Exception as exc:  # noqa: BLE001 (reported; the next round tries again)
                if on_error:
                    on_error(exc)
            await until_set(stop, self._woken, within=within)

    async def round(self) -> int:
        """Deliver the alerts due now (up to a batch); how many were claimed."""
        items = await self._outbox.claim(self._clock(), self._batch, self._lease)
        await asyncio.gather(*(self._deliver(item) for item in items))
        return len(items)

    async def system_answers(self, practice_id: str) -> None:
        """The practice's system answers again, or its hold was released: its alerts go now (and what
        was set waiting just as it answered, a moment later: ``ANSWERED_AGAIN_AFTER``)."""
        await self._make_due(practice_id)
        again = asyncio.ensure_future(self._answers_again(practice_id))
        self._again.add(again)  # held until done: the loop keeps only a weak reference
        again.add_done_callback(self._again.discard)

    async def _answers_again(self, practice_id: str) -> None:
        await asyncio.sleep(ANSWERED_AGAIN_AFTER)
        await self._make_due(practice_id)

    async def _make_due(self, practice_id: str) -> None:
        """What waited for the practice's system is due now. Never raises: the release or the load that
        told it has happened whatever this does."""
        try:
            if await self._outbox.system_answers(practice_id):
                self.wake()
        except Exception as exc:  # noqa: BLE001 (said; they go at their next look, 30 s on at most)
            log.warning("alerts_not_made_due", practice_id=practice_id, error=loggable(exc))

    async def nudge(self, practice_id: str, patient_account_id: str) -> None:
        """A mapping was entered: the account's flag that waited for it goes now."""
        if await self._outbox.nudge(practice_id, patient_account_id):
            log.info("flag_mapping_entered", practice_id=practice_id,
                     patient_ref=patient_ref(practice_id, patient_account_id))

    async def _system_of(self, practice_id: str) -> AlertSystem | None:
        integration = await self._directory.integration(practice_id)  # cached: no round trip as a rule
        return self._systems.alerts_for(integration) if integration is not None and integration.enabled else None

    async def sends_to(self, practice_id: str) -> bool:
        """Whether the practice has a system its alerts go to. Without one (the built-in ledger, or
        ``tasks: false``) an alert's change is written as delivered, "not sent", by its own write:
        nothing waits in the outbox for it (``paypost.infra.mongo.alerts.changed``)."""
        return await self._system_of(practice_id) is not None

    async def _deliver(self, item: OutboxItem) -> None:
        alert = item.alert
        system = await self._system_of(alert.practice_id)
        if system is None:  # no such system (built-in ledger, or tasks: false): paypost's alerts only
            await self._outbox.delivered(item, Delivery.NOT_SENT, item.put, item.put_patient_id)
            return
        try:
            if alert.kind is AlertKind.TASK:
                await self._task(item, system)
            else:
                await self._flag(item, system)
        except (TransientFailure, LoadFailure) as exc:
            wait = backoff(item.attempts)
            # The code only: a refusal's text is the practice system's, and its path names the patient.
            log.warning("alert_not_delivered", alert_id=alert.alert_id, practice_id=alert.practice_id,
                        attempts=item.attempts + 1, retry_in_s=wait, error=loggable(exc))
            await self._outbox.later(item, self._clock() + timedelta(seconds=wait), Delivery.PENDING, str(exc)[:300])

    async def _system_awaited(self, item: OutboxItem) -> bool:
        """Whether the alert must wait for its practice's system, failing or held (handlers/outages.py),
        and is set to. The outage worker tries such a system with one payment at a time: tasks and
        flags wait for it to answer rather than each try it in turn, to a timeout, adding to the load
        of a system that is struggling already."""
        if self._outages is None or await self._outages.of(item.alert.practice_id) is None:
            return False
        await self._outbox.wait_for_system(item, self._clock() + timedelta(seconds=WAIT_FOR_SYSTEM), SYSTEM_AWAITED)
        return True

    async def _task(self, item: OutboxItem, system: AlertSystem) -> None:
        alert = item.alert
        if (wants_put(alert) or item.put) and await self._system_awaited(item):
            return
        if wants_put(alert):
            await system.put_task(alert)
            await self._outbox.delivered(item, Delivery.SENT, True, None)
        elif item.put:
            await system.delete_task(alert.alert_id)
            await self._outbox.delivered(item, Delivery.SENT, False, None)
        else:  # resolved before the system ever had it: nothing to take back
            await self._outbox.delivered(item, Delivery.NOT_SENT, False, None)

    async def _flag(self, item: OutboxItem, system: AlertSystem) -> None:
        alert = item.alert
        assert alert.patient_account_id is not None  # a patient flag is an account's
        if not wants_put(alert):
            if item.put and item.put_patient_id is not None:
                if await self._system_awaited(item):
                    return
                await system.delete_flag(item.put_patient_id, alert.alert_id)
                await self._outbox.delivered(item, Delivery.SENT, False, None)
            else:
                await self._outbox.delivered(item, Delivery.NOT_SENT, False, None)
            return
        patient = await self._mappings.get(alert.practice_id, alert.patient_account_id) or alert.ehr_patient_id
        if patient is None:
            await self._outbox.later(item, self._clock() + timedelta(seconds=WAIT_FOR_MAPPING),
                                     Delivery.WAITING_FOR_MAPPING, None)
            return
        if await self._system_awaited(item):
            return
        if item.put and item.put_patient_id is not None and item.put_patient_id != patient:
            await system.delete_flag(item.put_patient_id, alert.alert_id)  # the mapping was corrected since
        await system.put_flag(patient, alert)
        await self._outbox.delivered(item, Delivery.SENT, True, patient)

