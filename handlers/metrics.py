"""Prometheus metrics: what arrived, what loaded, what failed and why, and how long it took."""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram

from paypost.domain.load_errors import LoadErrorCode
from paypost.domain.model import LoadStatus
from paypost.schemas.messages import INBOUND_MESSAGES

RECEIVED = Counter("paypost_payments_received", "Payment and refund messages received", ["kind"])
LOADED = Counter("paypost_postings_loaded", "Postings loaded into a ledger", ["kind"])
FAILED = Counter("paypost_postings_failed", "Postings that failed to load, by Load Error", ["error_code"])
RETRIED = Counter("paypost_postings_retried", "Postings sent back for loading", ["action"])
UNROUTED = Counter("paypost_unrouted", "Messages paypost.payments routed to no queue (kept via its alternate exchange)",
                   ["routing_key"])
# Its label's values: a publisher chooses the routing key, so only the contract's own are labels.
UNROUTED_LABELS = frozenset(INBOUND_MESSAGES)


def unrouted_label(routing_key: str, *, readable: bool) -> str:
    """The contract's routing key as it came; ``other`` for another key of a readable message,
    ``unknown`` for an unreadable one: a bounded set, whatever a publisher sends."""
    if not readable:
        return "unknown"
    return routing_key if routing_key in UNROUTED_LABELS else "other"
CLEARED = Counter("paypost_postings_cleared", "Postings cleared by an operator")
LATENCY = Histogram(
    "paypost_posting_latency_seconds",
    "From a payment's delivery to its durable outcome",
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
QUEUE_MESSAGES = Gauge("paypost_queue_messages", "Messages waiting in a paypost queue", ["queue"])
QUEUE_CONSUMERS = Gauge("paypost_queue_consumers", "Consumers of a paypost queue", ["queue"])
DEAD_LETTER_DEPTH = Gauge("paypost_dead_letter_queue_depth", "Messages waiting in paypost.postings.dead")
CONSUMER_LAG = Gauge("paypost_consumer_lag_messages", "Payments waiting in the intake queue, not yet taken")



def observe(load_status: LoadStatus | None, error_code: LoadErrorCode | None, started: float) -> None:
    """Count one settled intake delivery and the time from its delivery to its durable outcome."""
    if load_status is LoadStatus.LOADED:
        LOADED.labels("posting").inc()
    elif load_status is LoadStatus.FAILED and error_code is not None:
        FAILED.labels(error_code.value).inc()
    LATENCY.observe(time.perf_counter() - started)
