"""A small message bus: each domain event goes to the handlers subscribed to its type, in order.

The composition root subscribes every handler, in one place; a service publishes what happened
and does not know who listens. A handler that raises stops the rest for that event and the error
reaches the publisher, which keeps the event to publish again (``handlers/outcomes.py``); so
every handler must be safe to run twice for the same event.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from paypost.domain.events import Event

E = TypeVar("E", bound=Event)


class MessageBus:
    def __init__(self) -> None:
        self._handlers: dict[type[Any], list[Callable[[Any], Awaitable[None]]]] = {}

    def subscribe(self, kind: type[E], *handlers: Callable[[E], Awaitable[None]]) -> None:
        """Run ``handlers``, in this order, for every event of type ``kind``."""
        self._handlers.setdefault(kind, []).extend(handlers)

    async def publish(self, *events: Event) -> None:
        for event in events:
            for handler in self._handlers.get(type(event), ()):
                await handler(event)
