"""Subscribing to ``paypost.events`` as a dashboard does: a queue of its own, bound with patterns."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aio_pika
import orjson

from paypost.infra.rabbit.broker import connect
from paypost.schemas.topics import EVENTS_EXCHANGE


@dataclass(frozen=True, slots=True)
class WatchedEvent:
    routing_key: str
    body: dict[str, Any]


@asynccontextmanager
async def watch_events(amqp_url: str, patterns: Sequence[str]) -> AsyncIterator[asyncio.Queue[WatchedEvent]]:
    """Yield a queue that receives every event whose routing key matches one of ``patterns``.

    The exchange is only declared passively (paypost owns its arguments); the subscriber's own
    queue is exclusive and goes away with the connection.
    """
    connection = await connect(amqp_url)  # the first broker that answers, another when it goes away
    try:
        channel = await connection.channel()
        exchange = await channel.get_exchange(EVENTS_EXCHANGE, ensure=True)
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        for pattern in patterns:
            await queue.bind(exchange, routing_key=pattern)
        events: asyncio.Queue[WatchedEvent] = asyncio.Queue()

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            try:
                body = orjson.loads(message.body)
            except orjson.JSONDecodeError:
                body = {"unreadable": message.body[:200].decode("utf-8", "replace")}
            await events.put(WatchedEvent(message.routing_key or "", body))

        await queue.consume(on_message, no_ack=True)
        yield events
    finally:
        await connection.close()
