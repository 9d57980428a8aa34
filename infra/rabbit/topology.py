"""RabbitMQ topology paypost owns: exchanges, queues and bindings, with explicit arguments.

The exchange names and ``paypost.postings.dead`` are the contract's; the other names are
paypost's own. The broker is RabbitMQ 3.10 (Debian 12): quorum queues there have no default
delivery limit, and at-least-once dead-lettering needs ``x-overflow: reject-publish``.
"""

from __future__ import annotations

from faststream.rabbit import ExchangeType, QueueType, RabbitExchange, RabbitQueue
from faststream.rabbit.schemas.queue import QuorumQueueArgs

from paypost.schemas.topics import (
    COMMANDS_EXCHANGE,
    DEAD_LETTER_QUEUE,
    DEPOSIT_RECEIVED,
    DISPUTE_CLOSED,
    EVENTS_EXCHANGE,
    INTAKE_QUEUE,
    PATIENT_MAPPING_UPDATED,
    PAYMENT_DISPUTED,
    PAYMENT_POSTED,
    PAYMENT_REFUNDED,
    PAYMENT_RETURNED,
    PAYMENT_VOIDED,
    PAYMENTS_EXCHANGE,
    POSTING_CLEAR,
    POSTING_RETRY,
    REPLAY_QUEUE,
    TRANSFER_SETTLED,
)

# A delivery that keeps coming back (a consumer crashing on it, or returning it) is
# dead-lettered on its 21st delivery. Fixed, not configurable: queue arguments cannot change
# once a queue exists.
DELIVERY_LIMIT = 20

DEAD_LETTER_EXCHANGE = "paypost.dead-letter"
UNROUTED_EXCHANGE = "paypost.payments.unrouted"

MAPPINGS_QUEUE = "paypost.mappings"
TRANSFERS_QUEUE = "paypost.transfers"
DEPOSITS_QUEUE = "paypost.deposits"
COMMANDS_QUEUE = "paypost.commands.postings"
UNROUTED_QUEUE = "paypost.payments.unrouted"


payments = RabbitExchange(
    PAYMENTS_EXCHANGE, type=ExchangeType.TOPIC, durable=True,
    arguments={"alternate-exchange": UNROUTED_EXCHANGE},
)
commands = RabbitExchange(COMMANDS_EXCHANGE, type=ExchangeType.TOPIC, durable=True)
events = RabbitExchange(EVENTS_EXCHANGE, type=ExchangeType.TOPIC, durable=True)
dead_letter = RabbitExchange(DEAD_LETTER_EXCHANGE, type=ExchangeType.FANOUT, durable=True)
unrouted = RabbitExchange(UNROUTED_EXCHANGE, type=ExchangeType.FANOUT, durable=True)

_DEAD_LETTERED: QuorumQueueArgs = {
    "x-delivery-limit": DELIVERY_LIMIT,
    "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
    "x-dead-letter-strategy": "at-least-once",
    "x-overflow": "reject-publish",
}


def quorum_queue(name: str, *, dead_lettered: bool = True, routing_key: str = "") -> RabbitQueue:
    """A durable quorum queue; a dead-lettered one gives a delivery up after ``DELIVERY_LIMIT``.

    ``routing_key`` is the binding key a subscriber states (FastStream binds with the queue's name
    when it is empty).
    """
    return RabbitQueue(
        name, queue_type=QueueType.QUORUM, durable=True, routing_key=routing_key,
        arguments=_DEAD_LETTERED if dead_lettered else None,  # copied into the queue's own arguments
    )


intake = quorum_queue(INTAKE_QUEUE)
replays = quorum_queue(REPLAY_QUEUE)
mappings = quorum_queue(MAPPINGS_QUEUE)
transfers = quorum_queue(TRANSFERS_QUEUE)
deposits = quorum_queue(DEPOSITS_QUEUE)
operator_commands = quorum_queue(COMMANDS_QUEUE)
unrouted_queue = quorum_queue(UNROUTED_QUEUE)
# The end of the line: no delivery limit and no further dead-lettering. paypost consumes it
# and keeps each message with its FAILED posting.
dead_letters = quorum_queue(DEAD_LETTER_QUEUE, dead_lettered=False)

EXCHANGES = (unrouted, dead_letter, payments, commands, events)

# (queue, exchange, routing keys)
BINDINGS: tuple[tuple[RabbitQueue, RabbitExchange, tuple[str, ...]], ...] = (
    (intake, payments, (PAYMENT_POSTED, PAYMENT_REFUNDED, PAYMENT_VOIDED, PAYMENT_RETURNED, PAYMENT_DISPUTED,
                        DISPUTE_CLOSED)),
    (mappings, payments, (PATIENT_MAPPING_UPDATED,)),
    (transfers, payments, (TRANSFER_SETTLED,)),
    (deposits, payments, (DEPOSIT_RECEIVED,)),
    (operator_commands, commands, (POSTING_RETRY, POSTING_CLEAR)),
    (unrouted_queue, unrouted, ("",)),
    (dead_letters, dead_letter, ("",)),
)

# Queues reached only through the default exchange (by name).
UNBOUND = (replays,)
