"""Settled merchant transfers and their reconciliation."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from paypost.domain.reconciliation import Reconciliation
from paypost.domain.transfers import SettledTransfer


class TransferStore(Protocol):
    """Settled merchant transfers and the state of the postings they carry."""

    async def settled(self, transfer: SettledTransfer) -> None:
        """Keep a settled transfer; a later settlement of the same transfer replaces it."""

    async def get(self, practice_id: str, merchant_transfer_id: str) -> SettledTransfer | None: ...

    async def reconcile(self, transfer: SettledTransfer) -> Reconciliation: ...

    async def unreconciled_with_any(self, practice_id: str, posting_ids: Sequence[str]) -> list[SettledTransfer]: ...

    async def unreconciled(self, limit: int) -> list[SettledTransfer]: ...

    async def mark_reconciled(self, transfer: SettledTransfer, at: datetime) -> bool:
        """True for the one call that marked it (a transfer is announced reconciled once)."""
