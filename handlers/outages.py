"""Holding a practice's payments through an outage of its system, and loading them after (contract 7).

``domain/outages.py`` says what failing and held mean. Here:

- ``OutageBoard``: what this process knows of the practices that are failing or held, read from the
  database at most once a second (and told at once of what this process saw), so the intake asks it
  of every payment for nothing.
- ``Outages``: the changes: a payment got no answer; a practice held or released by hand.
- ``OutageWorker``: in the background, one practice at a time in each process and in one process at
  a time (a lease per practice): tries a parked payment when it is due, holds the practice past
  ``hold_after``, and once a payment gets an answer loads the parked ones in the order received.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace

import structlog

from paypost.domain.errors import LedgerUnreachable, loggable
from paypost.domain.events import PostingHeld
from paypost.domain.model import LoadStatus
from paypost.domain.outages import Health, PracticeOutage, next_try, outage_task_id, should_hold, unreachable_reason
from paypost.domain.ports.alerts import AlertStore
from paypost.domain.ports.outages import Leases, Loader, OutageStore
from paypost.domain.ports.postings import PostingStore
from paypost.domain.posting import PAYPOST_ACTOR, AuditEntry, KeptMessage, Posting
from paypost.handlers.clock import Clock, until_set, utc_now
from paypost.handlers.messagebus import MessageBus
from paypost.producers.events import OutcomePublisher
from paypost.schemas.topics import REPLAYS_HEADER

log = structlog.get_logger("paypost.outages")

RELEASE_BATCH = 200




class OutageBoard:
    def __init__(self, store: OutageStore, refresh_every: float = 1.0) -> None:
        self._store = store
        self._every = refresh_every
        self._known: dict[str, PracticeOutage] = {}
        self._read_at = float("-inf")
        self._lock = asyncio.Lock()

    async def of(self, practice_id: str) -> PracticeOutage | None:
        """The practice's outage, if it is failing or held (as read within the last second)."""
        loop = asyncio.get_running_loop()
        if loop.time() - self._read_at >= self._every:
            async with self._lock:
                if loop.time() - self._read_at >= self._every:
                    self._known = {o.practice_id: o for o in await self._store.every()}
                    self._read_at = loop.time()
        return self._known.get(practice_id)

    def note(self, practice_id: str, outage: PracticeOutage | None) -> None:
        if outage is None:
            self._known.pop(practice_id, None)
        else:
            self._known[practice_id] = outage


