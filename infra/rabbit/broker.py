"""The RabbitMQ connections: topology at start, confirmed and mandatory publishes."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar, cast

import aio_pika
import aiormq
import structlog
from aio_pika.abc import AbstractIncomingMessage
from faststream.rabbit import RabbitBroker
from faststream.rabbit.opentelemetry import RabbitTelemetryMiddleware
from faststream.rabbit.schemas import Channel
from pamqp.common import FieldTable
from yarl import URL

from paypost.domain.errors import TransientFailure, Unroutable
from paypost.domain.posting import KeptMessage
from paypost.infra.batching import Coalescer
from paypost.infra.rabbit import amqp_fast, topology
from paypost.infra.runtime import tracing
from paypost.infra.runtime.settings import amqp_nodes
from paypost.schemas.topics import CONTENT_TYPE, ROUTING_KEY_HEADER, SCHEMA_VERSION, SCHEMA_VERSION_HEADER

log = structlog.get_logger("paypost.broker")


class ClusterConnection(aio_pika.RobustConnection):
    """aio-pika's robust connection, over the nodes of one cluster (``NODES``, in order).

    It opens on the first node that accepts a connection, and aio-pika's own recovery (channels,
    consumers, ``reconnect_callbacks``) does the rest; each new attempt of that recovery goes to the
    next node, round the list, so a node that went away is left for one that answers. The hook is
    the one point every attempt passes: ``RobustConnection`` drops its transport (sets
    ``transport = None``) right before ``Connection.connect`` opens one on ``self.url``
    (aio-pika 10.2, pinned; tests/unit/test_amqp_nodes.py and tests/faults/test_clusters.py).
    """

    NODES: ClassVar[tuple[URL, ...]] = ()

    def __init__(self, url: URL, loop: asyncio.AbstractEventLoop | None = None, **kwargs: Any) -> None:
        self._nodes = self.NODES or (URL(url),)
        self._node = 0
        super().__init__(self._nodes[0], loop=loop, **kwargs)
        self._attempted = False  # the first attempt goes to the node connect() chose

    @property
    def transport(self) -> Any:
        return self.__dict__.get("_transport")

    @transport.setter
    def transport(self, value: Any) -> None:
        nodes = self.__dict__.get("_nodes", ())
        if value is None and len(nodes) > 1:
            if self.__dict__.get("_attempted"):  # the transport is dropped for a new attempt: the next node
                self._node = (self._node + 1) % len(nodes)
                self.url = nodes[self._node]
            self._attempted = True
        self.__dict__["_transport"] = value

    async def connect(self, timeout: float | None = None) -> None:  # noqa: ASYNC109  # aio-pika's signature
        if len(self._nodes) > 1:
            self._node = await _first_answering(self._nodes)
            self.url = self._nodes[self._node]
        await super().connect(timeout)

    @property
    def node(self) -> str:
        """The node in use (host:port)."""
        return f"{self.url.host}:{self.url.port}"


async def _first_answering(nodes: Sequence[URL], within: float = 2.0) -> int:
    """The index of the first node that accepts a TCP connection; the first when none does (the
    connection then fails as aio-pika fails it)."""
    for index, node in enumerate(nodes):
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(node.host, node.port), within)
        except (OSError, TimeoutError):
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return index
    return 0


def connection_class(url: str) -> type[ClusterConnection]:
    """The connection class for ``PAYPOST_AMQP_URL`` (one broker or several, comma-separated)."""
    nodes = tuple(URL(node) for node in amqp_nodes(url))
    return cast(type[ClusterConnection], type("ClusterConnection", (ClusterConnection,), {"NODES": nodes}))


async def connect(url: str) -> aio_pika.abc.AbstractRobustConnection:
    """A robust connection to the first broker of ``url`` that answers, moving on when it goes away."""
    nodes = amqp_nodes(url)
    return await aio_pika.connect_robust(nodes[0], connection_class=connection_class(url))


# The FastStream whose private ``_connection_kwargs`` make_broker writes (tests/unit/test_faststream_pin.py).
FASTSTREAM_VERSION = "0.7.8"


def make_broker(url: str, prefetch: int) -> RabbitBroker:
    """A broker whose default channel uses publisher confirms and the given prefetch.

    FastStream opens its connection with aio-pika's ``connect_robust``, given the keywords it keeps
    (``_connection_kwargs``, ``FASTSTREAM_VERSION``, pinned); ``connection_class`` there makes it a
    ``ClusterConnection`` over every broker of ``url``.
    """
    broker = RabbitBroker(
        amqp_nodes(url)[0],
        default_channel=Channel(prefetch_count=prefetch, publisher_confirms=True),
        logger=None,  # paypost logs outcomes itself, with ids and no patient detail
        graceful_timeout=15.0,
        fail_fast=True,
        # FastStream's own spans for its subscribers (mappings, transfers, commands, dead letters):
        # only when tracing is on, so that off costs nothing.
        middlewares=(RabbitTelemetryMiddleware(),) if tracing.enabled() else (),
    )
    broker._connection_kwargs["connection_class"] = connection_class(url)  # FastStream has no public hook
    return broker


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
                self._connection = await connect(self._url)
            return self._connection

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None


def _unroutable(exchange: str, routing_key: str) -> Unroutable:
    log.error("publish_unroutable", exchange=exchange, routing_key=routing_key[:120])
    return Unroutable(f"nothing is bound to {exchange or '(default)'} with routing key {routing_key!r}")


def _unreachable(exc: BaseException) -> TransientFailure:
    return TransientFailure(f"the broker is not reachable: {exc!r}"[:300])


def _unconfirmed(exc: BaseException) -> TransientFailure:
    return TransientFailure(f"the broker did not confirm a publish: {exc!r}"[:300])


# What a publish meets when the connection is down or reconnecting, or the channel closed.
_UNREACHABLE = (RuntimeError, ConnectionError, aiormq.exceptions.AMQPError)


def _properties(message_id: str, headers: dict[str, object] | None) -> aiormq.spec.Basic.Properties:
    """Persistent JSON with its id and schema version; the port's headers are plain values, and the
    current trace's ``traceparent`` goes with it (contract section 13: events, replays, commands)."""
    values: dict[str, object] = {SCHEMA_VERSION_HEADER: SCHEMA_VERSION, **(headers or {})}
    tracing.inject(values)
    table = cast(FieldTable, values)
    return aiormq.spec.Basic.Properties(content_type=CONTENT_TYPE, delivery_mode=2, message_id=message_id,
                                        headers=table)


