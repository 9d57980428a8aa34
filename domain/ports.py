"""What the posting service needs from the outside world, as protocols."""

from __future__ import annotations

from typing import Protocol

from domain.load_errors import LoadError
from domain.posting import (
    Attempt,
    AuditEntry,
    Integration,
    KeptMessage,
    LedgerEntryRequest,
    LedgerReceipt,
    Posting,
    PostingKey,
)


class PostingStore(Protocol):
    """Where postings and their outcomes are kept."""

    async def insert_received(self, posting: Posting, message: KeptMessage, audit: AuditEntry) -> bool:
        """Insert a new PENDING posting; False if one with its key exists."""

    async def get(self, key: PostingKey) -> Posting | None: ...

    async def claim_for_replay(
        self, posting: Posting, message: KeptMessage, audit: AuditEntry
    ) -> bool:
        """FAILED → RETRYING with a republished body; False if the posting was not FAILED."""

    async def record_loaded(
        self, key: PostingKey, attempt: Attempt, ehr_patient_id: str, entry_id: str,
        patient_account_id: str | None = None,
    ) -> bool:
        """In flight → LOADED; False if the posting was no longer in flight."""

    async def record_failed(
        self, key: PostingKey, attempt: Attempt, error: LoadError, ehr_patient_id: str | None,
        patient_account_id: str | None = None,
    ) -> bool:
        """In flight → FAILED; False if the posting was no longer in flight."""

    async def insert_unreadable(
        self, posting: Posting, message: KeptMessage, audit: AuditEntry
    ) -> tuple[PostingKey, bool]:
        """Keep an unreadable message as a FAILED row of its own: its key, and whether it is new."""

    async def mark_dead_lettered(
        self, key: PostingKey, message: KeptMessage, audit: AuditEntry
    ) -> bool:
        """Keep a dead-lettered message with its posting, once per message."""


class PracticeDirectory(Protocol):
    async def integration(self, practice_id: str) -> Integration | None: ...


class MappingStore(Protocol):
    async def get(self, practice_id: str, patient_account_id: str) -> str | None: ...


class Ledger(Protocol):
    """A practice-management ledger. Posting the same request twice makes one entry."""

    async def post(self, request: LedgerEntryRequest) -> LedgerReceipt:
        """Post an entry; raises LoadFailure for what only a person can fix."""


class LedgerFactory(Protocol):
    def for_integration(self, integration: Integration) -> Ledger: ...
