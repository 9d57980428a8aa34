"""Canaries of Save Changes (contract section 8): the rest of an operation follows only if every
one of its first k retries loaded.

Driven by the database alone, so any number of paypost processes may run it: each sweep reads the
operations whose canary waits, their canary postings' load statuses and whether the canary's command
was applied (its items' results), and decides with ``paypost.domain.triage.canary_verdict``. One conditional
write claims the verdict (the process that wins carries it out); a claim whose process stopped before
it was done goes stale and is carried out again by another (command ids are derived from the
operation, so commands published twice are applied once).
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import structlog

from paypost.domain.model import LoadStatus
from paypost.domain.operations import CARRIED_OUT, Canary, CanaryPhase, verdict_phase
from paypost.domain.ports.events import Publish
from paypost.domain.ports.operations import OperationStore
from paypost.domain.ports.postings import PostingCommands
from paypost.domain.posting import PostingKey
from paypost.domain.rules import ItemResult
from paypost.domain.triage import canary_verdict
from paypost.handlers.clock import Clock, utc_now
from paypost.producers.commands import publish_commands
from paypost.schemas.messages import ClearItem

log = structlog.get_logger("paypost.canary")

STALE_CLAIM_SECONDS = 60.0


class Canaries:
    def __init__(self, operations: OperationStore, postings: PostingCommands, publish: Publish,
                 clock: Clock = utc_now) -> None:
        self._operations = operations
        self._postings = postings
        self._publish = publish
        self._clock = clock
        self.waiting = False  # the last round found a canary not yet decided: the next comes soon
        self.woken = asyncio.Event()  # a Save Changes with a canary was made here: decide from now on

    def wake(self) -> None:
        self.woken.set()

    async def advance(self) -> int:
        """Decide every canary whose outcomes are in (or whose time is up); returns how many were decided."""
        now = self._clock()
        decided = 0
        found = await self._operations.canaries_to_advance(now, STALE_CLAIM_SECONDS)
        self.waiting = bool(found)
        for canary in found:
            if canary.phase is CanaryPhase.WAITING:
                decided += await self._decide(canary, now)
            else:  # a claim whose process stopped before it was carried out
                stale = now.timestamp() - STALE_CLAIM_SECONDS
                if await self._operations.claim_canary(canary.operation_id, canary.phase, canary.phase, None, now,
                                                       claimed_before=datetime.fromtimestamp(stale, now.tzinfo)):
                    await self._carry_out(canary, canary.phase, canary.message or "")
        return decided

    async def _decide(self, canary: Canary, now: datetime) -> int:
        ids = list(canary.plan.payment_ids)
        recorded = len(await self._operations.recorded(canary.operation_id, "retry", ids)) == len(set(ids))
        states = await self._postings.states([PostingKey(canary.practice_id, p) for p in ids])
        statuses: dict[str, LoadStatus | None] = dict.fromkeys(ids)
        for key, state in states.items():
            statuses[key.payment_id] = state.load_status
        verdict = canary_verdict(statuses, recorded, timed_out=now >= canary.plan.deadline)
        if verdict.proceed is None:
            return 0
        to = verdict_phase(verdict.proceed)
        if not await self._operations.claim_canary(canary.operation_id, CanaryPhase.WAITING, to,
                                                   verdict.reason or None, now):
            return 0  # another process decided it
        log.info("canary_decided", operation_id=canary.operation_id, practice_id=canary.practice_id,
                 proceed=verdict.proceed, size=len(ids))
        await self._carry_out(canary, to, verdict.reason)
        return 1

    async def _carry_out(self, canary: Canary, phase: CanaryPhase, reason: str) -> None:
        plan, operation_id = canary.plan, canary.operation_id
        rest_clear = [ClearItem(payment_id=c.payment_id, reason=c.reason, manual_reference=c.manual_reference)
                      for c in plan.rest_clear]
        if phase is CanaryPhase.PROCEEDING:
            await publish_commands(self._publish, operation_id, canary.practice_id, list(plan.rest_retry),
                                   rest_clear, canary.actor, self._clock(), command_prefix=f"{operation_id}:rest")
            await self._operations.finish_canary(operation_id, phase, CARRIED_OUT[phase])
            return
        unchanged = [ItemResult(p, "retry", "unchanged", reason) for p in plan.rest_retry] + \
                    [ItemResult(c.payment_id, "clear", "unchanged", reason) for c in plan.rest_clear]
        for start in range(0, len(unchanged), 1000):
            await self._operations.record(operation_id, unchanged[start:start + 1000], self._clock())
        await self._operations.finish_canary(operation_id, phase, CARRIED_OUT[phase])
