"""Consuming a busy queue in batches, on aio-pika directly.

A batch is whatever the broker has delivered while the previous batch was being handled (up to
``max_batch``): under light load that is one message and it goes at once; under heavy load
hundreds go together, their database work done in a few round trips. Each batch is settled once
it is handled, each delivery by its own outcome: dead-lettered ones rejected one by one, those
that could not be handled returned to the queue one by one, then every other delivery of the
batch acknowledged with a single ``multiple=True`` ack. Batches on one channel are handled one
after another, so that ack never covers a delivery that is still being handled; several channels
keep the database and the broker busy while one batch waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime

import aio_pika
import aiormq
import structlog
from aio_pika.abc import AbstractRobustConnection
from aiormq.abc import DeliveredMessage
from faststream.rabbit import RabbitBroker

from paypost.domain.errors import loggable
from paypost.domain.posting import KeptMessage
from paypost.infra.rabbit.broker import Amqp, kept_delivery
from paypost.infra.runtime import tracing
from paypost.infra.runtime.retry import log_failure

log = structlog.get_logger("paypost.intake")


class Settle(enum.Enum):
    ACK = "ack"
    DEAD_LETTER = "dead_letter"  # reject without requeue: the queue's dead-letter exchange takes it
    REQUEUE = "requeue"  # not handled: back to the queue, whose delivery limit ends what never can be


BatchHandler = Callable[[list[KeptMessage]], Awaitable[list[Settle]]]


def traced(queue: str) -> Callable[[KeptMessage], AbstractContextManager[object]] | None:
    """The consumer span each message of ``queue`` is handled in (contract section 13): it continues
    the trace of the message's ``traceparent``, or starts one. None when tracing is off."""
    if not tracing.enabled():
        return None

    def span(message: KeptMessage) -> AbstractContextManager[object]:
        return tracing.consumer_span(queue, message.message_id, message.headers, routing_key=message.routing_key,
                                     body_size=len(message.body))

    return span