class Outages:
    def __init__(self, store: OutageStore, postings: PostingStore, alerts: AlertStore, board: OutageBoard,
                 bus: MessageBus, events: OutcomePublisher, *, hold_after: float, probe_every: float,
                 clock: Clock = utc_now, on_answer: Callable[[str], Awaitable[None]] | None = None) -> None:
        """``on_answer``: told of a practice whose system answers again or is released by hand (its
        tasks and flags, which waited for it, go then: ``handlers/alert_delivery.py``)."""
        self.store = store
        self._on_answer = on_answer
        self.board = board
        self._postings = postings
        self._alerts = alerts
        self._bus = bus
        self._events = events
        self.hold_after = hold_after
        self.probe_every = probe_every
        self._clock = clock
        self.woken = asyncio.Event()  # something for the worker to look at now (``OutageWorker.run``)

    async def waiting(self, practice_id: str) -> int:
        """How many of the practice's payments wait for its system (counted on the index of them)."""
        return await self._postings.parked_count(practice_id)

    async def unanswered(self, practice_id: str, error: str) -> PracticeOutage:
        """A payment of the practice got no answer from its system: failing (or held) from now."""
        outage = await self.store.failing(practice_id, error, self._clock(), self.probe_every)
        if outage.tries == 1:
            log.warning("ledger_failing", practice_id=practice_id, error=error[:200])
        self.board.note(practice_id, outage)
        self.woken.set()
        return outage

    async def park(self, posting: Posting, outage: PracticeOutage) -> Posting:
        """Park a posting of a failing or held practice; HELD (and said so) if the practice is held."""
        audit = AuditEntry(at=self._clock(), actor=outage.held_by or PAYPOST_ACTOR, action="held",
                           reason=outage.reason or "its practice's system did not answer",
                           detail=outage.last_error)
        held = await self._postings.park(posting.key, outage.holds, audit)
        if held is not None:
            await self._bus.publish(PostingHeld(held))
            return held
        return posting

    async def hold_by_hand(self, practice_id: str, reason: str, actor: str) -> PracticeOutage:
        """An operator holds the practice: its payments are HELD and nothing is tried until released."""
        now = self._clock()
        outage = await self.store.hold(practice_id, now, reason, actor, None, None) or await self.store.get(practice_id)
        assert outage is not None  # held by this call, or by hand before it
        self.board.note(practice_id, outage)
        log.warning("practice_held", practice_id=practice_id, by=actor)
        await self._hold_parked(practice_id, outage)
        return outage

    async def release_by_hand(self, practice_id: str, actor: str) -> PracticeOutage | None:
        """An operator releases the practice: its held payments load in the order received."""
        released = await self.store.clear(practice_id, by_hand=True)
        self.board.note(practice_id, None)
        self.woken.set()
        if released is not None:
            log.info("practice_released", practice_id=practice_id, by=actor)
            await self._resolve_task(practice_id)
            await self._answers(practice_id)
        return released

    async def _answers(self, practice_id: str) -> None:
        if self._on_answer is not None:
            await self._on_answer(practice_id)

    async def hold(self, practice_id: str, outage: PracticeOutage) -> PracticeOutage | None:
        """paypost holds a practice whose system has not answered for ``hold_after``: one office task."""
        now = self._clock()
        task_id = outage_task_id(practice_id, now)
        reason = unreachable_reason(outage.last_error, self.hold_after)
        held = await self.store.hold(practice_id, now, reason, None, task_id,
                                     next_try(replace(outage, health=Health.HELD), now, self.probe_every))
        if held is None:
            return None
        self.board.note(practice_id, held)
        log.warning("ledger_held", practice_id=practice_id, after_seconds=self.hold_after, error=outage.last_error)
        task = await self._alerts.open_outage_task(practice_id, task_id, reason, now)
        if task is not None:
            await self._events.alert("opened", task)
        await self._hold_parked(practice_id, held)
        return held

    async def answered(self, practice_id: str) -> None:
        """A payment of the practice reached its system: healthy again (unless held by hand)."""
        cleared = await self.store.clear(practice_id, by_hand=False)
        self.board.note(practice_id, None)
        if cleared is not None:
            log.info("ledger_answers_again", practice_id=practice_id, was=cleared.health.value)
            await self._resolve_task(practice_id)
            await self._answers(practice_id)

    async def _resolve_task(self, practice_id: str) -> None:
        task = await self._alerts.resolve_outage_task(practice_id, self._clock())
        if task is not None:
            await self._events.alert("resolved", task)

    async def _hold_parked(self, practice_id: str, outage: PracticeOutage) -> None:
        """What waits for the practice's system in flight becomes HELD, each said so."""
        for posting, _ in await self._postings.parked(practice_id, limit=100_000):
            if posting.load_status is not LoadStatus.HELD:
                await self.park(posting, outage)


def replayed(message: KeptMessage, posting: Posting) -> KeptMessage:
    """A parked posting's message as the worker loads it: a replay of the row paypost holds."""
    return replace(message, headers={**message.headers, REPLAYS_HEADER: posting.replays})


