"""Publishing, and the live feed of outcome events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from paypost.domain.ports import Record


class BroadcastEvent(Protocol):
    """One event of ``paypost.events`` as a live feed hands it on."""

    @property
    def routing_key(self) -> str: ...

    @property
    def body(self) -> Record: ...


class EventFeed(Protocol):
    """The live feed of ``paypost.events`` (the console's)."""

    def subscribe(self) -> AsyncIterator[BroadcastEvent]:
        """Events from now on, until the feed closes."""
        ...


class Publish(Protocol):
    """Publishes one persistent JSON message with confirms; raises if the broker refuses it."""

    async def __call__(
        self, exchange: str, routing_key: str, body: bytes, *, message_id: str,
        headers: dict[str, object] | None = None, broadcast: bool = False,
    ) -> None: ...