class _Lane:
    """One channel and the deliveries it holds that are not handled yet.

    It consumes on the robust channel's own aiormq channel: a delivery is kept as it arrives, with
    no aio-pika message (and no task of aio-pika's) made of it, the busy path's largest share of
    the broker's cost in paypost. The robust channel still reconnects and sets its QoS again; the
    lane then consumes again on the new channel (``_reopened``, among its reopen callbacks). Where
    aio-pika's robust queue would have retried, the lane does (``_consume_again``): after the broker
    cancels its consumer (its queue deleted), and after a consume at a reopen fails.
    """

    def __init__(self, name: str, queue: str, handle: BatchHandler, max_batch: int, prefetch: int) -> None:
        self.name = name
        self.queue = queue
        self._handle = handle
        self._max = max_batch
        self._prefetch = prefetch
        self._waiting: list[tuple[DeliveredMessage, datetime]] = []
        self._ready = asyncio.Event()
        self._stopping = False
        self._connection: AbstractRobustConnection | None = None
        self.channel: aio_pika.abc.AbstractRobustChannel | None = None
        self.consuming: tuple[aiormq.abc.AbstractChannel, str] | None = None  # the channel and consumer tag
        self._consume_lock = asyncio.Lock()  # one consumer a channel: the start, a reopen and a retry may meet
        self.task: asyncio.Task[None] | None = None
        self._again: asyncio.Task[None] | None = None  # held: the loop keeps only a weak reference

    async def open(self, connection: AbstractRobustConnection) -> None:
        """A robust channel of the lane's own, consuming its queue (at the start, and again when the
        channel it had is closed for good)."""
        self._connection = connection
        channel = await connection.channel()
        assert isinstance(channel, aio_pika.abc.AbstractRobustChannel)
        try:
            await channel.set_qos(prefetch_count=self._prefetch)  # the robust channel sets it again at a reopen
            await channel.declare_queue(self.queue, passive=True)  # a missing queue is said here, by name
        except BaseException:
            with contextlib.suppress(Exception):
                await channel.close()
            raise
        before, self.channel = self.channel, channel
        if before is not None:  # given up: it consumes no more, even if aio-pika reopens it
            before.reopen_callbacks.discard(self._reopened)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(before.close(), 2)
        channel.reopen_callbacks.add(self._reopened)
        await self.consume()

    def consuming_now(self) -> bool:
        return self.consuming is not None and not self.consuming[0].is_closed

    async def consume(self) -> None:
        """Consume the queue on the robust channel as it is now, unless the lane does already."""
        async with self._consume_lock:
            if self._stopping or self.channel is None:
                return
            underlay = await self.channel.get_underlay_channel()
            if self.consuming is not None and self.consuming[0] is underlay and not underlay.is_closed:
                return
            underlay.on_consumer_cancel_callbacks.add(self._cancelled)  # a set: once a channel
            ok = await underlay.basic_consume(self.queue, self.on_message)
            assert ok.consumer_tag is not None
            self.consuming = (underlay, ok.consumer_tag)

    async def _reopened(self, _: aio_pika.abc.AbstractRobustChannel | None = None) -> None:
        """The robust channel reopened: consume there. aio-pika neither logs nor retries a reopen
        callback that fails, so a consume that fails here is retried by the lane."""
        try:
            await self.consume()
        except Exception as exc:  # noqa: BLE001 - said, and retried
            log.warning("consume_at_reopen_failed", lane=self.name, queue=self.queue, error=loggable(exc))
            self._retry()

    def _cancelled(self, frame: aiormq.spec.Basic.Cancel) -> None:
        """The broker ended this lane's consumer (its queue deleted, or its node gone): consume again,
        as a robust queue would, until the queue answers or the lane stops."""
        if self.consuming is None or frame.consumer_tag != self.consuming[1] or self._stopping:
            return
        log.warning("consumer_cancelled_by_broker", lane=self.name, queue=self.queue)
        self.consuming = None
        self._retry()

    def _retry(self) -> None:
        if self._again is None or self._again.done():
            self._again = asyncio.create_task(self._consume_again(), name=f"{self.name}-again")

    async def _consume_again(self, every: float = 1.0) -> None:
        """Once a second, until the lane consumes or stops: on its channel if that is open and the
        queue answers (asked on a channel of its own first: a consume of a missing queue would close
        the lane's), else on a new channel of its own."""
        while not self._settled():
            await asyncio.sleep(every)
            if self._settled():
                break
            try:
                if self.channel is not None and not self.channel.is_closed:
                    await self._queue_answers()
                    await self.consume()
                elif self._connection is not None:
                    await self.open(self._connection)
            except Exception as exc:  # noqa: BLE001 - said, and tried again
                log.warning("consume_again_failed", lane=self.name, queue=self.queue, error=loggable(exc))
        if self.consuming_now() and not self._stopping:
            log.info("consuming_again", lane=self.name, queue=self.queue)

    def _settled(self) -> bool:
        return self._stopping or self.consuming_now()

    async def _queue_answers(self) -> None:
        """Raises unless the queue exists (a passive declare on a channel of its own)."""
        assert self.channel is not None
        underlay = await self.channel.get_underlay_channel()
        asking = await underlay.connection.channel()
        try:
            await asking.queue_declare(self.queue, passive=True)
        finally:
            if not asking.is_closed:
                await asking.close()

    async def cancel(self) -> None:
        """Stop the broker's deliveries to this lane (what it holds is settled or goes back)."""
        if self.consuming is not None:
            underlay, tag = self.consuming
            if not underlay.is_closed:
                await underlay.basic_cancel(tag)

    async def on_message(self, message: DeliveredMessage) -> None:
        if self._stopping:
            return  # not handled: it goes back to the queue when the channel closes
        self._waiting.append((message, datetime.now(UTC)))
        self._ready.set()

    async def run(self) -> None:
        while not self._stopping:
            if not self._waiting:
                self._ready.clear()
                await self._ready.wait()
                continue
            batch, self._waiting = self._waiting[:self._max], self._waiting[self._max:]
            await self._settle(batch)

    async def _settle(self, arrived: list[tuple[DeliveredMessage, datetime]]) -> None:
        batch = [m for m, _ in arrived]
        try:
            settles = await self._handle([kept_delivery(m, at) for m, at in arrived])
        except Exception as exc:  # noqa: BLE001 (logged, with its traceback unless an outage)
            # The handler gave up (its own retries included): every delivery goes back to the
            # queue, whose delivery limit ends a message that can never be handled.
            log_failure(log, "batch_gave_up", exc, lane=self.name, size=len(batch))
            last = batch[-1]
            await _quietly(last.channel.basic_nack(_tag(last), multiple=True, requeue=True), self.name)
            return
        last_ack: DeliveredMessage | None = None
        for message, settle in zip(batch, settles, strict=True):
            if settle is Settle.DEAD_LETTER:
                await _quietly(message.channel.basic_reject(_tag(message), requeue=False), self.name)
            elif settle is Settle.REQUEUE:
                await _quietly(message.channel.basic_nack(_tag(message), requeue=True), self.name)
            else:
                last_ack = message
        if last_ack is not None:
            await _quietly(last_ack.channel.basic_ack(_tag(last_ack), multiple=True), self.name)

    def stop(self) -> None:
        """Finish the batch in hand; what waits behind it is left unsettled. No consume begins after."""
        self._stopping = True
        self._waiting = []
        self._ready.set()
        if self._again is not None:
            self._again.cancel()


