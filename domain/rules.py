"""The posting life cycle's rules beyond its transitions: what may be retried and what became of
a retry or a clear, where a refund goes, which failures a mapping fix heals.

``infra/`` derives its conditional writes from these (and from ``paypost.domain.model``'s transitions),
so the rule is stated once, here, and the database only enforces it.
"""

from __future__ import annotations

from dataclasses import dataclass

from paypost.domain.errors import LoadFailure
from paypost.domain.load_errors import LoadErrorCode
from paypost.domain.model import FINAL, IN_FLIGHT, LoadStatus, PostingKind, sources_of
from paypost.domain.posting import Posting, PostingKey

# A posting replayed this many times is not replayed again: a loop, or a cause nobody fixed.
MAX_REPLAYS = 25
# Retry claims FAILED → RETRYING; only a payment, refund or reversal can load again.
RETRYABLE_FROM = sources_of(LoadStatus.RETRYING)
RETRYABLE_KINDS = frozenset({PostingKind.PAYMENT, PostingKind.REFUND, PostingKind.VOID, PostingKind.RETURN,
                             PostingKind.CHARGEBACK, PostingKind.DISPUTE_WON})
CLEARABLE_FROM = sources_of(LoadStatus.CLEARED)

# Fixing a mapping is the cause the office can fix once for every payment it blocked.
MAPPING_FIXES = frozenset({LoadErrorCode.PATIENT_NOT_MAPPED, LoadErrorCode.PATIENT_NOT_FOUND})
# A refund that failed with this waits for its payment: it is retried when the payment loads.
WAITS_FOR_PAYMENT = LoadErrorCode.ORIGINAL_PAYMENT_NOT_LOADED
# It waits where a retry takes it from (FAILED), and goes once its payment is in this status: the
# refund is posted to the patient the payment was loaded to (``refund_patient``).
REFUND_WAITS_IN = RETRYABLE_FROM
PAYMENT_REFUNDABLE = LoadStatus.LOADED


def refund_waits(status: LoadStatus, code: LoadErrorCode | None) -> bool:
    """Whether a refund in ``status`` that failed with ``code`` waits for its payment."""
    return status in REFUND_WAITS_IN and code is WAITS_FOR_PAYMENT


def may_retry(kind: PostingKind, status: LoadStatus, replays: int) -> bool:
    """Whether a retry may send this posting back for loading."""
    return status in RETRYABLE_FROM and kind in RETRYABLE_KINDS and replays < MAX_REPLAYS


@dataclass(frozen=True, slots=True)
class PostingState:
    """What an operation needs to know of a posting to say what became of its item."""

    key: PostingKey
    kind: PostingKind
    load_status: LoadStatus
    replays: int = 0
    retry_token: str | None = None  # the retry (command) that last claimed it
    clear_command: str | None = None  # the command that cleared it


@dataclass(frozen=True, slots=True)
class ItemResult:
    """One item of a retry or clear: ``retried``, ``cleared``, ``unchanged`` or ``rejected``, and why."""

    payment_id: str
    action: str  # "retry" or "clear"
    result: str
    message: str


def retried(key: PostingKey) -> ItemResult:
    """An item the retry sent back for loading (or loaded at once, in place)."""
    return ItemResult(key.payment_id, "retry", "retried", "Sent back for loading.")


def retry_result(key: PostingKey, state: PostingState | None, command_id: str) -> ItemResult:
    """What became of one item of retry ``command_id``, read after its claim."""

    def item(result: str, message: str) -> ItemResult:
        return ItemResult(key.payment_id, "retry", result, message)

    if state is None:
        return item("rejected", f"No posting {key.payment_id} for practice {key.practice_id}.")
    if state.retry_token == command_id:
        return retried(key)
    if state.load_status in FINAL:
        return item("unchanged", f"Already {state.load_status.value}: nothing to retry.")
    if state.load_status in IN_FLIGHT:
        return item("unchanged", f"Already being loaded ({state.load_status.value}).")
    if state.kind not in RETRYABLE_KINDS:
        return item("rejected", "An unreadable message cannot load: fix the publisher, then clear this row.")
    if state.replays >= MAX_REPLAYS:
        return item("rejected", f"Replayed {MAX_REPLAYS} times already: fix the cause, or clear it.")
    return item("unchanged", "Changed by someone else just now; reload to see it.")


def clear_result(key: PostingKey, state: PostingState | None, command_id: str) -> ItemResult:
    """What became of one item of clear ``command_id`` that this call did not clear itself."""

    def item(result: str, message: str) -> ItemResult:
        return ItemResult(key.payment_id, "clear", result, message)

    if state is None:
        return item("rejected", f"No posting {key.payment_id} for practice {key.practice_id}.")
    if state.clear_command == command_id:
        return item("cleared", "Cleared.")  # this command cleared it on an earlier delivery
    if state.load_status in FINAL:
        return item("unchanged", f"Already {state.load_status.value}: nothing to clear.")
    return item("rejected",
                f"It is {state.load_status.value}: wait for that load's outcome, then clear it if it fails.")


def refund_account(original: Posting | None) -> str | None:
    """A refund belongs to its payment's patient account, known as soon as the payment is."""
    return original.patient_account_id if original is not None else None


def refund_patient(refund: Posting, original: Posting | None) -> str:
    """The practice-management patient a refund goes to: the one its payment was loaded to.

    Raises ``LoadFailure(ORIGINAL_PAYMENT_NOT_LOADED)`` while the payment is not loaded; the
    refund then waits for it (it is retried when the payment loads).
    """
    if original is None or original.load_status is not PAYMENT_REFUNDABLE or not original.ehr_patient_id:
        state = "not received" if original is None else original.load_status.value
        raise LoadFailure(WAITS_FOR_PAYMENT, f"Payment {refund.refunded_payment_id} is {state}.")
    return original.ehr_patient_id