class OutageWorker:
    def __init__(self, outages: Outages, postings: PostingStore, loader: Loader, leases: Leases,
                 clock: Clock = utc_now, lease_ttl: float = 30.0) -> None:
        self._outages = outages
        self._postings = postings
        self._loader = loader
        self._leases = leases
        self._clock = clock
        self._ttl = lease_ttl
        self._running: dict[str, asyncio.Task[None]] = {}

    async def run(self, stop: asyncio.Event, busy_every: float = 0.2, idle_every: float = 10.0,
                  on_error: Callable[[BaseException], None] | None = None) -> None:
        """Look at every failing or held practice, and every one with parked payments, until ``stop``:
        every ``busy_every`` seconds while there is one (a failing system is tried again within a
        quarter of a second), else every ``idle_every`` (at once when this process sees a failure)."""
        while not stop.is_set():
            self._outages.woken.clear()
            busy = False
            try:
                busy = await self.round()
            except Exception as exc:  # noqa: BLE001 (reported; the next round tries again)
                if on_error:
                    on_error(exc)
            await until_set(stop, self._outages.woken, within=busy_every if busy else idle_every)
        await self.stop()

    async def round(self) -> bool:
        """Start a step for each practice that needs one and is not being stepped already; whether any did."""
        outages = {o.practice_id: o for o in await self._outages.store.every()}
        practices = {*outages, *await self._postings.parked_practices()}
        for practice_id in practices:
            if practice_id not in self._running:
                task = asyncio.create_task(self._guarded(practice_id, outages.get(practice_id)))
                self._running[practice_id] = task
                task.add_done_callback(self._finished)
        return bool(practices)

    def _finished(self, task: asyncio.Task[None]) -> None:
        for practice_id, running in list(self._running.items()):
            if running is task:
                del self._running[practice_id]

    async def settled(self) -> None:
        """Wait for the steps under way (tests)."""
        while self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def stop(self) -> None:
        for task in list(self._running.values()):
            task.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def _guarded(self, practice_id: str, outage: PracticeOutage | None) -> None:
        try:
            token = await self._leases.hold(f"outage:{practice_id}", self._ttl)
            if token is not None:
                await self.step(practice_id, outage, token)
        except Exception as exc:  # noqa: BLE001 (logged; the next round steps it again)
            log.warning("outage_step_failed", practice_id=practice_id, error=loggable(exc))

    async def step(self, practice_id: str, outage: PracticeOutage | None, token: int | None = None) -> None:
        """Release what waits for a healthy system; try one payment of a failing or held one when due.

        ``token``: the lease on the practice this step holds (None: the step is run by hand, a test)."""
        if outage is None:
            await self._release(practice_id, token)
            return
        if outage.by_hand or (outage.probe_at is not None and self._clock() < outage.probe_at):
            return
        first = await self._postings.parked(practice_id, limit=1)
        if not first:
            if not outage.holds:  # failing, and nothing waits for it any more
                await self._outages.answered(practice_id)
            return
        if await self._try(practice_id, *first[0]):
            await self._outages.answered(practice_id)
            await self._release(practice_id, token)

    async def _try(self, practice_id: str, posting: Posting, message: KeptMessage) -> bool:
        """Load one parked posting at the system; whether the system answered."""
        try:
            await self._loader.handle(replayed(message, posting), trying=True)
        except LedgerUnreachable as exc:
            outage = await self._outages.unanswered(practice_id, str(exc))
            if should_hold(outage, self._clock(), self._outages.hold_after):
                await self._outages.hold(practice_id, outage)
            return False
        return True

    async def _release(self, practice_id: str, token: int | None) -> None:
        """Load the practice's parked postings, oldest first, until none is left or one gets no answer.

        Between batches the lease is renewed; a renewal under another token means another process
        held the practice meanwhile (this one stalled past the expiry) and may be releasing the
        same postings: this step stops. Loading one twice would not post it twice (each outcome
        is a conditional write), but the practice's system would be asked twice."""
        seen: set[str] = set()
        while batch := await self._postings.parked(practice_id, limit=RELEASE_BATCH):
            fresh = [(p, m) for p, m in batch if str(p.key) not in seen]
            if not fresh:  # loaded, yet still parked: left for the next round rather than loop here
                log.error("parked_postings_not_released", practice_id=practice_id, count=len(batch))
                return
            for posting, message in fresh:
                seen.add(str(posting.key))
                if not await self._try(practice_id, posting, message):
                    return
            renewed = await self._leases.hold(f"outage:{practice_id}", self._ttl)
            if renewed is None or (token is not None and renewed != token):
                return  # another process took the practice over
        if seen:
            log.info("parked_postings_released", practice_id=practice_id, count=len(seen))

