"""Self-healing: the office fixes a cause once, and every payment it blocked loads by itself."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from paypost.domain.errors import loggable
from paypost.domain.events import PostingFailed
from paypost.domain.patient_ref import patient_ref
from paypost.domain.ports.practices import MappingFailure, MappingFailures, MappingStore
from paypost.domain.posting import PAYPOST_ACTOR, PostingKey
from paypost.domain.rules import MAPPING_FIXES
from paypost.handlers.operations import HealRun, PostingOperations

log = structlog.get_logger("paypost.healing")

T = TypeVar("T")
# Runs a step again while it fails transiently (the database's primary stepped down), with backoff.
Retrying = Callable[[Callable[[], Awaitable[T]]], Awaitable[T]]


def healed_by(held: str | None, failure: MappingFailure) -> bool:
    """Whether the mapping held now heals the failure: a retry would try another patient than the
    failed load did (``paypost.domain.model.choose_patient``: a mapping held wins over the event's id)."""
    return bool(held) and held != failure.tried_ehr_patient_id


class Healing:
    """Retries a patient account's mapping failures once its mapping is entered or corrected.

    The replay runs in the background (10,000 of them must not hold the office's request open).
    It lives in one process's memory, so it is not what makes the heal certain: a replay claimed
    and then cut short is finished by the stale-retry sweep, and a heal stopped before it claimed
    everything (a stop, a kill, its retries' budget spent on a failover) is finished by
    ``sweep``, which every worker runs with its slow sweeps: the mapping is in the database, so
    the FAILED postings it heals are found from there.
    """

    def __init__(self, operations: PostingOperations, mappings: MappingStore, retrying: Retrying[int],
                 failures: MappingFailures) -> None:
        self._operations = operations
        self._mappings = mappings
        self._retrying = retrying
        self._failures = failures
        self._swept_to: PostingKey | None = None  # where the next sweep's page starts
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
            log.info("mapping_changed_while_failing", posting=str(posting.key),
                     patient_ref=patient_ref(posting.key.practice_id, account))
            await self.after_mapping(posting.key.practice_id, account, held, caused_by=None)

    async def sweep(self, limit: int = 1000) -> int:
        """Retry the mapping failures whose account has, by now, a mapping that heals them; how many.

        A page of ``limit`` failures each sweep, the next page the next sweep, round again after the
        last: failures that wait for a mapping nobody entered yet (they may be many) cost one page
        a sweep and never hide the ones after them. Any number of workers may sweep at once, and
        while a heal runs: each retry's claim is one conditional write (FAILED to RETRYING), so each
        posting is claimed once and replayed once.
        """
        page = await self._failures.mapping_failures(limit, after=self._swept_to)
        self._swept_to = page[-1].key if len(page) == limit else None
        accounts: dict[tuple[str, str], list[MappingFailure]] = {}
        for failure in page:
            accounts.setdefault((failure.key.practice_id, failure.patient_account_id), []).append(failure)
        # Asked together: the store reads the mappings of many accounts in one query.
        held_now = await asyncio.gather(*(self._mappings.get(p, a) for p, a in accounts))
        healed = 0
        for ((practice_id, account), failures), held in zip(accounts.items(), held_now, strict=True):
            payment_ids = [f.key.payment_id for f in failures if healed_by(held, f)]
            if not payment_ids:
                continue
            results = await self._operations.retry(
                practice_id, payment_ids, actor=PAYPOST_ACTOR, command_id=f"auto-{uuid.uuid4()}",
                action="auto_retry", reason=f"mapping of patient account {account} is {held} (found by the sweep)")
            healed += sum(r.result == "retried" for r in results)
        if healed:
            log.warning("mapping_failures_healed_by_sweep", count=healed)
        return healed

    def _done(self, task: asyncio.Future[int]) -> None:
        self._running.discard(task)
        error = None if task.cancelled() else task.exception()
        if error is not None:
            # What was claimed is replayed by the stale-retry sweep, what was not by ``sweep``.
            log.error("self_heal_failed", error=loggable(error))

    async def wait(self, grace: float) -> None:
        """Let the replays under way finish (at a stop), for at most ``grace`` seconds."""
        if self._running:
            await asyncio.wait(self._running, timeout=grace)

    def cancel(self) -> None:
        for task in self._running:
            task.cancel()
