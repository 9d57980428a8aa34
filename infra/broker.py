"""The RabbitMQ connections: topology at start, confirmed and mandatory publishes."""

from __future__ import annotations

import asyncio
import functools
import uuid

import aio_pika
import aiormq
import structlog
from aio_pika.abc import AbstractIncomingMessage
from aiormq.abc import ChannelFrame
from faststream.rabbit import RabbitBroker
from faststream.rabbit.schemas import Channel
from pamqp.body import ContentBody
from pamqp.commands import Basic
from pamqp.frame import marshal
from pamqp.header import ContentHeader

from domain.errors import TransientFailure, Unroutable
from domain.posting import KeptMessage
from infra import topology
from infra.batching import Coalescer
from schemas.topics import CONTENT_TYPE, ROUTING_KEY_HEADER, SCHEMA_VERSION, SCHEMA_VERSION_HEADER

log = structlog.get_logger("paypost.broker")


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


# (exchange, routing key, body, properties) of one publish.
_Publish = tuple[str, str, bytes, aiormq.spec.Basic.Properties]
# Batched publishes fit one body frame (the broker's frame_max is 128 KiB at least); a larger
# body, which would need splitting into several frames, takes aiormq's own path.
MAX_BATCHED_BODY = 64 * 1024


def _unroutable(exchange: str, routing_key: str) -> Unroutable:
    log.error("publish_unroutable", exchange=exchange, routing_key=routing_key[:120])
    return Unroutable(f"nothing is bound to {exchange or '(default)'} with routing key {routing_key!r}")


def _track_returns(channel: aiormq.Channel, delivery_tag: int, message_id: str | None,
                   confirmation: asyncio.Future[object]) -> None:
    """What ``basic_publish`` does for a mandatory publish: a Basic.Return names the message id."""
    if not message_id:
        return
    channel.message_id_delivery_tag[message_id] = delivery_tag

    def forget(_: asyncio.Future[object]) -> None:
        if channel.message_id_delivery_tag.get(message_id) == delivery_tag:
            channel.message_id_delivery_tag.pop(message_id)

    confirmation.add_done_callback(forget)


class Publisher:
    """Publishes persistent JSON with confirms and ``mandatory``; nothing it sends is silently lost.

    Broadcasts (outcome events for dashboards) go without ``mandatory``: an event nobody listens to
    is not an error (contract 1.3), and the broker then need not send it back.
    """

    def __init__(self, amqp: Amqp) -> None:
        self._amqp = amqp
        # Two channels: a broker confirms a channel's publishes in their order, and a message
        # to a quorum queue is confirmed only once it is on disk; events (mostly unheard) would
        # wait behind it on a shared channel.
        self._channels: dict[bool, aio_pika.abc.AbstractChannel] = {}
        self._opening = asyncio.Lock()
        # What is published meanwhile (a batch of payments' events, a chunk of replays) goes
        # together in one write, events and mandatory publishes each on their own channel.
        self._batches: dict[bool, Coalescer[_Publish, None]] = {
            kind: Coalescer(functools.partial(self._publish_batch, kind)) for kind in (True, False)
        }

    async def _underlay(self, broadcast: bool) -> aiormq.abc.AbstractChannel:
        """The open channel underneath (a new one if the last was closed), as aiormq's channel.

        Publishing on it directly skips building an aio-pika message for every event.
        """
        channel = self._channels.get(broadcast)
        if channel is None or channel.is_closed:
            async with self._opening:
                channel = self._channels.get(broadcast)
                if channel is None or channel.is_closed:
                    connection = await self._amqp.open()
                    channel = await connection.channel(publisher_confirms=True, on_return_raises=False)
                    self._channels[broadcast] = channel
        return await channel.get_underlay_channel()

    async def __call__(
        self, exchange: str, routing_key: str, body: bytes, *, message_id: str,
        headers: dict[str, object] | None = None, broadcast: bool = False,
    ) -> None:
        properties = aiormq.spec.Basic.Properties(
            content_type=CONTENT_TYPE, delivery_mode=2, message_id=message_id,
            headers={SCHEMA_VERSION_HEADER: SCHEMA_VERSION, **(headers or {})},
        )
        if len(body) <= MAX_BATCHED_BODY:
            await self._batches[broadcast].submit((exchange, routing_key, body, properties))
            return
        try:
            channel = await self._underlay(broadcast)
            # wait=False: the frames join the connection's write queue; the confirm is still
            # awaited (and fails if the channel closes first).
            result = await channel.basic_publish(body, exchange=exchange, routing_key=routing_key,
                                                 properties=properties, mandatory=not broadcast, wait=False)
        except (RuntimeError, ConnectionError, aiormq.exceptions.AMQPError) as exc:
            # The connection is down or reconnecting: a transient failure, retried with backoff.
            raise TransientFailure(f"the broker is not reachable: {exc!r}"[:300]) from exc
        if not broadcast and not isinstance(result, aiormq.spec.Basic.Ack):
            raise _unroutable(exchange, routing_key)

    async def _publish_batch(self, broadcast: bool, items: list[_Publish]) -> list[None | BaseException]:
        """Publish many messages in one write and await their confirms together.

        aiormq's ``basic_publish`` costs ~65 µs of CPU per message (a lock, a timeout scope, a
        write-queue entry and a socket write each); this costs ~23. It fills the channel's own
        confirmation table (and, for ``mandatory`` publishes, its message-id table, by which a
        Basic.Return is matched to its publish) and write queue exactly as ``basic_publish``
        does (aiormq 7.2, pinned). A returned message resolves its confirmation with the message
        instead of an Ack: unroutable.
        """
        mandatory = not broadcast
        try:
            channel = await self._underlay(broadcast)
            confirmations = []
            async with channel.lock:
                payload = bytearray()
                for exchange, routing_key, body, properties in items:
                    if mandatory and not properties.message_id:
                        properties.message_id = uuid.uuid4().hex  # as basic_publish does: returns name it
                    channel.delivery_tag += 1
                    confirmation = channel.create_future()
                    channel.confirmations[channel.delivery_tag] = confirmation
                    if mandatory:
                        _track_returns(channel, channel.delivery_tag, properties.message_id, confirmation)
                    confirmations.append(confirmation)
                    payload += marshal(Basic.Publish(exchange=exchange, routing_key=routing_key, mandatory=mandatory),
                                       channel.number)
                    payload += marshal(ContentHeader(body_size=len(body), properties=properties), channel.number)
                    payload += marshal(ContentBody(body), channel.number)
                await channel.write_queue.put(ChannelFrame(payload=bytes(payload), drain_future=None,
                                                           should_close=False))
        except (RuntimeError, ConnectionError, aiormq.exceptions.AMQPError) as exc:
            failure = TransientFailure(f"the broker is not reachable: {exc!r}"[:300])
            return [failure] * len(items)
        outcomes = await asyncio.gather(*confirmations, return_exceptions=True)
        results: list[None | BaseException] = []
        for (exchange, routing_key, _, _), outcome in zip(items, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                results.append(TransientFailure(f"the broker did not confirm a publish: {outcome!r}"[:300]))
            elif mandatory and not isinstance(outcome, aiormq.spec.Basic.Ack):
                results.append(_unroutable(exchange, routing_key))
            else:
                results.append(None)
        return results

    async def close(self) -> None:
        for channel in self._channels.values():
            if not channel.is_closed:
                await channel.close()
        self._channels = {}


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
