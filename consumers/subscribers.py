"""FastStream subscribers: thin entrypoints that read a delivery and hand it to one service."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, TypeVar

import structlog
from faststream import AckPolicy
from faststream.rabbit import RabbitBroker, RabbitMessage, RabbitQueue

from paypost.domain.load_errors import LoadErrorCode
from paypost.domain.posting import UNKNOWN_PRACTICE, KeptMessage
from paypost.handlers import metrics
from paypost.handlers.commands import CommandService
from paypost.handlers.dead_letters import DeadLetterService
from paypost.handlers.mappings import MappingService
from paypost.handlers.posting import POSTING_MESSAGES, Disposition, Outcome, PostingService
from paypost.infra.rabbit import topology
from paypost.infra.rabbit.broker import kept_message
from paypost.infra.rabbit.intake import BatchConsumer, BatchHandler, Settle, traced
from paypost.infra.runtime.retry import is_transient, log_failure
from paypost.schemas.messages import (
    DepositReceived,
    PatientMappingUpdated,
    PostingClear,
    PostingRetry,
    TransferSettled,
    WireModel,
)
from paypost.schemas.reading import Unreadable, assigned_id, read_message
from paypost.schemas.topics import (
    DEPOSIT_RECEIVED,
    INTAKE_QUEUE,
    PATIENT_MAPPING_UPDATED,
    POSTING_CLEAR,
    POSTING_RETRY,
    REPLAY_QUEUE,
    TRANSFER_SETTLED,
)

log = structlog.get_logger("paypost.consumers")

T = TypeVar("T")
Retrying = Callable[[Callable[[], Awaitable[T]]], Awaitable[T]]
TransferHandler = Callable[[TransferSettled], Awaitable[None]]


async def raw_body(msg: RabbitMessage) -> bytes:
    """Hand the body over undecoded: paypost reads it itself, so a body that is not JSON is kept."""
    return msg.body


async def _settle(msg: RabbitMessage, dead_letter: bool) -> None:
    if dead_letter:
        await msg.reject(requeue=False)
    else:
        await msg.ack()


def intake_consumers(
    postings: PostingService, retrying: Retrying[Any], *, prefetch: int, lanes: int, replay_window: int,
) -> list[BatchConsumer]:
    """The payment intake and the replay queue: the busy path, consumed in batches.

    Replays take the same path on a channel of their own with a small window, so a replay of
    thousands never stands in front of new payments for long.
    """

    def on_batch(queue: str) -> BatchHandler:
        async def settle(messages: list[KeptMessage]) -> list[Settle]:
            # Each message in a span of its own with tracing on; off, the batch is handled as one.
            return await settle_batch(postings, retrying, messages, each=traced(queue),
                                      objective=queue == INTAKE_QUEUE)

        return settle

    return [
        BatchConsumer(INTAKE_QUEUE, on_batch(INTAKE_QUEUE), prefetch=prefetch, lanes=lanes, name="intake"),
        BatchConsumer(REPLAY_QUEUE, on_batch(REPLAY_QUEUE), prefetch=replay_window, lanes=2, name="replays"),
    ]


def _settle_of(outcome: Outcome) -> Settle:
    return Settle.DEAD_LETTER if outcome.disposition is Disposition.DEAD_LETTER else Settle.ACK


async def settle_batch(postings: PostingService, retrying: Retrying[Any], messages: list[KeptMessage], *,
                       each: Callable[[KeptMessage], AbstractContextManager[object]] | None = None,
                       objective: bool = False) -> list[Settle]:
    """Handle a batch and settle each delivery by its own outcome.

    Deliveries that failed transiently (the database did not answer) are handled again, alone,
    with backoff; past the retry budget they go back to the queue. A delivery that failed for a
    reason nobody named (a bug it alone meets) goes back to the queue at once, by itself: its
    delivery limit ends it as a FAILED row, and its batch-mates are not held back by it.
    """
    started = time.perf_counter()
    settles: list[Settle] = [Settle.REQUEUE] * len(messages)
    waiting = list(range(len(messages)))

    async def attempt() -> None:
        results = await postings.handle_batch([messages[i] for i in waiting], each=each)
        transient: Exception | None = None
        again = []
        for index, result in zip(waiting, results, strict=True):
            if isinstance(result, Outcome):
                metrics.observe(result.load_status, result.error_code, started)
                if objective:  # new payments (not replays) count toward the posting objective
                    arrived = messages[index].arrived_at
                    metrics.objective(result.load_status, result.error_code,
                                      (datetime.now(UTC) - arrived).total_seconds() if arrived else 0.0)
                settles[index] = _settle_of(result)
            elif is_transient(result):
                again.append(index)
                transient = transient or result
            else:
                log_failure(log, "delivery_gave_up", result, message_id=messages[index].message_id)
        waiting[:] = again
        if transient is not None:
            raise transient

    try:
        await retrying(attempt)
    except Exception as exc:
        if not is_transient(exc):
            raise
        log_failure(log, "deliveries_gave_up", exc, count=len(waiting))  # they stay REQUEUE
    return settles


async def keep_unrouted(message: KeptMessage, postings: PostingService, retrying: Retrying[Any],
                        max_message_bytes: int) -> bool:
    """Handle a message ``paypost.payments`` routed to no queue; whether it goes to the dead letters.

    A payment whose binding is missing is loaded all the same (and said loudly); anything else
    becomes an unreadable row.
    """
    read = read_message(message, max_message_bytes)
    label = metrics.unrouted_label(message.routing_key, readable=not isinstance(read, Unreadable))
    metrics.UNROUTED.labels(label).inc()
    if isinstance(read, POSTING_MESSAGES):
        log.error("binding_missing", routing_key=message.routing_key[:100], queue=INTAKE_QUEUE)
        outcome = await retrying(lambda: postings.handle(message))
        return outcome.disposition is Disposition.DEAD_LETTER
    if not isinstance(read, Unreadable):
        log.error("binding_missing", routing_key=message.routing_key[:100])
        read = Unreadable(
            code=LoadErrorCode.INVALID_MESSAGE,
            detail=f"The routing key {message.routing_key[:100]!r} reached no paypost queue.",
            practice_id=getattr(read, "practice_id", UNKNOWN_PRACTICE),
            row_id=message.message_id or assigned_id(message),
        )
    unreadable = read
    await retrying(lambda: postings.keep_unreadable(unreadable, message))
    return True


def register(
    broker: RabbitBroker,
    postings: PostingService,
    dead_letters: DeadLetterService,
    mappings: MappingService,
    transfers: TransferHandler,
    commands: CommandService,
    retrying: Retrying[Any],
    max_message_bytes: int,
    *,
    deposits: Callable[[DepositReceived], Awaitable[object]],
) -> None:
    """Subscribe paypost's other consumers. Each acks only after its outcome is durable.

    ``retrying`` runs a handler again on transient errors (database down) with backoff; when it
    gives up, the delivery is returned to its queue, never acked early nor dead-lettered.
    """

    @broker.subscriber(topology.unrouted_queue, ack_policy=AckPolicy.MANUAL, decoder=raw_body)
    async def on_unrouted(msg: RabbitMessage) -> None:
        """What ``paypost.payments`` routed nowhere: kept as an unreadable row, never dropped."""
        try:
            dead_letter = await keep_unrouted(kept_message(msg.raw_message), postings, retrying, max_message_bytes)
        except Exception:
            log.exception("unrouted_gave_up", message_id=msg.raw_message.message_id)
            await msg.nack(requeue=True)
            return
        await _settle(msg, dead_letter)

    def applier(queue: RabbitQueue, models: dict[str, type[WireModel]],
                apply: Callable[[Any], Awaitable[object]], name: str) -> None:
        """A consumer that reads one kind of message and applies it; unreadable ones get their row."""

        async def on_message(msg: RabbitMessage) -> None:
            try:
                message = kept_message(msg.raw_message)
                read = read_message(message, max_message_bytes, models)
                if isinstance(read, Unreadable):
                    await retrying(lambda: postings.keep_unreadable(read, message))
                    await msg.reject(requeue=False)
                    return
                await retrying(lambda: apply(read))
            except Exception:
                log.exception("apply_gave_up", consumer=name, message_id=msg.raw_message.message_id)
                await msg.nack(requeue=True)
                return
            await msg.ack()

        broker.subscriber(queue, ack_policy=AckPolicy.MANUAL, decoder=raw_body, title=name)(on_message)

    async def apply_mapping(read: PatientMappingUpdated) -> int:
        return await mappings.update(read.practice_id, read.patient_account_id, read.ehr_patient_id,
                                     actor="the payments platform", source=f"event {read.event_id}")

    applier(topology.mappings, {PATIENT_MAPPING_UPDATED: PatientMappingUpdated}, apply_mapping, "mappings")
    applier(topology.transfers, {TRANSFER_SETTLED: TransferSettled}, transfers, "transfers")
    applier(topology.deposits, {DEPOSIT_RECEIVED: DepositReceived}, deposits, "deposits")
    applier(topology.operator_commands, {POSTING_RETRY: PostingRetry, POSTING_CLEAR: PostingClear},
            commands.apply, "commands")

    @broker.subscriber(topology.dead_letters, ack_policy=AckPolicy.MANUAL, decoder=raw_body)
    async def on_dead_letter(msg: RabbitMessage) -> None:
        try:
            message = kept_message(msg.raw_message)
            await retrying(lambda: dead_letters.handle(message, dict(msg.raw_message.headers or {})))
        except Exception:
            log.exception("dead_letter_gave_up", message_id=msg.raw_message.message_id)
            await msg.nack(requeue=True)
            return
        await msg.ack()
