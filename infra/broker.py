"""The RabbitMQ connections: topology at start, confirmed and mandatory publishes."""

from __future__ import annotations

import asyncio

import aio_pika
import aiormq
import structlog
from aio_pika.abc import AbstractIncomingMessage
from faststream.rabbit import RabbitBroker
from faststream.rabbit.schemas import Channel

from domain.errors import PaypostError, TransientFailure
from domain.posting import KeptMessage
from infra import topology
from schemas.topics import CONTENT_TYPE, ROUTING_KEY_HEADER, SCHEMA_VERSION, SCHEMA_VERSION_HEADER

log = structlog.get_logger("paypost.broker")


class Unroutable(PaypostError):
    """The broker routed a message paypost sent to no queue (a missing binding or queue)."""


def make_broker(url: str, prefetch: int) -> RabbitBroker:
    """A broker whose default channel uses publisher confirms and the given prefetch."""
    return RabbitBroker(
        url,
        default_channel=Channel(prefetch_count=prefetch, publisher_confirms=True),
        logger=None,  # paypost logs outcomes itself, with ids and no patient detail
        graceful_timeout=15.0,
        fail_fast=True,
    )


async def declare_topology(broker: RabbitBroker) -> None:
    """Declare every exchange, queue and binding paypost owns (idempotent)."""
    for exchange in topology.EXCHANGES:
        await broker.declare_exchange(exchange)
    for queue, exchange, keys in topology.BINDINGS:
        declared = await broker.declare_queue(queue)
        for key in keys:
            await declared.bind(exchange.name, routing_key=key)
    for queue in topology.UNBOUND:
        await broker.declare_queue(queue)


class Amqp:
    """paypost's own aio-pika connection, for publishing and the batch consumers; it reconnects by itself."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._opening = asyncio.Lock()

    async def open(self) -> aio_pika.abc.AbstractRobustConnection:
        async with self._opening:  # the consumers and the publisher ask at once: one connection
            if self._connection is None or self._connection.is_closed:
                self._connection = await aio_pika.connect_robust(self._url)
            return self._connection

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None


class Publisher:
    """Publishes persistent JSON with confirms and ``mandatory``; nothing it sends is silently lost.

    Broadcasts (outcome events for dashboards) go without ``mandatory``: an event nobody listens to
    is not an error (contract 1.3), and the broker then need not send it back.
    """

    def __init__(self, amqp: Amqp) -> None:
        self._amqp = amqp
        self._channel: aio_pika.abc.AbstractChannel | None = None
        self._opening = asyncio.Lock()

    async def _underlay(self) -> aiormq.abc.AbstractChannel:
        """The open channel underneath (a new one if the last was closed), as aiormq's channel.

        Publishing on it directly skips building an aio-pika message for every event.
        """
        if self._channel is None or self._channel.is_closed:
            async with self._opening:
                if self._channel is None or self._channel.is_closed:
                    connection = await self._amqp.open()
                    self._channel = await connection.channel(publisher_confirms=True, on_return_raises=False)
        return await self._channel.get_underlay_channel()

    async def __call__(
        self, exchange: str, routing_key: str, body: bytes, *, message_id: str,
        headers: dict[str, object] | None = None, broadcast: bool = False,
    ) -> None:
        properties = aiormq.spec.Basic.Properties(
            content_type=CONTENT_TYPE, delivery_mode=2, message_id=message_id,
            headers={SCHEMA_VERSION_HEADER: SCHEMA_VERSION, **(headers or {})},
        )
        try:
            channel = await self._underlay()
            # wait=False: the frames join the connection's write queue and the channel's lock is
            # not held until they are written, so publishes of a batch go out back to back; the
            # confirm is still awaited (and fails if the channel closes first).
            result = await channel.basic_publish(body, exchange=exchange, routing_key=routing_key,
                                                 properties=properties, mandatory=not broadcast, wait=False)
        except (RuntimeError, ConnectionError, aiormq.exceptions.ConnectionClosed) as exc:
            # The connection is down or reconnecting: a transient failure, retried with backoff.
            raise TransientFailure(f"the broker is not reachable: {exc!r}"[:300]) from exc
        if broadcast or isinstance(result, aiormq.spec.Basic.Ack):
            return
        log.error("publish_unroutable", exchange=exchange, routing_key=routing_key[:120])
        raise Unroutable(f"nothing is bound to {exchange or '(default)'} with routing key {routing_key!r}")

    async def close(self) -> None:
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()
        self._channel = None


def kept_message(raw: AbstractIncomingMessage) -> KeptMessage:
    """The delivery as paypost keeps it: exact body, original routing key, id and headers."""
    headers = dict(raw.headers or {})
    routing_key = headers.get(ROUTING_KEY_HEADER) or raw.routing_key or ""
    return KeptMessage(
        body=raw.body,
        routing_key=str(routing_key),
        message_id=raw.message_id or None,
        headers={k: _plain(v) for k, v in headers.items()},
    )


def _plain(value: object) -> object:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


class QueueInspector:
    """Reads queue depths with passive declares on a connection of its own (for metrics and readiness)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None

    async def depths(self, names: list[str]) -> dict[str, tuple[int, int]]:
        """``{queue: (messages ready, consumers)}`` for each queue that exists."""
        if self._connection is None or self._connection.is_closed:
            self._connection = await aio_pika.connect_robust(self._url)
        found = {}
        for name in names:
            channel = await self._connection.channel()
            try:
                queue = await channel.declare_queue(name, passive=True)
                result = queue.declaration_result
                found[name] = (result.message_count or 0, result.consumer_count or 0)
            except aio_pika.exceptions.ChannelClosed:
                pass
            finally:
                if not channel.is_closed:
                    await channel.close()
        return found

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None
