"""Announcing a durable outcome: its domain events, published once the outcome is written.

If they cannot all be sent (the broker went away between the outcome and its event), the events
are kept until the delivery that produced the outcome comes back (the batch handled again, or the
message redelivered), which announces them instead of taking the delivery for a duplicate. At
least once: a dashboard may see such an event twice; only a crash of this process in that
instant loses it.
"""

from __future__ import annotations

import structlog

from domain.events import Event
from domain.posting import PostingKey
from handlers.messagebus import MessageBus

log = structlog.get_logger("paypost.announcing")

# Outcomes kept for their announcement at most: a delivery that never comes back to this process
# (another took it) must not hold memory for ever. Without an outage there are none.
MAX_UNANNOUNCED = 10_000


class Announcer:
    def __init__(self, bus: MessageBus, bound: int = MAX_UNANNOUNCED) -> None:
        self._bus = bus
        self._bound = bound
        self._owed: dict[PostingKey, tuple[Event, ...]] = {}

    async def announce(self, key: PostingKey, *events: Event) -> None:
        """Publish the events of ``key``'s outcome; if that fails they are owed, and the error raised."""
        try:
            await self._bus.publish(*events)
        except BaseException:
            if len(self._owed) >= self._bound and key not in self._owed:
                dropped = next(iter(self._owed))
                del self._owed[dropped]
                log.error("announcement_dropped", posting=str(dropped), kept=self._bound)
            self._owed[key] = events
            raise

    async def settle_owed(self, key: PostingKey) -> bool:
        """Announce what ``key`` is owed, if anything; whether something was owed (and is now sent)."""
        events = self._owed.pop(key, None)
        if events is None:
            return False
        log.info("outcome_announced_late", posting=str(key))
        await self.announce(key, *events)
        return True

    def owes(self, key: PostingKey) -> bool:
        return key in self._owed
