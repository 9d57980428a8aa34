"""The read side: the Merchant Transfers report, one posting, an operation, a transfer, alerts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from paypost.domain.access import EVERY, Scope
from paypost.domain.alerts import Alert, AlertState
from paypost.domain.ports import Record
from paypost.domain.ports.alerts import AlertStore
from paypost.domain.ports.operations import OperationStore
from paypost.domain.ports.postings import FailedSelection, PostingCommands, PostingFilter, PostingReader, StatusTotal
from paypost.domain.ports.transfers import TransferStore
from paypost.domain.posting import PostingKey
from paypost.domain.reconciliation import Reconciliation
from paypost.domain.transfers import SettledTransfer
from paypost.handlers.practices import NotFound


def operation_not_found(operation_id: str) -> NotFound:
    return NotFound(f"No operation {operation_id}.")


class Reports:
    def __init__(self, postings: PostingReader, selections: PostingCommands, operations: OperationStore,
                 transfers: TransferStore, alerts: AlertStore) -> None:
        self._postings = postings
        self._selections = selections
        self._operations = operations
        self._transfers = transfers
        self._alerts = alerts

    async def page(self, where: PostingFilter, limit: int, cursor: str | None) -> tuple[list[Record], str | None]:
        """Report rows, newest first; raises ``paypost.domain.errors.BadCursor`` for a cursor not handed out."""
        return await self._postings.page(where, limit, cursor)

    def every_row(self, where: PostingFilter) -> AsyncIterator[Record]:
        """Every row the filter selects, newest first, a batch at a time (an export)."""
        return self._postings.every_row(where)

    async def summary(self, where: PostingFilter) -> list[StatusTotal]:
        """Count and amount per Load Status of what the filter selects (the office's first view)."""
        return await self._postings.summary(where)

    async def posting(self, key: PostingKey) -> Record:
        doc = await self._postings.one(key)
        if doc is None:
            raise NotFound(f"No posting {key.payment_id} for practice {key.practice_id}.")
        return doc

    async def rows(self, practice_id: str, payment_ids: Sequence[str]) -> list[Record]:
        return await self._postings.rows(practice_id, payment_ids)

    async def failed(self, selection: FailedSelection) -> list[PostingKey]:
        """Every FAILED posting the selection names (a bulk retry or clear)."""
        return await self._selections.failed_keys(selection)

    async def operation(self, operation_id: str) -> Record:
        op = await self._operations.get(operation_id)
        if op is None:
            raise operation_not_found(operation_id)
        return op

    async def transfer(self, practice_id: str, merchant_transfer_id: str) -> tuple[SettledTransfer, Reconciliation]:
        """A settled transfer reconciled now, so it is always current."""
        transfer = await self._transfers.get(practice_id, merchant_transfer_id)
        if transfer is None:
            raise NotFound(f"Transfer {merchant_transfer_id} has not settled for practice {practice_id} "
                           "(no transfer.settled received).")
        return transfer, await self._transfers.reconcile(transfer)

    async def alerts(self, practice_id: str | None, state: AlertState | None, limit: int,
                     scope: Scope = EVERY) -> list[Alert]:
        return await self._alerts.list(practice_id, state, limit, scope)
