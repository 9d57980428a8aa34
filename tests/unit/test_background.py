"""The sweep of what just finished: at once for a batch's worth, within a bound for a quiet trickle,
never when nothing finished (the schedule only; the sweeps' queries are tested on the real database
in tests/integration/test_operators.py and test_events_alerts.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, cast

from paypost.domain.events import PostingLoaded
from paypost.domain.model import LoadStatus, PostingKind
from paypost.domain.posting import Posting, PostingKey
from paypost.handlers.reactions import PostingReactions
from paypost.runtime import run_sweeps
from tests.support.waits import wait_for


class _Healer:
    def __init__(self) -> None:
        self.swept: list[list[str]] = []
        self.swept_at: list[float] = []
        self.sweeps = asyncio.Queue[None]()

    async def heal_refunds_of(self, practice_id: str, payment_ids: list[str]) -> int:
        self.swept.append(payment_ids)
        self.swept_at.append(asyncio.get_running_loop().time())
        self.sweeps.put_nowait(None)
        return 0

    async def heal_waiting_refunds(self) -> int:
        return 0

    async def replay_stale(self) -> int:
        return 0


class _Transfers:
    async def unreconciled_with_any(self, practice_id: str, ids: list[str]) -> list[object]:
        return []

    async def unreconciled(self, limit: int) -> list[object]:
        return []


class _Alerts:
    def __init__(self) -> None:
        self.asked = 0

    async def due_for_escalation(self, before: datetime, now: datetime) -> list[object]:
        self.asked += 1
        return []


class _Canaries:
    """The canaries as the sweep loop sees them: whether one waits, and being woken for a new one."""

    def __init__(self) -> None:
        self.waiting = False
        self.woken = asyncio.Event()
        self.rounds: list[float] = []

    def wake(self) -> None:
        self.woken.set()

    async def advance(self) -> int:
        self.rounds.append(asyncio.get_running_loop().time())
        return 0


def _reactions(healer: _Healer, alerts: _Alerts | None = None) -> PostingReactions:
    # Only what a sweep calls: the alerts' escalation query, the transfers', the healer's.
    return PostingReactions(cast(Any, alerts or _Alerts()), cast(Any, _Transfers()), cast(Any, None),
                            cast(Any, healer), escalate_after=600, sweep_batch=3)


def _loaded(payment_id: str) -> PostingLoaded:
    key = PostingKey("clinic-a", payment_id)
    posting = Posting(key, PostingKind.PAYMENT, LoadStatus.LOADED, "e", datetime.now(UTC))
    return PostingLoaded(posting, had_failed=False)


async def test_a_batch_is_swept_at_once_and_a_trickle_within_the_bound() -> None:
    healer = _Healer()
    reactions = _reactions(healer)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # A bound of 2 s, so that "at once" and "at the bound" stay apart when the cores are busy (the
    # suite's other workers).
    sweeping = asyncio.create_task(run_sweeps(reactions, stop, escalate_after=600, sweep_within=2.0))
    try:
        await asyncio.sleep(0.1)
        assert healer.swept == []  # nothing finished: no sweep, no query

        for n in range(3):  # a batch's worth: swept within a tick, not after the bound
            await reactions.loaded(_loaded(f"pay-{n}"))
        started = loop.time()
        await asyncio.wait_for(healer.sweeps.get(), 4)
        assert healer.swept == [["pay-0", "pay-1", "pay-2"]]
        assert healer.swept_at[0] - started < 1.0

        await reactions.loaded(_loaded("pay-9"))  # alone: it waits for company, up to the bound
        started = loop.time()
        await asyncio.sleep(1.0)
        assert len(healer.swept) == 1 and reactions.unswept() == 1
        await asyncio.wait_for(healer.sweeps.get(), 4)
        assert healer.swept[1:] == [["pay-9"]]
        assert 1.9 <= healer.swept_at[1] - started < 3.5
        assert reactions.unswept() == 0 and reactions.unswept_since() is None
    finally:
        stop.set()
        await asyncio.wait_for(sweeping, 2)


async def test_with_nothing_arriving_the_loop_sleeps_and_a_canary_made_here_wakes_it() -> None:
    healer, alerts, canaries = _Healer(), _Alerts(), _Canaries()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    sweeping = asyncio.create_task(run_sweeps(_reactions(healer, alerts), stop, escalate_after=600,
                                              canaries=cast(Any, canaries), canary_every=0.05, idle_every=5.0))
    try:
        await asyncio.sleep(0.6)
        # The first round, then nothing: no escalation query before its 15 s, no canary before 5 s.
        assert (alerts.asked, len(canaries.rounds), healer.swept) == (1, 1, [])
        canaries.wake()  # a Save Changes with a canary, made in this process
        made = loop.time()
        await asyncio.sleep(0.3)
        assert canaries.rounds[1] - made < 1.0  # decided from at once, not after the idle 5 s
        assert len(canaries.rounds) == 2  # and none waits: back to the idle rhythm
        canaries.waiting = True  # a round found one undecided: it is looked at every canary_every
        canaries.wake()
        # Three more rounds within 4 s, every 0.05 s; at the idle rhythm they would take 15 s.
        await wait_for(lambda: asyncio.sleep(0, len(canaries.rounds) >= 5), timeout=4)
        assert alerts.asked == 1
    finally:
        stop.set()
        await asyncio.wait_for(sweeping, 2)


async def test_the_mapping_failures_page_is_read_at_a_slower_rhythm_than_the_full_sweep() -> None:
    """The full sweep every 0.05 s, the page of mapping failures every 10 s: in a second, the full
    sweep runs many times and the page is read once (at the start)."""
    pages: list[float] = []
    healer = _Healer()

    async def mapping_sweep() -> int:
        pages.append(asyncio.get_running_loop().time())
        return 0

    replays: list[int] = []

    async def replay_stale() -> int:  # counts the full sweeps
        replays.append(1)
        return 0

    healer.replay_stale = replay_stale  # type: ignore[method-assign]  # this test's own count of the full sweeps
    reactions = PostingReactions(cast(Any, _Alerts()), cast(Any, _Transfers()), cast(Any, None), cast(Any, healer),
                                 escalate_after=600, mapping_sweep=mapping_sweep)
    stop = asyncio.Event()
    sweeping = asyncio.create_task(run_sweeps(reactions, stop, escalate_after=600, full_sweep_every=0.05,
                                              mapping_sweep_every=10.0))
    try:
        await wait_for(lambda: asyncio.sleep(0, len(replays) >= 5), timeout=4)
        assert len(pages) == 1
    finally:
        stop.set()
        await asyncio.wait_for(sweeping, 2)