def _tag(message: DeliveredMessage) -> int:
    tag = message.delivery_tag
    assert tag is not None  # a consumer's delivery always has one
    return tag


async def _quietly(settling: Awaitable[None], lane: str) -> None:
    """A channel that closed (the connection dropped) cannot settle: the broker redelivers instead."""
    try:
        await settling
    except (aiormq.exceptions.AMQPError, aiormq.exceptions.ChannelInvalidStateError, ConnectionError) as exc:
        log.warning("settle_failed", lane=lane, error=loggable(exc))


class BatchConsumer:
    """Consumes one queue on ``lanes`` channels with ``prefetch`` deliveries each, in batches."""

    def __init__(self, queue: str, handle: BatchHandler, *, prefetch: int, lanes: int = 2,
                 max_batch: int | None = None, name: str | None = None) -> None:
        self.queue = queue
        self._lanes = [_Lane(f"{name or queue}-{n}", queue, handle, max_batch or prefetch, prefetch)
                       for n in range(lanes)]

    async def start(self, connection: AbstractRobustConnection) -> None:
        for lane in self._lanes:
            await lane.open(connection)
            lane.task = asyncio.create_task(lane.run(), name=lane.name)

    async def stop(self, grace: float = 15.0) -> None:
        """Stop taking deliveries, finish and settle the batches in hand, then close the channels.

        What was delivered but not handled goes back to the queue when its channel closes. Each
        step waits a bounded time: a channel whose connection is down waits for it to come back.
        """
        for lane in self._lanes:
            lane.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(lane.cancel(), 2)
        running = [lane.task for lane in self._lanes if lane.task is not None]
        if running:
            await asyncio.wait(running, timeout=grace)  # the lanes finish their batches together
        for lane in self._lanes:
            if lane.task is not None and not lane.task.done():
                lane.task.cancel()
                log.warning("batch_unfinished_at_stop", lane=lane.name)
            if lane.channel is not None and not lane.channel.is_closed:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(lane.channel.close(), 2)

    def abort(self) -> None:
        """Stop at once: the batches in hand are left unsettled (the broker delivers them again)."""
        for lane in self._lanes:
            lane.stop()
            if lane.task is not None:
                lane.task.cancel()


class Consuming:
    """All a process consumes, started and stopped together: the broker's subscribers (FastStream),
    then the batch consumers on a connection of their own."""

    def __init__(self, broker: RabbitBroker, amqp: Amqp, batches: Sequence[BatchConsumer]) -> None:
        self._broker = broker
        self._amqp = amqp
        self._batches = batches

    async def start(self) -> None:
        await self._broker.start()
        connection = await self._amqp.open()
        for consumer in self._batches:
            await consumer.start(connection)

    async def stop(self) -> None:
        """The batch consumers stop; the broker's subscribers stop when the broker is closed."""
        for consumer in self._batches:
            await consumer.stop()

    def abort(self) -> None:
        for consumer in self._batches:
            consumer.abort()
