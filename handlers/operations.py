"""Retry and Clear: by operators (commands, Save Changes) and by paypost itself (self-healing)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import structlog

from paypost.domain.events import PostingCleared, PostingRetried
from paypost.domain.ports.events import Publish
from paypost.domain.ports.postings import ClearEvidence, FailedSelection, PostingCommands
from paypost.domain.posting import PAYPOST_ACTOR, AuditEntry, KeptMessage, Posting, PostingKey
from paypost.domain.rules import MAPPING_FIXES, ItemResult, clear_result, retried, retry_result
from paypost.handlers import metrics
from paypost.handlers.clock import Clock, utc_now
from paypost.handlers.messagebus import MessageBus
from paypost.producers.replay import replay

log = structlog.get_logger("paypost.operations")

CHUNK = 500
# Chunks a heal or an unstoppable retry has in flight at once (``PostingOperations._chunks_in_flight``).
IN_FLIGHT = 2
# An operator's retry (Save Changes) claims and replays this many at a time, reading between them
# whether the operation was cancelled: a Stop takes effect within one such chunk (a fraction of a second).
STOPPABLE_CHUNK = 50


@dataclass(slots=True)
class HealRun:
    """One self-heal, through the re-runs a failover may cause: its token and what it found."""

    token: str = field(default_factory=lambda: f"auto-{uuid.uuid4()}")
    keys: list[PostingKey] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ClearRequest:
    payment_id: str
    reason: str
    manual_reference: str | None = None


class Pacer:
    """Spaces replays at ``rate`` per second, so a bulk retry does not starve new payments.

    A sender runs ahead of the schedule by up to ``slack`` seconds, then sleeps until it is back
    on it: one timer per ``slack * rate`` replays rather than one each (a sleep of half a
    millisecond per replay cost more than the replay's publish), at the same rate over any
    stretch longer than ``slack``.
    """

    def __init__(self, rate: float, slack: float = 0.02) -> None:
        self._interval = 1.0 / rate
        self._slack = slack
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self._lock:
            now = time.monotonic()
            self._next = max(now, self._next) + self._interval
            ahead = self._next - now
            if ahead > self._slack:
                await asyncio.sleep(ahead)


# Retries chunk ``keys`` of a practice under ``token`` in this process; the keys it loaded.
RetryHere = Callable[[str, Sequence[PostingKey], str, AuditEntry], Awaitable[set[PostingKey]]]


def chunks(items: Sequence[PostingKey], size: int = CHUNK) -> Iterator[list[PostingKey]]:
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


def _unique(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ids))


class PostingOperations:
    """Applies retries and clears. Each item is one conditional write, so racing operators,
    mapping fixes and redelivered commands change a posting at most once."""

    def __init__(self, store: PostingCommands, publish: Publish, bus: MessageBus, pacer: Pacer,
                 evidence: ClearEvidence | None = None, clock: Clock = utc_now, here: RetryHere | None = None) -> None:
        """``here``: retries what loads at once in paypost's own database without the queue
        (``PostingService.retry_here``); what it does not load is claimed and replayed, paced."""
        self._here = here
        self._store = store
        self._publish = publish
        self._bus = bus
        self._pacer = pacer
        self._evidence = evidence  # None: clears are not checked against a system
        self._clock = clock

    async def retry(self, practice_id: str, payment_ids: Sequence[str], *, actor: str, command_id: str,
                    action: str = "retry", reason: str | None = None,
                    stopped: Callable[[], Awaitable[bool]] | None = None) -> list[ItemResult]:
        """Send FAILED postings back through loading by replaying their kept messages.

        ``stopped`` is asked before each chunk: once it says so, the rest is not replayed (it stays
        FAILED) and each of those items is a ``cancelled`` result."""
        keys = [PostingKey(practice_id, p) for p in _unique(payment_ids)]

        def audit() -> AuditEntry:
            return AuditEntry(at=self._clock(), actor=actor, action=action, reason=reason,
                              detail=f"command {command_id}")

        if stopped is None:
            results = await self._chunks_in_flight(practice_id, keys, command_id, audit)
        else:
            results, queue_turn = [], asyncio.Lock()
            for start, chunk in enumerate(chunks(keys, STOPPABLE_CHUNK)):
                if await stopped():
                    rest = keys[start * STOPPABLE_CHUNK:]
                    results += [ItemResult(k.payment_id, "retry", "cancelled",
                                           "Stopped before it was replayed: still FAILED.") for k in rest]
                    log.info("retry_cancelled", practice_id=practice_id, command_id=command_id, left=len(rest))
                    break
                results += await self._retry_chunk(practice_id, chunk, command_id, audit(), queue_turn)
        if claimed_count := sum(r.result == "retried" for r in results):
            metrics.RETRIED.labels(action).inc(claimed_count)
            log.info("postings_retried", practice_id=practice_id, count=claimed_count, actor=actor, action=action)
        return results

    async def _chunks_in_flight(self, practice_id: str, keys: list[PostingKey], command_id: str,
                                audit: Callable[[], AuditEntry]) -> list[ItemResult]:
        """Every chunk of ``keys``, IN_FLIGHT of them at a time: a retry in place waits on the
        database and the broker for most of its time, which the others' work fills. What goes
        through the queue is claimed a chunk at a time, as before, once the chunk before was sent
        (paced): a heal stopped mid-way leaves the rest FAILED, not claimed. The results in the
        keys' order; the first error cancels the chunks not yet done (what they wrote is written
        once: a retry of the same command claims only what is still FAILED)."""
        room, failed, queue_turn = asyncio.Semaphore(IN_FLIGHT), asyncio.Event(), asyncio.Lock()

        async def one(chunk: list[PostingKey]) -> list[ItemResult]:
            async with room:
                if failed.is_set():  # the room a failed chunk left: nothing more starts
                    return []
                try:
                    return await self._retry_chunk(practice_id, chunk, command_id, audit(), queue_turn)
                except BaseException:
                    failed.set()
                    raise

        running = [asyncio.ensure_future(one(chunk)) for chunk in chunks(keys)]
        try:
            done = await asyncio.gather(*running)
        except BaseException:
            for task in running:
                task.cancel()
            raise
        return [result for part in done for result in part]

    async def _retry_chunk(self, practice_id: str, chunk: list[PostingKey], command_id: str,
                           audit: AuditEntry, queue_turn: asyncio.Lock) -> list[ItemResult]:
        """Retry one chunk: what loads at once in paypost's database, in place; the rest claimed
        and replayed through the queue, paced, one chunk's at a time (``queue_turn``). Each key's result."""
        done_here = await self._here(practice_id, chunk, command_id, audit) if self._here else set()
        async with queue_turn:
            claimed = await self._store.claim_for_retry([k for k in chunk if k not in done_here], command_id, audit)
            sending = []
            for posting, message in claimed:  # paced, with the broker's confirms awaited together
                await self._pacer.wait()
                sending.append(asyncio.ensure_future(self._send_back(posting, message, audit)))
            await asyncio.gather(*sending)
        # What loaded in place was retried by this command (its token is on the row): only the rest is read back.
        states = await self._store.states(rest) if (rest := [k for k in chunk if k not in done_here]) else {}
        return [retried(key) if key in done_here else retry_result(key, states.get(key), command_id)
                for key in chunk]

    async def _send_back(self, posting: Posting, message: KeptMessage, audit: AuditEntry) -> None:
        await replay(self._publish, message, posting.replays)
        await self._bus.publish(PostingRetried(posting, audit))

    async def clear(self, practice_id: str, items: Sequence[ClearRequest], *, actor: str,
                    command_id: str) -> list[ItemResult]:
        """Mark FAILED postings reviewed and posted by hand. An item without a reason is rejected."""
        results = []
        seen: set[str] = set()
        for request in items:
            if request.payment_id in seen:
                continue
            seen.add(request.payment_id)
            results.append(await self._clear_one(PostingKey(practice_id, request.payment_id), request,
                                                 actor, command_id))
        return results

    async def _clear_one(self, key: PostingKey, request: ClearRequest, actor: str, command_id: str) -> ItemResult:
        reason = request.reason.strip()
        if not reason:
            return ItemResult(key.payment_id, "clear", "rejected", "A clear needs a reason.")
        detail = f"manual reference {request.manual_reference}" if request.manual_reference else None
        audit = AuditEntry(at=self._clock(), actor=actor, action="clear", reason=reason, detail=detail)
        cleared = await self._store.clear(key, command_id, audit, request.manual_reference)
        if cleared is not None:
            metrics.CLEARED.inc()
            await self._bus.publish(PostingCleared(cleared, audit))
            if request.manual_reference and self._evidence is not None:
                verified = await self._evidence.verify(key.practice_id, request.manual_reference, cleared.amount)
                await self._store.record_clear_verified(key, verified)
                if verified is False:
                    return ItemResult(key.payment_id, "clear", "cleared",
                                      f"Cleared; the practice's system holds no entry {request.manual_reference} "
                                      "for this amount.")
            return ItemResult(key.payment_id, "clear", "cleared", "Cleared.")
        return clear_result(key, (await self._store.states([key])).get(key), command_id)

    @staticmethod
    def _mapping_failures(practice_id: str, patient_account_id: str) -> FailedSelection:
        return FailedSelection(practice_id, error_codes=MAPPING_FIXES, patient_account_id=patient_account_id)

    async def blocked_by_mapping(self, practice_id: str, patient_account_id: str) -> int:
        """How many of the account's postings failed for want of a (correct) mapping."""
        return len(await self._store.failed_keys(self._mapping_failures(practice_id, patient_account_id)))

    async def replay_stale(self, older_than_seconds: float = 60.0) -> int:
        """Replay again what has stayed RETRYING too long (a replay lost to a crash); never posts twice."""
        stale = await self._store.stale_retrying(older_than_seconds)
        for posting, message in stale:
            await self._pacer.wait()
            await replay(self._publish, message, posting.replays)
        if stale:
            log.warning("stale_retries_replayed", count=len(stale))
        return len(stale)

    async def heal_account(self, practice_id: str, patient_account_id: str, reason: str,
                           run: HealRun | None = None) -> int:
        """Retry every mapping failure of a patient account, after its mapping was entered or corrected.

        ``run`` carries one heal through its re-runs (a failover cut it short): the same token and
        the postings the first run found, so a re-run sends back also those the first had claimed
        (RETRYING, no longer FAILED) but not yet replayed. A replay sent twice never posts twice.
        """
        run = run or HealRun()
        found = await self._store.failed_keys(self._mapping_failures(practice_id, patient_account_id))
        run.keys = list(dict.fromkeys([*run.keys, *found]))
        return await self._heal(practice_id, run.keys, reason, run.token)

    async def heal_refunds_of(self, practice_id: str, payment_ids: list[str]) -> int:
        """Retry the refunds that failed because one of these payments had not loaded yet."""
        healed = 0
        for payment_id, keys in (await self._store.failed_refunds_by_payment(practice_id, payment_ids)).items():
            healed += await self._heal(practice_id, keys, f"payment {payment_id} loaded")
        return healed

    async def heal_waiting_refunds(self) -> int:
        """Retry every refund still waiting for a payment that has loaded since."""
        waiting = await self._store.refunds_waiting_on_loaded()
        healed = 0
        for practice_id, keys in waiting.items():
            healed += await self._heal(practice_id, keys, "the refunded payment loaded")
        return healed

    async def _heal(self, practice_id: str, keys: list[PostingKey], reason: str, token: str | None = None) -> int:
        if not keys:
            return 0
        results = await self.retry(practice_id, [k.payment_id for k in keys], actor=PAYPOST_ACTOR,
                                   command_id=token or f"auto-{uuid.uuid4()}", action="auto_retry", reason=reason)
        return sum(r.result == "retried" for r in results)
