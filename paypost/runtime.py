"""Running a wired paypost: start, stop and the background duties, the same for every role.

The composition root (``paypost/bootstrap.py``) builds the adapters and handlers and hands their
parts to a ``Runtime``: what prepares the services, what consumes, the background duties, and what
closes. The runtime starts them in order, runs the duties together in one ``asyncio.TaskGroup``
until the stop, and stops them in order within a bound (or at once past it). The duties themselves
are here too: the sweeps and escalations, and the audit trail's sealing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import structlog

from paypost.domain.errors import loggable
from paypost.domain.ports.runtime import Intake
from paypost.handlers.canary import Canaries
from paypost.handlers.clock import until_set
from paypost.handlers.reactions import PostingReactions
from paypost.infra.mongo.audit_seals import AuditSealer
from paypost.infra.runtime.retry import log_failure
from paypost.infra.runtime.sealer_process import SealerProcess

log = structlog.get_logger("paypost")

# What a process does (contract section 9): everything, the HTTP API only, or the consumers only.
ProcessRole = Literal["all", "api", "worker"]
# Whether a process of the role consumes (and so runs the background duties too).
CONSUMES: Mapping[ProcessRole, bool] = {"all": True, "api": False, "worker": True}

Step = Callable[[], Awaitable[object]]
# A background duty: runs until the event is set, then finishes what it holds and returns.
Duty = Callable[[asyncio.Event], Awaitable[None]]



@dataclass(frozen=True, slots=True)
class Parts:
    """What the composition root hands to the runtime, each in the order it runs."""

    prepare: Sequence[Step]  # indexes and topology: before anything is served or consumed
    intake: Intake
    duties: Mapping[str, Duty]  # the background duties of a consuming process, by name
    drain: Sequence[Step]  # once the intake stopped, before the duties' last rounds are waited for
    halt: Sequence[Step]  # at a stop past its bound: what ends at once, before the connections close
    close: Sequence[Step]  # the connections, last (together, within a bound, at a stop past its bound)
    about: Mapping[str, object] = field(default_factory=dict)  # said in the start's log line


class Runtime:
    """Starts and stops one paypost process; owns its background duties while it consumes."""

    def __init__(self, parts: Parts, *, stop_timeout: float) -> None:
        self._parts = parts
        self._stop_timeout = stop_timeout
        self._stopping = asyncio.Event()
        self._duties: asyncio.Task[None] | None = None
        self.consuming = False

    async def start(self, consume: bool = True) -> None:
        """Prepare the services, then (``consume``) start consuming and the background duties."""
        for step in self._parts.prepare:
            await step()
        if consume:
            await self._parts.intake.start()
            self.consuming = True
            self._stopping.clear()
            self._duties = asyncio.create_task(self._run_duties(), name="paypost.duties")
        log.info("paypost_started", consuming=consume, **self._parts.about)

    async def _run_duties(self) -> None:
        async with asyncio.TaskGroup() as group:
            for name, duty in self._parts.duties.items():
                group.create_task(self._supervised(name, duty), name=f"paypost.{name}")

    async def _supervised(self, name: str, duty: Duty) -> None:
        # A duty catches and logs its rounds' errors itself; one that escapes ends that duty alone
        # (the others go on), said once here rather than found at the stop.
        try:
            await duty(self._stopping)
        except Exception as exc:  # noqa: BLE001 (logged, with its traceback unless an outage)
            log_failure(log, "background_duty_ended", exc, duty=name)

    async def stop(self) -> None:
        """Stop consuming (in-flight messages finish or return to their queue), then disconnect.

        Within ``stop_timeout``: a broker or database that does not answer must not keep an
        operator's stop (or a deploy) waiting. Past it, paypost stops at once; nothing is lost,
        as a delivery it had not settled is delivered again, and its posting's row is found.
        """
        try:
            async with asyncio.timeout(self._stop_timeout):
                await self._stop_in_order()
        except TimeoutError:
            log.error("stop_timed_out", after_s=self._stop_timeout,
                      detail="the broker or the database did not answer: unsettled messages go back to "
                             "their queue and are handled at the next start")
            await self._stop_now()
        self.consuming = False
        log.info("paypost_stopped")

    async def _stop_in_order(self) -> None:
        # Payments first, so the duties' last sweep and seal cover the last batch they load.
        await self._parts.intake.stop()
        self._stopping.set()
        for step in self._parts.drain:
            await step()
        if self._duties is not None:
            await self._duties
            self._duties = None
        for close in self._parts.close:
            await close()

    async def _stop_now(self) -> None:
        self._parts.intake.abort()
        if self._duties is not None:
            self._duties.cancel()  # the task group cancels every duty
            self._duties = None
        for step in self._parts.halt:
            await step()
        closing = [asyncio.ensure_future(close()) for close in self._parts.close]
        done, pending = await asyncio.wait(closing, timeout=5)
        for closer in pending:
            closer.cancel()
        for closer in done:
            if not closer.cancelled() and (error := closer.exception()) is not None:
                log.warning("close_failed", error=loggable(error))


async def run_sweeps(reactions: PostingReactions, stop: asyncio.Event, *, escalate_after: float,
                     sweep_within: float = 0.5, full_sweep_every: float = 30.0, mapping_sweep_every: float = 300.0,
                     canaries: Canaries | None = None, canary_every: float = 0.5, idle_every: float = 10.0) -> None:
    """Sweeps (refunds waiting for what just loaded, transfers it may balance), full sweeps (what
    another process or a crash left), escalations and canaries' verdicts, until ``stop`` is set.

    Nothing here wakes on a timer it does not need: the sweep of what just finished runs once
    ``reactions.sweep_batch`` postings wait for it (woken by the posting that makes them so many), or
    ``sweep_within`` seconds after the first of them finished; a busy process sweeps hundreds at a
    time, and a quiet one wakes for none. Canaries are decided every ``canary_every`` while one waits,
    else every ``idle_every`` (a canary made in another process) or at once when one is made here;
    escalations and the full sweep keep their own rhythm, and the mapping failures' page (a heal cut
    short) one slower still: a page of a thousand failures read every 30 s was a third of what a
    paypost over 15,000 failures spent a second with nothing arriving (BENCHMARKS.md, "How the data
    grows")."""
    escalate_every = min(escalate_after / 4, 15.0)
    loop = asyncio.get_running_loop()
    next_escalation = next_full = next_canary = next_mappings = loop.time()
    woken = [stop, reactions.work, *([canaries.woken] if canaries is not None else [])]
    while not stop.is_set():
        reactions.work.clear()
        if canaries is not None and canaries.woken.is_set():
            canaries.woken.clear()
            next_canary = loop.time()
        try:
            due = reactions.unswept_since()
            if due is not None and (reactions.unswept() >= reactions.sweep_batch or loop.time() - due >= sweep_within):
                await reactions.sweep()
            if loop.time() >= next_full:
                mappings = loop.time() >= next_mappings
                await reactions.sweep_all(mappings)
                next_full = loop.time() + full_sweep_every
                next_mappings = loop.time() + mapping_sweep_every if mappings else next_mappings
            if loop.time() >= next_escalation:
                await reactions.escalate_due()
                next_escalation = loop.time() + escalate_every
            if canaries is not None and loop.time() >= next_canary:
                await canaries.advance()
                next_canary = loop.time() + (canary_every if canaries.waiting else idle_every)
        except Exception as exc:  # noqa: BLE001 (logged, with its traceback unless an outage)
            log_failure(log, "background_sweep_failed", exc)
        wake_at = min(next_full, next_escalation, *([next_canary] if canaries is not None else []))
        if (due := reactions.unswept_since()) is not None:
            wake_at = min(wake_at, due + sweep_within)
        await until_set(*woken, within=max(0.0, wake_at - loop.time()))
    await reactions.sweep()  # what finished before the stop


async def seal_periodically(sealer: AuditSealer, process: SealerProcess | None, stop: asyncio.Event,
                            every: float = 2.0, look_at_most: float = 30.0) -> None:
    """Seal here (inline), or watch the sealer's process, until ``stop``; then seal what is left.

    The process is started again as soon as it dies (its end wakes this loop, no timer does). It
    rests while there is nothing to seal, and is woken from here when there is: this loop looks
    every ``every`` seconds while there was something last time, and less often, up to
    ``look_at_most``, while there was not."""
    if process is not None:
        process.start()
    lease = sealer.lease()
    wait = every
    while not stop.is_set():
        try:
            if process is not None:
                process.restart_if_dead()
                if await sealer.waiting():
                    process.nudge()
                    wait = every
                else:
                    wait = min(wait * 2, look_at_most)
            else:
                await sealer.seal_leading(lease)
        except Exception as exc:  # noqa: BLE001 (logged, with its traceback unless an outage)
            log_failure(log, "audit_seal_failed", exc)
        if process is not None and process.alive and process.sentinel is not None:
            await _ended_or_stopped(process.sentinel, stop, within=wait)  # or woken by its end
        else:
            with contextlib.suppress(TimeoutError):  # the pause ended without a stop
                await asyncio.wait_for(stop.wait(), timeout=every)
    if process is not None:
        await process.stop()  # it seals what is left first (a bounded time: the rest, the next sealer)
    else:
        await sealer.seal_all()


async def _ended_or_stopped(sentinel: int, stop: asyncio.Event, within: float) -> None:
    """Wait until the process whose ``sentinel`` this is ends, ``stop`` is set, or ``within`` seconds pass."""
    loop = asyncio.get_running_loop()
    ended = asyncio.Event()
    loop.add_reader(sentinel, ended.set)
    try:
        await until_set(ended, stop, within=within)
    finally:
        loop.remove_reader(sentinel)