class _ConfirmChannels:
    """Two publisher-confirm channels, each reopened when found closed.

    Two: a broker confirms a channel's publishes in their order, and a message to a quorum queue is
    confirmed only once it is on disk; events (mostly unheard) would wait behind it on a shared
    channel.
    """

    def __init__(self, amqp: Amqp) -> None:
        self._amqp = amqp
        self._channels: dict[bool, aio_pika.abc.AbstractChannel] = {}
        self._opening = asyncio.Lock()

    async def underlay(self, broadcast: bool) -> aiormq.Channel:
        """The open aiormq channel for broadcasts or for the rest (aio-pika's public accessor).

        Publishing on it directly skips building an aio-pika message for every publish.
        """
        channel = self._channels.get(broadcast)
        if channel is None or channel.is_closed:
            async with self._opening:
                channel = self._channels.get(broadcast)
                if channel is None or channel.is_closed:
                    connection = await self._amqp.open()
                    # on_return_raises=False: a returned message resolves its publish, not raises
                    channel = await connection.channel(publisher_confirms=True, on_return_raises=False)
                    self._channels[broadcast] = channel
        underlay = await channel.get_underlay_channel()
        if not isinstance(underlay, aiormq.Channel):  # aio-pika's channels are aiormq's own
            raise TypeError(f"not an aiormq channel: {underlay!r}")
        return underlay

    async def close(self) -> None:
        for channel in self._channels.values():
            if not channel.is_closed:
                await channel.close()
        self._channels = {}


async def _publish_one(channels: _ConfirmChannels, exchange: str, routing_key: str, body: bytes,
                       properties: aiormq.spec.Basic.Properties, broadcast: bool) -> None:
    """One ``basic_publish``, its confirm awaited; its outcome in paypost's errors."""
    try:
        channel = await channels.underlay(broadcast)
        result = await channel.basic_publish(body, exchange=exchange, routing_key=routing_key,
                                             properties=properties, mandatory=not broadcast, wait=False)
    except aiormq.exceptions.DeliveryError as exc:  # a Basic.Nack
        raise _unconfirmed(exc) from exc
    except _UNREACHABLE as exc:
        # The connection is down or reconnecting: a transient failure, retried with backoff.
        raise _unreachable(exc) from exc
    except asyncio.CancelledError as exc:
        # aiormq cancels the confirms still awaited on a channel closed without a reason;
        # a cancel of this task itself goes on.
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        raise _unconfirmed(exc) from exc
    if not broadcast and not isinstance(result, aiormq.spec.Basic.Ack):
        raise _unroutable(exchange, routing_key)


class BasicPublisher:
    """Publishes persistent JSON with confirms and ``mandatory``; nothing it sends is silently lost.

    Broadcasts (outcome events for dashboards) go without ``mandatory``: an event nobody listens to
    is not an error (contract 1.3), and the broker then need not send it back.

    Every publish is aiormq's public ``basic_publish``: publishes made together are in flight
    together, each awaiting its own confirm. ``wait=False`` lets the next publish queue its frames
    while this one's are written, instead of holding the channel lock until the socket drains.
    """

    def __init__(self, amqp: Amqp) -> None:
        self._channels = _ConfirmChannels(amqp)

    async def __call__(
        self, exchange: str, routing_key: str, body: bytes, *, message_id: str,
        headers: dict[str, object] | None = None, broadcast: bool = False,
    ) -> None:
        await _publish_one(self._channels, exchange, routing_key, body, _properties(message_id, headers), broadcast)

    async def close(self) -> None:
        await self._channels.close()


