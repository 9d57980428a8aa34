"""Retention (contract section 12): what paypost keeps, for how long, and the legal hold that keeps it.

``purge`` removes, in pages, the postings (with their trails) and access entries past
``PAYPOST_RETENTION_DAYS`` and the message bodies of settled postings past
``PAYPOST_MESSAGE_RETENTION_DAYS``, never a practice under legal hold; ``run_daily`` does it once a
day across every paypost process (the one holding the purge's lease, on a day no process has
purged yet).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime

from paypost.domain.access import AccessDenied, Principal
from paypost.domain.access_trail import PurgeCounts, Retention
from paypost.domain.ports import Record
from paypost.domain.ports.patient_data import DutyLease, PurgeProgress, RetentionStore
from paypost.handlers.changes import MissingReason
from paypost.handlers.practices import practice_not_found


def _now() -> datetime:
    return datetime.now(UTC)


class RetentionService:
    def __init__(self, store: RetentionStore, retention: Retention, clock: Callable[[], datetime] = _now) -> None:
        self._store = store
        self.retention = retention
        self._clock = clock

    async def hold(self, who: Principal, practice_id: str, reason: str) -> Record:
        """Put a practice under legal hold (admin): nothing of it is purged until the hold is lifted."""
        self._admin(who)
        if not reason.strip():
            raise MissingReason("a legal hold needs a reason")
        held = await self._store.hold(practice_id, reason, who.name)
        if held is None:
            raise practice_not_found(practice_id)
        return held

    async def lift(self, who: Principal, practice_id: str) -> Record:
        self._admin(who)
        lifted = await self._store.lift(practice_id)
        if lifted is None:
            raise practice_not_found(practice_id)
        return lifted

    @staticmethod
    def _admin(who: Principal) -> None:
        if not who.role.may_manage_keys:
            raise AccessDenied(f"{who.name} is not an admin: only an admin places or lifts a legal hold.")

    async def purge(self, *, dry_run: bool, page: int = 1000, progress: PurgeProgress | None = None,
                    by: str = "paypost") -> PurgeCounts:
        return await self._store.purge(self.retention, self._clock(), dry_run=dry_run, page=page,
                                       progress=progress, by=by)

    async def purge_once_today(self, lease: DutyLease, page: int = 1000) -> PurgeCounts | None:
        """The daily purge, if this process holds the lease and no process has purged today; its
        counts, or None when it was not this process's to do. The lease is renewed after each page."""
        if await lease.acquire() is None:
            return None
        day = self._clock().date().isoformat()
        if await self._store.done_on(day):
            return None

        async def renew(_: str, __: PurgeCounts) -> None:
            await lease.acquire()

        counts = await self.purge(dry_run=False, page=page, progress=renew, by="daily purge")
        await self._store.mark_done(day)
        return counts

    async def run_daily(self, lease: DutyLease, stop: asyncio.Event, every: float = 3600.0,
                        on_error: Callable[[Exception], object] | None = None,
                        on_done: Callable[[PurgeCounts], object] | None = None) -> None:
        """Try the daily purge every ``every`` seconds until ``stop``."""
        while not stop.is_set():
            try:
                counts = await self.purge_once_today(lease)
                if counts is not None and on_done is not None:
                    on_done(counts)
            except Exception as exc:  # noqa: BLE001 - tried again at the next round
                if on_error is not None:
                    on_error(exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every)
        with contextlib.suppress(Exception):
            await lease.release()
