"""Save Changes operations and their canaries."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from paypost.domain.operations import Canary, CanaryPhase, CanaryPlan, OperationItem
from paypost.domain.ports import Record
from paypost.domain.rules import ItemResult


class OperationStore(Protocol):
    """Save Changes operations: the selection, and each item's result as commands are applied."""

    async def create(self, operation_id: str, practice_id: str, actor: str, items: Sequence[OperationItem],
                     at: datetime, canary: CanaryPlan | None = None) -> None:
        """Record an operation; with ``canary`` (its first retries, the rest, a deadline) it waits for a verdict."""

    async def canaries_to_advance(self, now: datetime, stale_after: float, limit: int = 100) -> list[Canary]:
        """Canaries waiting for a verdict, or whose verdict's claim is older than ``stale_after``."""

    async def claim_canary(self, operation_id: str, phase: CanaryPhase, to: CanaryPhase, message: str | None,
                           at: datetime, claimed_before: datetime | None = None) -> bool:
        """Move a canary from ``phase`` to ``to``; True for the one call that moved it."""

    async def finish_canary(self, operation_id: str, phase: CanaryPhase, to: CanaryPhase) -> None:
        """The verdict is carried out: the canary leaves the ones to advance."""

    async def recorded(self, operation_id: str, action: str, payment_ids: Sequence[str]) -> set[str]:
        """Which of these items of the operation have their result kept."""

    async def discard(self, operation_id: str) -> None: ...

    async def record(self, operation_id: str, results: Sequence[ItemResult], at: datetime) -> None:
        """Keep each item's result; writing the same result again changes nothing."""

    async def cancel(self, operation_id: str, by: str, at: datetime) -> bool:
        """Mark a running operation cancelled (by whom, when); False if it was cancelled already."""

    async def cancelled(self, operation_id: str) -> bool:
        """Whether the operation was cancelled (read between chunks by the worker replaying it)."""

    async def get(self, operation_id: str) -> Record | None:
        """The operation with each item's result, as the API shows it (read to be rendered, never inspected)."""
