"""Announcing a durable outcome: its domain events, published once the outcome is written.

If they cannot all be sent (the broker went away between the outcome and its event), the posting
is marked as owing its outcome's event, in the database, and the error goes up: the delivery is
not settled, so it is handled again, in this process or, redelivered, in any other, which finds
the mark and announces the outcome instead of taking the delivery for a duplicate. No worker
keeps this to itself. At least once: a dashboard may see such an event twice. What cannot be
marked (the database is away too, or an event that is not an outcome's) is kept in memory for
this process's next try.
"""

from __future__ import annotations

import structlog

from paypost.domain.events import Event, owed_as, owed_event
from paypost.domain.ports.postings import PostingStore
from paypost.domain.posting import Posting, PostingKey
from paypost.handlers.messagebus import MessageBus

log = structlog.get_logger("paypost.announcing")

# Announcements kept in memory at most: a delivery that never comes back to this process (another
# took it) must not hold memory for ever. Without an outage of both services there are none.
MAX_UNANNOUNCED = 10_000


class Announcer:
    def __init__(self, bus: MessageBus, postings: PostingStore, bound: int = MAX_UNANNOUNCED) -> None:
        self._bus = bus
        self._postings = postings
        self._bound = bound
        self._owed: dict[PostingKey, tuple[Event, ...]] = {}

    async def announce(self, key: PostingKey, *events: Event) -> None:
        """Publish the events of ``key``'s outcome; if that fails they are owed, and the error raised."""
        try:
            await self._bus.publish(*events)
        except BaseException:
            await self._owe(key, events)
            raise

    async def _owe(self, key: PostingKey, events: tuple[Event, ...]) -> None:
        owed = [kind for kind in map(owed_as, events) if kind is not None]
        if len(owed) == len(events) == 1:
            try:
                await self._postings.owe_announcement(key, owed[0])
                return
            except Exception as exc:  # noqa: BLE001 - the database is away too: kept here instead
                log.warning("announcement_kept_in_memory", posting=str(key), error=type(exc).__name__)
        if len(self._owed) >= self._bound and key not in self._owed:
            dropped = next(iter(self._owed))
            del self._owed[dropped]
            log.error("announcement_dropped", posting=str(dropped), kept=self._bound)
        self._owed[key] = events

    async def settle_owed(self, posting: Posting) -> bool:
        """Announce what ``posting`` still owes, if anything; whether something was owed (and is now sent)."""
        noted = owed_event(posting)
        events = (noted,) if noted is not None else self._owed.pop(posting.key, None)
        if events is None:
            return False
        log.info("outcome_announced_late", posting=str(posting.key))
        await self.announce(posting.key, *events)
        if noted is not None:
            await self._postings.announced(posting.key)
        return True

    def owes(self, posting: Posting) -> bool:
        return posting.announcement_owed is not None or posting.key in self._owed
