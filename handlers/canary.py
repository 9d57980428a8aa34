"""Canaries of Save Changes (contract section 8): the rest of an operation follows only if every
one of its first k retries loaded.

Driven by the database alone, so any number of paypost processes may run it: each sweep reads the
operations whose canary waits, their canary postings' load statuses and whether the canary's command
was applied (its items' results), and decides with ``domain.triage.canary_verdict``. One conditional
write claims the verdict (the process that wins carries it out); a claim whose process stopped before
it was done goes stale and is carried out again by another (command ids are derived from the
operation, so commands published twice are applied once).
"""

from __future__ import annotations

from datetime import datetime

import structlog

from domain.model import LoadStatus
from domain.ports import OperationStore, PostingCommands, Record
from domain.posting import PostingKey
from domain.rules import ItemResult
from domain.triage import canary_verdict
from handlers.clock import Clock, utc_now
from producers.commands import publish_commands
from producers.events import Publish
from schemas.messages import ClearItem

log = structlog.get_logger("paypost.canary")

STALE_CLAIM_SECONDS = 60.0


class Canaries:
    def __init__(self, operations: OperationStore, postings: PostingCommands, publish: Publish,
                 clock: Clock = utc_now) -> None:
        self._operations = operations
        self._postings = postings
        self._publish = publish
        self._clock = clock

    async def advance(self) -> int:
        """Decide every canary whose outcomes are in (or whose time is up); returns how many were decided."""
        now = self._clock()
        decided = 0
        for op in await self._operations.canaries_to_advance(now, STALE_CLAIM_SECONDS):
            phase = op["canary"]["phase"]
            if phase == "waiting":
                decided += await self._decide(op, now)
            else:  # a claim whose process stopped before it was carried out
                stale = now.timestamp() - STALE_CLAIM_SECONDS
                if await self._operations.claim_canary(op["_id"], phase, phase, None, now,
                                                       claimed_before=datetime.fromtimestamp(stale, now.tzinfo)):
                    await self._carry_out(op, phase, op["canary"].get("message") or "")
        return decided

    async def _decide(self, op: Record, now: datetime) -> int:
        canary = op["canary"]
        ids: list[str] = canary["payment_ids"]
        recorded = len(await self._operations.recorded(op["_id"], "retry", ids)) == len(set(ids))
        states = await self._postings.states([PostingKey(op["practice_id"], p) for p in ids])
        statuses: dict[str, LoadStatus | None] = dict.fromkeys(ids)
        for key, state in states.items():
            statuses[key.payment_id] = state.load_status
        verdict = canary_verdict(statuses, recorded, timed_out=now >= canary["deadline"])
        if verdict.proceed is None:
            return 0
        to = "proceeding" if verdict.proceed else "stopping"
        if not await self._operations.claim_canary(op["_id"], "waiting", to, verdict.reason or None, now):
            return 0  # another process decided it
        log.info("canary_decided", operation_id=op["_id"], practice_id=op["practice_id"], proceed=verdict.proceed,
                 size=len(ids))
        await self._carry_out(op, to, verdict.reason)
        return 1

    async def _carry_out(self, op: Record, phase: str, reason: str) -> None:
        canary = op["canary"]
        rest_clear = [ClearItem.model_validate(c) for c in canary["rest_clear"]]
        if phase == "proceeding":
            await publish_commands(self._publish, op["_id"], op["practice_id"], canary["rest_retry"], rest_clear,
                                   op["actor"], self._clock(), command_prefix=f"{op['_id']}:rest")
            await self._operations.finish_canary(op["_id"], phase, "proceeded")
            return
        unchanged = [ItemResult(p, "retry", "unchanged", reason) for p in canary["rest_retry"]] + \
                    [ItemResult(c.payment_id, "clear", "unchanged", reason) for c in rest_clear]
        for start in range(0, len(unchanged), 1000):
            await self._operations.record(op["_id"], unchanged[start:start + 1000], self._clock())
        await self._operations.finish_canary(op["_id"], phase, "stopped")
