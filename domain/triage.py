"""The office's triage (contract section 8): failure groups, what a Save Changes would do, canaries.

A FAILED posting belongs to one failure group: its practice, its Load Error's code and the cause
the office fixes once for the whole group (the patient account for a mapping failure, the original
payment for a refund waiting on it, the ledger's reason for a rejection, the code alone otherwise).
The group's id is a hash of the three, so it is the same for as long as the group exists, in every
process, and the write that makes a posting FAILED can store it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from paypost.domain.load_errors import LoadError, LoadErrorCode, base_message
from paypost.domain.model import FINAL, LoadStatus
from paypost.domain.posting import PostingKey
from paypost.domain.rules import (
    MAPPING_FIXES,
    WAITS_FOR_PAYMENT,
    ItemResult,
    PostingState,
    clear_result,
    may_retry,
    retry_result,
)

GROUP_ID_LENGTH = 16  # hex digits of the hash: 64 bits, no collision among a practice's few groups
CAUSE_LIMIT = 300  # characters of a ledger's reason kept as the cause (reasons are short as a rule)


@dataclass(frozen=True, slots=True)
class FailureGroupKey:
    """What a FAILED posting is grouped by, and the group's id."""

    practice_id: str
    error_code: LoadErrorCode
    cause: str | None

    @property
    def group_id(self) -> str:
        text = f"{self.practice_id}|{self.error_code.value}|{self.cause or ''}"
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:GROUP_ID_LENGTH]


def reason_of(error: LoadError) -> str | None:
    """What a Load Error's message adds to its code's plain words (the ledger's reason, for one)."""
    base = base_message(error.code)
    extra = error.message[len(base):] if error.message.startswith(base) else error.message
    return extra.strip() or None


def failure_group(practice_id: str, error: LoadError, patient_account_id: str | None,
                  refunded_payment_id: str | None) -> FailureGroupKey:
    """The failure group of a posting that failed with ``error``."""
    cause: str | None
    if error.code in MAPPING_FIXES:
        cause = patient_account_id
    elif error.code in (WAITS_FOR_PAYMENT, LoadErrorCode.REVERSAL_EXCEEDS_PAYMENT):
        cause = refunded_payment_id  # the payment: one look at it settles every item of the group
    elif error.code is LoadErrorCode.LEDGER_REJECTED:
        reason = reason_of(error)
        cause = reason[:CAUSE_LIMIT] if reason else None
    else:
        cause = None
    return FailureGroupKey(practice_id, error.code, cause)


@dataclass(frozen=True, slots=True)
class FailureGroup:
    """One group as the office sees it: how many postings, how much money, since when."""

    key: FailureGroupKey
    count: int
    amount: Decimal
    first_failed_at: datetime | None
    last_failed_at: datetime | None


def largest_first(groups: Iterable[FailureGroup]) -> list[FailureGroup]:
    """Largest count first; then the most money, then by id, so the order is the same on every call."""
    return sorted(groups, key=lambda g: (-g.count, -g.amount, g.key.practice_id, g.key.group_id))


# What a Save Changes would do with an item (a dry run): said in the words the operation would use.

def would_retry(key_state: PostingState | None, payment_id: str, practice_id: str) -> ItemResult:
    if key_state is not None and may_retry(key_state.kind, key_state.load_status, key_state.replays):
        return ItemResult(payment_id, "retry", "retried", "Would be sent back for loading.")
    return retry_result(PostingKey(practice_id, payment_id), key_state, command_id="")


def would_clear(key_state: PostingState | None, payment_id: str, practice_id: str) -> ItemResult:
    if key_state is not None and key_state.load_status is LoadStatus.FAILED:
        return ItemResult(payment_id, "clear", "cleared", "Would be cleared.")
    return clear_result(PostingKey(practice_id, payment_id), key_state, command_id="")


# A canary: the first k retries go first; the rest follow only if every one of them loaded.

CANARY_DECIDED = FINAL | {LoadStatus.FAILED}  # an outcome is in (LOADED, CLEARED or FAILED)


@dataclass(frozen=True, slots=True)
class CanaryVerdict:
    """``proceed`` True: every canary loaded; False: stop, ``reason`` says why; None: still waiting."""

    proceed: bool | None
    reason: str = ""


def canary_verdict(states: dict[str, LoadStatus | None], recorded: bool, timed_out: bool) -> CanaryVerdict:
    """Decide a canary from its postings' load statuses (by payment id), once its command is applied
    (``recorded``); ``timed_out``: its outcomes took too long, which stops it too."""
    if recorded and all(s is not None and s in CANARY_DECIDED for s in states.values()):
        not_loaded = sorted(p for p, s in states.items() if s is not LoadStatus.LOADED)
        if not not_loaded:
            return CanaryVerdict(True)
        shown = ", ".join(f"{p} is {(states[p] or LoadStatus.FAILED).value}" for p in not_loaded[:5])
        more = f" and {len(not_loaded) - 5} more" if len(not_loaded) > 5 else ""
        return CanaryVerdict(False, f"Not applied: {len(not_loaded)} of the {len(states)} canary payments did not "
                                    f"load ({shown}{more}).")
    if timed_out:
        waiting = sorted(p for p, s in states.items() if s is None or s not in CANARY_DECIDED)
        return CanaryVerdict(False, f"Not applied: the canary's outcomes did not all arrive in time "
                                    f"(still waiting for {', '.join(waiting[:5]) or 'its command'}).")
    return CanaryVerdict(None)
