"""Retry and Clear: by operators (commands, Save Changes) and by paypost itself (self-healing)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from consumers import metrics
from consumers.posting import Clock, Reactions, utc_now
from domain.load_errors import MAPPING_FIXES
from domain.model import LoadStatus
from domain.posting import PAYPOST_ACTOR, AuditEntry, KeptMessage, Posting, PostingKey
from producers.events import OutcomePublisher, Publish
from producers.replay import replay

log = structlog.get_logger("paypost.operations")

# A posting replayed this many times is not replayed again: a loop, or a cause nobody fixed.
MAX_REPLAYS = 25
CHUNK = 500


class CommandStore(Protocol):
    async def claim_for_retry(self, keys: list[PostingKey], token: str, audit: AuditEntry,
                              max_replays: int) -> list[tuple[Posting, KeptMessage]]: ...

    async def failed_keys(self, query: dict[str, Any], limit: int | None = None) -> list[PostingKey]: ...

    async def refunds_waiting_on_loaded(self) -> dict[str, list[PostingKey]]: ...

    async def stale_retrying(self, older_than_seconds: float) -> list[tuple[Posting, KeptMessage]]: ...

    async def failed_refunds_by_payment(self, practice_id: str,
                                        payment_ids: list[str]) -> dict[str, list[PostingKey]]: ...

    async def states(self, keys: list[PostingKey]) -> dict[PostingKey, dict[str, Any]]: ...

    async def clear(self, key: PostingKey, command_id: str, audit: AuditEntry,
                    manual_reference: str | None) -> Posting | None: ...


@dataclass(frozen=True, slots=True)
class ItemResult:
    """One item of a retry or clear: ``retried``, ``cleared``, ``unchanged`` or ``rejected``, and why."""

    payment_id: str
    action: str  # "retry" or "clear"
    result: str
    message: str


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


def chunks(items: Sequence[PostingKey], size: int = CHUNK) -> Iterator[list[PostingKey]]:
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


def _unique(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ids))


class PostingOperations:
    """Applies retries and clears. Each item is one conditional write, so racing operators,
    mapping fixes and redelivered commands change a posting at most once."""

    def __init__(self, store: CommandStore, publish: Publish, outcomes: OutcomePublisher, pacer: Pacer,
                 clock: Clock = utc_now) -> None:
        self._store = store
        self._publish = publish
        self._outcomes = outcomes
        self._pacer = pacer
        self._clock = clock
        self.reactions: Reactions | None = None

    async def retry(self, practice_id: str, payment_ids: Sequence[str], *, actor: str, command_id: str,
                    action: str = "retry", reason: str | None = None) -> list[ItemResult]:
        """Send FAILED postings back through loading by replaying their kept messages."""
        keys = [PostingKey(practice_id, p) for p in _unique(payment_ids)]
        results: list[ItemResult] = []
        for chunk in chunks(keys):
            audit = AuditEntry(at=self._clock(), actor=actor, action=action, reason=reason,
                               detail=f"command {command_id}")
            claimed = await self._store.claim_for_retry(chunk, command_id, audit, MAX_REPLAYS)
            sending = []
            for posting, message in claimed:  # paced, with the broker's confirms awaited together
                await self._pacer.wait()
                sending.append(asyncio.ensure_future(self._send_back(posting, message, audit)))
            await asyncio.gather(*sending)
            states = await self._store.states(chunk)
            results += [self._retry_result(key, states.get(key), command_id) for key in chunk]
        if claimed_count := sum(r.result == "retried" for r in results):
            metrics.RETRIED.labels(action).inc(claimed_count)
            log.info("postings_retried", practice_id=practice_id, count=claimed_count, actor=actor, action=action)
        return results

    async def _send_back(self, posting: Posting, message: KeptMessage, audit: AuditEntry) -> None:
        await replay(self._publish, message, posting.replays)
        await self._outcomes.retried(posting, audit)

    @staticmethod
    def _retry_result(key: PostingKey, state: dict[str, Any] | None, command_id: str) -> ItemResult:
        def item(result: str, message: str) -> ItemResult:
            return ItemResult(key.payment_id, "retry", result, message)

        if state is None:
            return item("rejected", f"No posting {key.payment_id} for practice {key.practice_id}.")
        if state.get("retry_token") == command_id:
            return item("retried", "Sent back for loading.")
        status = LoadStatus(state["load_status"])
        if status in (LoadStatus.LOADED, LoadStatus.CLEARED):
            return item("unchanged", f"Already {status.value}: nothing to retry.")
        if status in (LoadStatus.PENDING, LoadStatus.RETRYING):
            return item("unchanged", f"Already being loaded ({status.value}).")
        if state.get("kind") == "unreadable":
            return item("rejected", "An unreadable message cannot load: fix the publisher, then clear this row.")
        if state.get("replays", 0) >= MAX_REPLAYS:
            return item("rejected", f"Replayed {MAX_REPLAYS} times already: fix the cause, or clear it.")
        return item("unchanged", "Changed by someone else just now; reload to see it.")

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
        def item(result: str, message: str) -> ItemResult:
            return ItemResult(key.payment_id, "clear", result, message)

        reason = request.reason.strip()
        if not reason:
            return item("rejected", "A clear needs a reason.")
        detail = f"manual reference {request.manual_reference}" if request.manual_reference else None
        audit = AuditEntry(at=self._clock(), actor=actor, action="clear", reason=reason, detail=detail)
        cleared = await self._store.clear(key, command_id, audit, request.manual_reference)
        if cleared is not None:
            await self._outcomes.cleared(cleared, audit)
            metrics.CLEARED.inc()
            if self.reactions is not None:
                await self.reactions.finished(cleared, had_failed=True)
            return item("cleared", "Cleared.")
        state = (await self._store.states([key])).get(key)
        if state is None:
            return item("rejected", f"No posting {key.payment_id} for practice {key.practice_id}.")
        if state.get("clear_command") == command_id:
            return item("cleared", "Cleared.")
        status = LoadStatus(state["load_status"])
        if status in (LoadStatus.LOADED, LoadStatus.CLEARED):
            return item("unchanged", f"Already {status.value}: nothing to clear.")
        return item("rejected", f"It is {status.value}: wait for that load's outcome, then clear it if it fails.")

    @staticmethod
    def _mapping_failures(practice_id: str, patient_account_id: str) -> dict[str, Any]:
        return {"practice_id": practice_id, "patient_account_id": patient_account_id,
                "load_error.code": {"$in": [c.value for c in MAPPING_FIXES]}}

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

    async def heal_account(self, practice_id: str, patient_account_id: str, caused_by: str) -> int:
        """Retry every mapping failure of a patient account, after its mapping was entered or corrected."""
        keys = await self._store.failed_keys(self._mapping_failures(practice_id, patient_account_id))
        return await self._heal(practice_id, keys, f"mapping of patient account {patient_account_id} "
                                                   f"updated by {caused_by}")

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

    async def _heal(self, practice_id: str, keys: list[PostingKey], reason: str) -> int:
        if not keys:
            return 0
        results = await self.retry(practice_id, [k.payment_id for k in keys], actor=PAYPOST_ACTOR,
                                   command_id=f"auto-{uuid.uuid4()}", action="auto_retry", reason=reason)
        return sum(r.result == "retried" for r in results)