class FramedPublisher:
    """The same port as ``BasicPublisher``, the publishes made meanwhile written in one socket write.

    It costs about 35 µs of CPU per publish against ``basic_publish``'s 79 to 96 and carries 2.2 to
    2.6 times the rate (BENCHMARKS.md, "The publisher on public APIs"), on aiormq's private channel
    state (infra/rabbit/amqp_fast.py, pinned). A body over 64 KiB takes ``basic_publish``.
    """

    def __init__(self, amqp: Amqp) -> None:
        self._channels = _ConfirmChannels(amqp)
        # What is published meanwhile (a batch of payments' events, a chunk of replays) goes
        # together in one write, events and mandatory publishes each on their own channel.
        self._batches: dict[bool, Coalescer[amqp_fast.Publish, None]] = {
            kind: Coalescer(functools.partial(self._publish_batch, kind)) for kind in (True, False)
        }

    async def __call__(
        self, exchange: str, routing_key: str, body: bytes, *, message_id: str,
        headers: dict[str, object] | None = None, broadcast: bool = False,
    ) -> None:
        properties = _properties(message_id, headers)
        if len(body) > amqp_fast.MAX_BODY:
            await _publish_one(self._channels, exchange, routing_key, body, properties, broadcast)
            return
        await self._batches[broadcast].submit((exchange, routing_key, body, properties))

    async def _publish_batch(self, broadcast: bool, items: list[amqp_fast.Publish]) -> list[BaseException | None]:
        """Publish many messages in one write and await their confirms together."""
        mandatory = not broadcast
        try:
            channel = await self._channels.underlay(broadcast)
            sent = await amqp_fast.write_batch(channel, items, mandatory)
        except _UNREACHABLE as exc:
            return [_unreachable(exc)] * len(items)
        confirms = iter(await asyncio.gather(*(s for s in sent if not isinstance(s, Exception)),
                                             return_exceptions=True))
        results: list[BaseException | None] = []
        for (exchange, routing_key, _, _), one in zip(items, sent, strict=True):
            if isinstance(one, Exception):
                results.append(one)  # not sent: it could not be encoded (basic_publish raises the same)
                continue
            outcome = next(confirms)
            if isinstance(outcome, BaseException):
                results.append(_unconfirmed(outcome))
            elif mandatory and not isinstance(outcome, aiormq.spec.Basic.Ack):
                results.append(_unroutable(exchange, routing_key))
            else:
                results.append(None)
        return results

    async def close(self) -> None:
        await self._channels.close()


# The adapters of the Publish port, by name; the framed one is what paypost wires (its rate).
PUBLISHERS: dict[str, type[BasicPublisher | FramedPublisher]] = {"framed": FramedPublisher, "basic": BasicPublisher}


def publisher(path: str, amqp: Amqp) -> BasicPublisher | FramedPublisher:
    """The publisher ``PAYPOST_PUBLISH_PATH`` names. The framed one only beside the aiormq and pamqp
    it copies (``amqp_fast.mismatch``): with others installed it turns itself off, with a warning,
    and the public ``basic_publish`` carries everything (at its lower rate, BENCHMARKS.md)."""
    if path == "framed":
        reason = amqp_fast.mismatch()
        if reason is None:
            return FramedPublisher(amqp)
        log.warning("framed_publisher_off", reason=reason, publishing_with="basic")
    return BasicPublisher(amqp)


def kept_message(raw: AbstractIncomingMessage, arrived_at: datetime | None = None) -> KeptMessage:
    """The delivery as paypost keeps it: exact body, original routing key, id and headers."""
    return _kept(raw.body, raw.headers, raw.routing_key, raw.message_id, arrived_at)


def kept_delivery(raw: aiormq.abc.DeliveredMessage, arrived_at: datetime | None = None) -> KeptMessage:
    """``kept_message`` of a delivery as aiormq hands it over, with no aio-pika message made of it."""
    properties = raw.header.properties
    return _kept(raw.body, properties.headers, raw.routing_key, properties.message_id, arrived_at)


def _kept(body: bytes, headers: Mapping[str, object] | None, routing_key: str | None, message_id: str | None,
          arrived_at: datetime | None) -> KeptMessage:
    headers = headers or {}
    return KeptMessage(
        body=body,
        routing_key=str(headers.get(ROUTING_KEY_HEADER) or routing_key or ""),
        message_id=message_id or None,
        headers={k: _plain(v) for k, v in headers.items()},
        arrived_at=arrived_at,
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
            self._connection = await connect(self._url)
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
