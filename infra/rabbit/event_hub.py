"""One subscription to ``paypost.events`` per process, fanned out to the console's live streams."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator

import structlog

from paypost.infra.rabbit.watch import WatchedEvent, watch_events

log = structlog.get_logger("paypost.event_hub")

_CLOSED = WatchedEvent("", {})


class EventHub:
    def __init__(self, amqp_url: str) -> None:
        self._url = amqp_url
        self._subscribers: set[asyncio.Queue[WatchedEvent]] = set()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._closed = False

    async def _run(self) -> None:
        while not self._closed:
            try:
                async with watch_events(self._url, ["#"]) as events:
                    self._ready.set()
                    while True:
                        event = await events.get()
                        for queue in list(self._subscribers):
                            with contextlib.suppress(asyncio.QueueFull):  # a stalled browser misses events
                                queue.put_nowait(event)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - reconnect after a broker restart
                log.warning("event_hub_reconnecting")
                await asyncio.sleep(1.0)

    async def subscribe(self, ready_within: float = 5.0) -> AsyncGenerator[WatchedEvent, None]:
        """Events from now on, until the hub closes.

        Waits up to ``ready_within`` seconds for the hub's own subscription, then streams anyway
        (what arrives once the broker answers).
        """
        if self._closed:
            return
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), ready_within)
        queue: asyncio.Queue[WatchedEvent] = asyncio.Queue(maxsize=1000)
        self._subscribers.add(queue)
        try:
            while True:
                event = await queue.get()
                if event is _CLOSED:
                    return
                yield event
        finally:
            self._subscribers.discard(queue)

    async def close(self) -> None:
        """End every stream (so the server can stop) and the subscription."""
        self._closed = True
        for queue in list(self._subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(_CLOSED)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
