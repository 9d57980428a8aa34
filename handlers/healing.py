"""Self-healing: the office fixes a cause once, and every payment it blocked loads by itself."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from domain.events import PostingFailed
from domain.ports import MappingStore
from domain.rules import MAPPING_FIXES
from handlers.operations import HealRun, PostingOperations

log = structlog.get_logger("paypost.healing")

T = TypeVar("T")
# Runs a step again while it fails transiently (the database's primary stepped down), with backoff.
Retrying = Callable[[Callable[[], Awaitable[T]]], Awaitable[T]]


class Healing:
    """Retries a patient account's mapping failures once its mapping is entered or corrected.

    The replay runs in the background (10,000 of them must not hold the office's request open);
    a replay cut short by a crash is finished by the stale-retry sweep.
    """

    def __init__(self, operations: PostingOperations, mappings: MappingStore, retrying: Retrying[int]) -> None:
        self._operations = operations
        self._mappings = mappings
        self._retrying = retrying
        self._running: set[asyncio.Future[int]] = set()

    async def after_mapping(self, practice_id: str, patient_account_id: str, ehr_patient_id: str,
                            caused_by: str | None) -> int:
        """Start retrying what the account's missing or wrong mapping blocked; returns how many.

        ``caused_by`` is who entered the mapping (None: seen by paypost after the fact)."""
        blocked = await self._operations.blocked_by_mapping(practice_id, patient_account_id)
        if blocked:
            reason = f"mapping of patient account {patient_account_id} set to {ehr_patient_id} " + (
                f"by {caused_by}" if caused_by else "while this payment was failing")
            # Each chunk's claim is one conditional write, so a heal run again (a failover cut it
            # short) claims only what is still FAILED and replays nothing twice.
            run = HealRun()  # the same token and postings however often the heal is run again
            task = asyncio.ensure_future(self._retrying(
                lambda: self._operations.heal_account(practice_id, patient_account_id, reason, run)))
            self._running.add(task)
            task.add_done_callback(self._done)
        return blocked

    async def failed(self, event: PostingFailed) -> None:
        """A mapping entered between this payment's mapping read and its FAILED write: the office's
        fix looked for FAILED payments before this one was one, so it is looked at again here."""
        posting = event.posting
        account = posting.patient_account_id
        if posting.load_error is None or posting.load_error.code not in MAPPING_FIXES or account is None:
            return
        held = await self._mappings.get(posting.key.practice_id, account)
        if held and held != posting.ehr_patient_id:
            log.info("mapping_changed_while_failing", posting=str(posting.key), patient_account_id=account)
            await self.after_mapping(posting.key.practice_id, account, held, caused_by=None)

    def _done(self, task: asyncio.Future[int]) -> None:
        self._running.discard(task)
        error = None if task.cancelled() else task.exception()
        if error is not None:
            # What was claimed is replayed by the stale-retry sweep; say why it stopped.
            log.error("self_heal_failed", error=repr(error)[:300])

    async def wait(self, grace: float) -> None:
        """Let the replays under way finish (at a stop), for at most ``grace`` seconds."""
        if self._running:
            await asyncio.wait(self._running, timeout=grace)

    def cancel(self) -> None:
        for task in self._running:
            task.cancel()
