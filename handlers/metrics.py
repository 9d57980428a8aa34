"""Prometheus metrics: what arrived, what loaded, what failed and why, and how long it took."""

from __future__ import annotations

import platform
import time

from prometheus_client import Counter, Gauge, Histogram

from paypost.domain.load_errors import LoadErrorCode
from paypost.domain.model import LoadStatus
from paypost.schemas import PAYPOST_VERSION
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

# Requests to practices' systems (contract section 13). No practice label: 10,000 practices times
# parts, status classes and buckets would be hundreds of thousands of series. A practice in trouble
# is named by PRACTICES_HELD's companion below, by its alert in the API, and on its trace.
PRACTICE_SYSTEM_SECONDS = Histogram(
    "paypost_practice_system_request_seconds",
    "Requests to practices' systems (the ledger or its token endpoint), by part and status class",
    ["part", "status_class"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
PRACTICE_SYSTEM_THROTTLED = Counter("paypost_practice_system_throttled", "429 answers from practices' systems",
                                    ["part"])
TOKEN_FETCHES = Counter("paypost_practice_system_token_fetches",
                        "Access tokens fetched from practices' token endpoints", ["outcome"])
# Standing figures, read from the database on each scrape (paypost/bootstrap.py).
PRACTICES_HELD = Gauge("paypost_practices_held",
                       "Practices whose payments are held (their system is down or an operator held them)")
PRACTICE_HELD = Gauge("paypost_practice_held", "1 for each practice that is held; only held practices have a series",
                      ["practice_id"])
OUTBOX_BACKLOG = Gauge("paypost_alert_outbox_backlog", "Alerts due to go to practices' systems and not sent yet")
OUTBOX_OLDEST_SECONDS = Gauge("paypost_alert_outbox_oldest_seconds",
                              "Age of the oldest alert due to a practice's system")
ANNOUNCEMENTS_OWED = Gauge("paypost_announcements_owed", "Outcomes recorded whose events are not published yet")
AUDIT_UNSEALED = Gauge("paypost_audit_entries_unsealed", "Changes of audit trails waiting for a seal")
LAST_SEAL_AGE_SECONDS = Gauge("paypost_audit_last_seal_age_seconds", "Seconds since the audit trail was last sealed")
BUILD_INFO = Gauge("paypost_build_info", "paypost's version (always 1)", ["version", "python"])
BUILD_INFO.labels(PAYPOST_VERSION, platform.python_version()).set(1)


# The posting objective (README "Following a payment"): 99 % of payments LOADED, or FAILED with a
# Load Error code, within OBJECTIVE_SECONDS of paypost taking their delivery from the broker.
OBJECTIVE_SECONDS = 60.0
OBJECTIVE_PAYMENTS = Counter("paypost_objective_payments", "Payments taken from the intake queue and settled")
OBJECTIVE_ON_TIME = Counter("paypost_objective_payments_on_time",
                            "Payments LOADED, or FAILED with a Load Error code, within 60 s of arriving")


def objective(load_status: LoadStatus | None, error_code: LoadErrorCode | None, seconds: float) -> None:
    """Count one payment toward the posting objective: on time if it ended within the objective."""
    OBJECTIVE_PAYMENTS.inc()
    done = load_status is LoadStatus.LOADED or (load_status is LoadStatus.FAILED and error_code is not None)
    if done and seconds <= OBJECTIVE_SECONDS:
        OBJECTIVE_ON_TIME.inc()


def practice_system_request(part: str, status: int | None, seconds: float, *, timed_out: bool = False) -> None:
    """One request to a practice's system: its status class (2xx .. 5xx; timeout or error without an answer)."""
    status_class = f"{status // 100}xx" if status is not None else "timeout" if timed_out else "error"
    PRACTICE_SYSTEM_SECONDS.labels(part, status_class).observe(seconds)
    if status == 429:
        PRACTICE_SYSTEM_THROTTLED.labels(part).inc()


def held(practice_ids: set[str]) -> None:
    """The held practices' gauge: a series for each held one, removed once it is released."""
    PRACTICES_HELD.set(len(practice_ids))
    for labels in list(PRACTICE_HELD._metrics):  # the label values in place
        if labels[0] not in practice_ids:
            PRACTICE_HELD.remove(*labels)
    for practice_id in practice_ids:
        PRACTICE_HELD.labels(practice_id).set(1)
