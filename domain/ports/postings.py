"""Postings: storing outcomes, the commands on them, and the read side of the report."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from paypost.domain.access import EVERY, Scope
from paypost.domain.load_errors import LoadError, LoadErrorCode
from paypost.domain.model import LoadStatus
from paypost.domain.overview import PracticeOverview
from paypost.domain.ports import Record
from paypost.domain.posting import (
    Attempt,
    AuditEntry,
    FirstOutcome,
    KeptMessage,
    Posting,
    PostingKey,
)
from paypost.domain.rules import PostingState
from paypost.domain.triage import FailureGroup


class PostingStore(Protocol):
    """Where postings and their outcomes are kept (the intake's side)."""

    async def insert_received(self, posting: Posting, message: KeptMessage, audit: AuditEntry) -> bool:
        """Insert a new PENDING posting; False if one with its key exists."""

    async def get(self, key: PostingKey) -> Posting | None: ...

    async def claim_for_replay(self, posting: Posting, message: KeptMessage, audit: AuditEntry) -> bool:
        """FAILED → RETRYING with a republished body; False if the posting was not FAILED."""

    async def retryable_payments(self, keys: Sequence[PostingKey], token: str) -> list[Posting]:
        """The payments among ``keys`` that retry ``token`` may retry (FAILED, below the replay limit,
        not retried by it before), as their rows hold them."""

    async def retried_and_loaded(self, key: PostingKey, token: str, retry: AuditEntry, attempt: Attempt,
                                 ehr_patient_id: str, entry_id: str, patient_account_id: str | None,
                                 ledger_entry: Record | None) -> bool:
        """FAILED → LOADED by retry ``token`` in one write (its claim and its outcome, as a retry's
        are, both in the trail: ``retry``, then ``loaded``); False if it was no longer retryable by it."""

    async def record_loaded(self, key: PostingKey, attempt: Attempt, ehr_patient_id: str, entry_id: str,
                            patient_account_id: str | None, settled: tuple[Decimal, str] | None = None,
                            ledger_entry: Record | None = None) -> bool:
        """In flight → LOADED; False if the posting was no longer in flight. ``settled``: the amount
        and currency learnt as it loaded (a void's, a won dispute's), set on its row; ``ledger_entry``:
        the built-in ledger's entry (``LedgerReceipt.entry``), kept in the row by the same write."""

    async def record_failed(self, key: PostingKey, attempt: Attempt, error: LoadError, ehr_patient_id: str | None,
                            patient_account_id: str | None, refunded_payment_id: str | None = None) -> bool:
        """In flight → FAILED, in its failure group (``paypost.domain.triage``); False if no longer in flight."""

    async def mark_sent(self, key: PostingKey, at: datetime) -> bool:
        """Note on an in-flight posting that its entry is about to be sent to the practice's system
        (``Posting.sent_at``), unless noted before: True if no call for it was noted before (none
        was sent), False if one was (its answer may have been lost: look the entry up first)."""

    async def insert_finished(self, posting: Posting, message: KeptMessage, received: AuditEntry,
                              attempt: Attempt, entry_id: str | None, ledger_entry: Record | None = None) -> bool:
        """Insert a new posting with its outcome (``posting.load_status``, LOADED or FAILED) at once, for
        a ledger in paypost's own database (``Integration.posts_with_its_row``), with the built-in
        ledger's entry if it loaded; False if one with its key exists (and nothing is written)."""

    async def insert_finished_many(self, outcomes: Sequence[FirstOutcome]) -> list[bool | Exception]:
        """``insert_finished`` for each of ``outcomes`` at once (one round trip): True where written,
        False where a posting with its key exists, or the error that stopped it."""

    async def insert_unreadable(self, posting: Posting, message: KeptMessage,
                                audit: AuditEntry) -> tuple[PostingKey, bool]:
        """Keep an unreadable message as a FAILED row of its own: its key, and whether it is new."""

    async def mark_dead_lettered(self, key: PostingKey, death: str, audit: AuditEntry) -> bool:
        """Note in the posting's trail that its message was dead-lettered, once per ``death`` (the
        message and the dead-lettering, as one marker); False if noted before."""

    async def owe_announcement(self, key: PostingKey, owed: str) -> None:
        """Note on the posting that its outcome's event (``paypost.domain.events.owed_as``) is still owed."""

    async def announced(self, key: PostingKey) -> None:
        """The owed event is sent: the note goes."""

    async def park(self, key: PostingKey, held: bool, audit: AuditEntry) -> Posting | None:
        """Park an in-flight posting to wait for its practice's system (``paypost.domain.outages``): it stays
        in flight, HELD if ``held``. The posting if this call made it HELD, else None."""

    async def parked(self, practice_id: str, limit: int) -> list[tuple[Posting, KeptMessage]]:
        """The practice's parked postings, in the order received (oldest first)."""

    async def parked_practices(self) -> list[str]:
        """Every practice with a parked posting."""

    async def parked_count(self, practice_id: str) -> int:
        """How many of the practice's postings are parked."""


@dataclass(frozen=True, slots=True)
class FailedSelection:
    """FAILED postings of a practice, narrowed by Load Error, patient account or merchant transfer."""

    practice_id: str
    error_codes: frozenset[LoadErrorCode] | None = None
    patient_account_id: str | None = None
    merchant_transfer_id: str | None = None
    group_id: str | None = None  # a failure group (``paypost.domain.triage``)


class PostingCommands(Protocol):
    """Operator and self-healing changes to postings; each item is one conditional write."""

    async def claim_for_retry(self, keys: Sequence[PostingKey], token: str,
                              audit: AuditEntry) -> list[tuple[Posting, KeptMessage]]:
        """FAILED → RETRYING for every key still retryable (``paypost.domain.rules.may_retry``), marked with
        ``token``; returns exactly what this call claimed, whatever raced it."""

    async def failed_keys(self, selection: FailedSelection, limit: int | None = None) -> list[PostingKey]: ...

    async def failed_refunds_by_payment(self, practice_id: str,
                                        payment_ids: Sequence[str]) -> dict[str, list[PostingKey]]:
        """Refunds waiting for one of these payments (``paypost.domain.rules.WAITS_FOR_PAYMENT``), by payment."""

    async def refunds_waiting_on_loaded(self, limit: int = 1000) -> dict[str, list[PostingKey]]:
        """Refunds still waiting for a payment that has loaded since, by practice."""

    async def stale_retrying(self, older_than_seconds: float, limit: int = 1000) -> list[tuple[Posting, KeptMessage]]:
        """RETRYING postings untouched for a while (a replay lost), each touched so the next sweep leaves it."""

    async def states(self, keys: Sequence[PostingKey]) -> dict[PostingKey, PostingState]: ...

    async def clear(self, key: PostingKey, command_id: str, audit: AuditEntry,
                    manual_reference: str | None) -> Posting | None:
        """FAILED → CLEARED; the cleared posting, or None if it was not FAILED."""

    async def record_clear_verified(self, key: PostingKey, verified: bool | None) -> None:
        """What the practice's system said of a clear's manual reference (None: it could not say)."""


class ClearEvidence(Protocol):
    """The practice's system, asked about an entry posted by hand (contract section 7)."""

    async def verify(self, practice_id: str, manual_reference: str, amount: Decimal | None) -> bool | None:
        """True if the system holds an entry by that reference for that amount, False if it holds
        none (or one of another amount), None if it cannot say (no such system, or no answer)."""


@dataclass(frozen=True, slots=True)
class PostingFilter:
    """The Merchant Transfers report's filters (each optional)."""

    practice_id: str | None = None
    status: LoadStatus | None = None
    error_code: LoadErrorCode | None = None
    merchant_transfer_id: str | None = None
    patient_account_id: str | None = None
    received_from: datetime | None = None
    received_to: datetime | None = None
    scope: Scope = EVERY  # the practices the caller sees (section 6): every one by default


@dataclass(frozen=True, slots=True)
class StatusTotal:
    """How many postings a Load Status holds, and their amounts as the report's rows show them."""

    status: LoadStatus
    count: int
    amount: Decimal


class PostingReader(Protocol):
    """The report's rows, newest first, paged by an opaque cursor.

    Rows are Records: the API renders them (``api/render.py``) and no handler reads a field of one."""

    async def page(self, where: PostingFilter, limit: int, cursor: str | None) -> tuple[list[Record], str | None]:
        """Raises ``paypost.domain.errors.BadCursor`` for a cursor paypost did not hand out."""

    async def one(self, key: PostingKey) -> Record | None:
        """One posting with its attempts and audit trail."""

    async def rows(self, practice_id: str, payment_ids: Sequence[str]) -> list[Record]: ...

    def every_row(self, where: PostingFilter) -> AsyncIterator[Record]:
        """Every row the filter selects, newest first, read from the database a batch at a time."""
        ...

    async def summary(self, where: PostingFilter) -> list[StatusTotal]:
        """Count and amount per Load Status of the postings the filter selects (statuses with none left out)."""


class FailureGroupReader(Protocol):
    """The failure groups of FAILED postings (``paypost.domain.triage``), kept current by the writes on postings."""

    async def groups(self, practice_id: str | None, scope: Scope) -> list[FailureGroup]:
        """Largest count first; one practice's, or every practice's within ``scope``."""


class PostingNotes(Protocol):
    """Notes and the assignee of a posting; each is an entry of its audit trail."""

    async def add_note(self, key: PostingKey, entry: AuditEntry) -> int | None:
        """Append a note (action ``note``); the posting's notes count after it, None if no such posting."""

    async def assign(self, key: PostingKey, assignee: str | None, entry: AuditEntry) -> bool:
        """Set or clear who is looking at the posting; False if no such posting."""


# ---- the overview of a key's practices (issue 30) ------------------------------------------------

class PracticeOverviews(Protocol):
    """Every practice in a scope with its failures, hold and open alerts: one aggregation, paged."""

    async def overview(self, scope: Scope, limit: int, offset: int) -> tuple[list[PracticeOverview], int]:
        """The practices from ``offset``, most FAILED payments first (then the most money, then by
        id), at most ``limit``; and how many there are in all."""
