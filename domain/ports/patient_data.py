"""Patient data (contract section 12): the access trail, and retention with its legal hold."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Protocol

from paypost.domain.access import Scope
from paypost.domain.access_trail import AccessEntry, AccessQuery, PurgeCounts, Retention
from paypost.domain.ports import Record


class AccessEntries(Protocol):
    """The access trail: written off the request's path, read by admins."""

    def record(self, entry: AccessEntry) -> None:
        """Keep ``entry`` for writing; never waits for the database."""

    async def page(self, query: AccessQuery, scope: Scope, limit: int,
                   cursor: str | None) -> tuple[list[Record], str | None]:
        """Entries newest first, within ``scope``; raises ``BadCursor`` for a cursor not handed out."""
        ...


# Told after each page of a purge: what it was purging, and the counts so far.
PurgeProgress = Callable[[str, PurgeCounts], Awaitable[None] | None]


class RetentionStore(Protocol):
    async def hold(self, practice_id: str, reason: str, by: str) -> Record | None:
        """Put a practice under legal hold; None for a practice not set up."""

    async def lift(self, practice_id: str) -> Record | None:
        """Lift a practice's legal hold; None for a practice not set up."""

    async def held(self) -> list[str]:
        """The practices under legal hold."""
        ...

    async def purge(self, retention: Retention, now: datetime, *, dry_run: bool, page: int = 1000,
                    progress: PurgeProgress | None = None, by: str = "paypost") -> PurgeCounts:
        """Remove (or count) what retention says must go, in pages; each page and the run recorded."""
        ...

    async def done_on(self, day: str) -> bool:
        """Whether the daily purge has run on ``day`` (any process)."""
        ...

    async def mark_done(self, day: str) -> None:
        """Say the daily purge has run on ``day``."""


class DutyLease(Protocol):
    async def acquire(self) -> object | None:
        """Take or renew the lease; None while another process holds it."""

    async def release(self) -> None:
        """Give it up at once."""
