"""Exchange names, routing keys and headers that outsiders integrate with (contract section 1)."""

from __future__ import annotations

PAYMENTS_EXCHANGE = "paypost.payments"
COMMANDS_EXCHANGE = "paypost.commands"
EVENTS_EXCHANGE = "paypost.events"
DEAD_LETTER_QUEUE = "paypost.postings.dead"

PAYMENT_POSTED = "payment.posted"
PAYMENT_REFUNDED = "payment.refunded"
# (1.2) money that moves back (contract section 10)
PAYMENT_VOIDED = "payment.voided"
PAYMENT_RETURNED = "payment.returned"
PAYMENT_DISPUTED = "payment.disputed"
DISPUTE_CLOSED = "dispute.closed"
TRANSFER_SETTLED = "transfer.settled"
PATIENT_MAPPING_UPDATED = "patient.mapping.updated"
DEPOSIT_RECEIVED = "deposit.received"

POSTING_RETRY = "posting.retry"
POSTING_CLEAR = "posting.clear"

# Replays go straight to their queue through the default exchange; these headers carry
# the original routing key and how many times the posting has been replayed.
INTAKE_QUEUE = "paypost.postings"
# Replays have a queue of their own, consumed with a small prefetch: a bulk retry of 50,000 never
# stands in front of new payments.
REPLAY_QUEUE = "paypost.replays"
ROUTING_KEY_HEADER = "x-paypost-routing-key"
REPLAYS_HEADER = "x-paypost-replays"

SCHEMA_VERSION_HEADER = "schema_version"
SCHEMA_VERSION = 1
CONTENT_TYPE = "application/json"


def loaded_key(practice_id: str) -> str:
    return f"posting.loaded.{practice_id}"


def failed_key(practice_id: str, error_code: str) -> str:
    return f"posting.failed.{practice_id}.{error_code}"


def reversed_key(practice_id: str, kind: str) -> str:
    """``payment.reversed.<practice_id>.<kind>``: a void, return or chargeback loaded (contract section 10)."""
    return f"payment.reversed.{practice_id}.{kind}"


def retried_key(practice_id: str) -> str:
    return f"posting.retried.{practice_id}"


def held_key(practice_id: str) -> str:
    return f"posting.held.{practice_id}"


def cleared_key(practice_id: str) -> str:
    return f"posting.cleared.{practice_id}"


def alert_key(transition: str, practice_id: str, kind: str) -> str:
    return f"alert.{transition}.{practice_id}.{kind}"


def reconciled_key(practice_id: str) -> str:
    return f"transfer.reconciled.{practice_id}"


def deposit_matched_key(practice_id: str) -> str:
    return f"deposit.matched.{practice_id}"
