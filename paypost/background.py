"""The background duties of a paypost process: sweeps and escalations, on a schedule."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

from paypost.handlers.reactions import PostingReactions
from paypost.infra.runtime.retry import log_failure

log = structlog.get_logger("paypost.background")


async def run_sweeps(reactions: PostingReactions, stop: asyncio.Event, *, escalate_after: float,
                     tick: float = 0.2, sweep_within: float = 0.5, sweep_batch: int = 100,
                     full_sweep_every: float = 30.0,
                     canaries: Callable[[], Awaitable[object]] | None = None, canary_every: float = 0.5) -> None:
    """Sweeps (refunds waiting for what just loaded, transfers it may balance), full sweeps (what
    another process or a crash left), escalations and canaries' verdicts, until ``stop`` is set.

    The sweep of what just finished runs once ``sweep_batch`` postings wait for it (at most one
    ``tick`` after), or ``sweep_within`` seconds after the first of them finished: a busy process
    sweeps hundreds at a time, and a quiet one does not pay a sweep's two queries for each payment."""
    escalate_every = max(tick, min(escalate_after / 4, 5.0))
    loop = asyncio.get_running_loop()
    next_escalation = next_full = next_canary = loop.time()
    while not stop.is_set():
        try:
            due = reactions.unswept_since()
            if due is not None and (reactions.unswept() >= sweep_batch or loop.time() - due >= sweep_within):
                await reactions.sweep()
            if loop.time() >= next_full:
                await reactions.sweep_all()
                next_full = loop.time() + full_sweep_every
            if loop.time() >= next_escalation:
                await reactions.escalate_due()
                next_escalation = loop.time() + escalate_every
            if canaries is not None and loop.time() >= next_canary:
                await canaries()
                next_canary = loop.time() + canary_every
        except Exception as exc:  # noqa: BLE001 (logged, with its traceback unless an outage)
            log_failure(log, "background_sweep_failed", exc)
        with contextlib.suppress(TimeoutError):  # the pause ended without a stop
            await asyncio.wait_for(stop.wait(), timeout=tick)
    await reactions.sweep()  # what finished before the stop
