"""A self-heal cut short (issue 16): the heal after a mapping fix runs in one process's memory; when
that process stops or is killed before it claimed every posting, a worker's sweep finds the
FAILED postings the mapping heals, in the database, and retries them. None stays FAILED for good,
none is posted twice.

A heal into the built-in ledger loads each payment in place, one write each, in chunks of 500 with no
pacing: it is over within a second or two. The heals cut short here are into a practice's own system
(the reference system over HTTP), whose replays the pacer spaces out: those take long enough to be
stopped or killed mid-way."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable

import httpx
import pytest

from paypost.bench.load import TOKEN
from paypost.bootstrap import Paypost
from paypost.infra.mongo.database import Collections, connect
from paypost.infra.runtime.settings import Settings
from tests.support.ledgers import ReferenceLedger, builtin_entries, entry_key
from tests.support.processes import GuardedProcess
from tests.support.tokens import OPERATOR
from tests.support.upstream import Upstream
from tests.support.waits import wait_for

ACCOUNT = "acct-cut"
N = 600  # more than one claim's chunk (500): a heal stopped in its first chunk leaves 100 FAILED
SLOW = 50.0  # replays a second in the process that heals, so that it is stopped mid-way

# The payment ids of the entries a ledger holds for ``ids``, once per entry (a double post counts twice).
Posted = Callable[[list[str]], Awaitable[Counter[str]]]


@pytest.fixture
async def paced_practice(api: httpx.AsyncClient, system: ReferenceLedger) -> str:
    """clinic-a posting to the reference system over HTTP: a heal replays through the queue, paced."""
    r = await api.put("/api/v1/practices/clinic-a", json={
        "name": "Clinic A", "ledger": {"kind": "http", "base_url": system.url, "timeout_seconds": 2, "tasks": False},
        "enabled": True})
    assert r.status_code == 200, r.text
    return "clinic-a"


def posted_to(system: ReferenceLedger) -> Posted:
    """Each payment's entries in the reference system: the posts it answered with a new entry."""
    async def posted(ids: list[str]) -> Counter[str]:
        keys = {entry_key("clinic-a", pid): pid for pid in ids}
        held = Counter(keys[k] for k in system.state.entries if k in keys)
        created = Counter(keys[k] for method, k in system.state.entry_requests if method == "POST" and k in keys)
        assert created == held  # no post after the first of a payment (none failed or lost its answer here)
        return held

    return posted


def posted_to_the_builtin_ledger(c: Collections) -> Posted:
    async def posted(ids: list[str]) -> Counter[str]:
        return Counter(e["payment_id"] for e in await builtin_entries(
            c, practice_id="clinic-a", payment_id={"$in": ids}, refund_id=None))

    return posted


async def fail_for_want_of_a_mapping(upstream: Upstream, c: Collections, n: int = N) -> list[str]:
    ids = [f"cut-{i}" for i in range(n)]
    await asyncio.gather(*(upstream.payment(payment_id=pid, patient_account_id=ACCOUNT, ehr_patient_id=None)
                           for pid in ids))

    async def all_failed() -> bool:
        return await c.postings.count_documents({"payment_id": {"$in": ids}, "load_status": "FAILED"}) == n

    await wait_for(all_failed, timeout=120, interval=0.3)
    return ids


async def failed_with_a_mapping(c: Collections, ids: list[str]) -> int:
    """FAILED postings of the account, whose mapping is entered: what the issue found left for good."""
    assert await c.mappings.count_documents({"practice_id": "clinic-a", "patient_account_id": ACCOUNT}) == 1
    return await c.postings.count_documents({"payment_id": {"$in": ids}, "load_status": "FAILED"})


async def the_worker_sweeps_then_all_load_once(worker: Paypost, c: Collections, ids: list[str],
                                               posted: Posted) -> None:
    n = len(ids)
    await worker.reactions.sweep_all()  # what every worker runs every 30 s, and at its start
    assert await failed_with_a_mapping(c, ids) == 0
    # Claimed but never replayed (the heal was stopped between its claim and its replays): the
    # stale-retry sweep replays those a minute later; here at once.
    await worker.operations.replay_stale(older_than_seconds=0)

    async def all_loaded() -> bool:
        return await c.postings.count_documents({"payment_id": {"$in": ids}, "load_status": "LOADED"}) == n

    await wait_for(all_loaded, timeout=120, interval=0.3)
    entries = await posted(ids)
    assert len(entries) == n and set(entries.values()) == {1}  # each posted once


async def test_a_heal_stopped_mid_way_is_finished_by_a_workers_sweep(
    paypost: Paypost, settings: Settings, upstream: Upstream, paced_practice: str, system: ReferenceLedger,
) -> None:
    c = paypost.collections
    ids = await fail_for_want_of_a_mapping(upstream, c)
    # The mapping is entered through an API process (it consumes nothing; its stop gives the heal
    # one second, then cancels it).
    healer = Paypost(settings.model_copy(update={"replay_rate": SLOW, "stop_timeout": 1.0}), retry_seconds=10)
    await healer.start(consume=False)
    stopped = False
    try:
        transport = httpx.ASGITransport(app=healer.http_app(manage_lifecycle=False))
        async with httpx.AsyncClient(transport=transport, base_url="http://paypost",
                                     headers={"Authorization": f"Bearer {OPERATOR}"}) as api:
            r = await api.put(f"/api/v1/practices/clinic-a/patient-accounts/{ACCOUNT}/mapping",
                              json={"ehr_patient_id": "EHR-1"})
            assert r.status_code == 200 and r.json()["retried"] == N, r.text
        await asyncio.sleep(2)
        await healer.stop()
        stopped = True
    finally:
        if not stopped:
            await healer.stop()
    assert await failed_with_a_mapping(c, ids) > 0  # the heal was cut short
    await the_worker_sweeps_then_all_load_once(paypost, c, ids, posted_to(system))


async def test_a_heal_whose_process_is_killed_is_finished_by_a_workers_sweep(
    paypost: Paypost, settings: Settings, upstream: Upstream, paced_practice: str, system: ReferenceLedger,
) -> None:
    c = paypost.collections
    ids = await fail_for_want_of_a_mapping(upstream, c)
    healer = GuardedProcess(settings.amqp_url, settings.mongodb_uri, settings.mongodb_db, role="api")
    healer.env["PAYPOST_REPLAY_RATE"] = str(SLOW)
    await healer.start()
    try:
        async with httpx.AsyncClient(base_url=healer.base, headers={"Authorization": f"Bearer {TOKEN}"}) as api:
            r = await api.put(f"/api/v1/practices/clinic-a/patient-accounts/{ACCOUNT}/mapping",
                              json={"ehr_patient_id": "EHR-1"}, timeout=30)
            assert r.status_code == 200 and r.json()["retried"] == N, r.text
        await asyncio.sleep(2)
        assert healer.proc is not None
        healer.proc.send_signal(signal.SIGKILL)  # mid-heal: nothing of it runs after this
        healer.proc.wait()
    finally:
        healer.stop()
    assert await failed_with_a_mapping(c, ids) > 0  # the heal was cut short
    await the_worker_sweeps_then_all_load_once(paypost, c, ids, posted_to(system))


async def test_a_heal_whose_retries_ran_out_on_a_failover_is_finished_by_a_workers_sweep(
    paypost: Paypost, settings: Settings, upstream: Upstream, practice: str,
) -> None:
    """The heal's retries have a budget (60 s in production): a database with no primary for
    longer makes it give up (``self_heal_failed``) with everything still FAILED."""
    from pymongo.errors import NotPrimaryError

    c = paypost.collections
    ids = await fail_for_want_of_a_mapping(upstream, c, n=50)
    healer = Paypost(settings, retry_seconds=0.5)  # the budget, shortened
    await healer.start(consume=False)
    attempts = 0

    async def no_primary(*_: object) -> int:
        nonlocal attempts
        attempts += 1
        raise NotPrimaryError("not primary")

    healer.operations.heal_account = no_primary  # type: ignore[method-assign,assignment]  # the failover, simulated
    try:
        blocked = await healer.mapping_service.update("clinic-a", ACCOUNT, "EHR-2", "alice", "office")
        assert blocked == len(ids)
        await healer.healing.wait(grace=10)
    finally:
        await healer.stop()
    assert attempts > 1 and await failed_with_a_mapping(c, ids) == len(ids)  # retried, then given up
    await the_worker_sweeps_then_all_load_once(paypost, c, ids, posted_to_the_builtin_ledger(c))


def test_the_sweep_reads_the_mapping_failures_through_their_index(settings: Settings) -> None:
    """The sweep's query is answered from the partial index of FAILED postings by error code."""
    from paypost.infra.mongo.posting_commands import MongoPostingCommands
    from paypost.infra.mongo.postings import MAPPING_FAILURES, MAPPING_FAILURES_INDEX

    async def plan() -> str:
        client = connect(settings.mongodb_uri)
        try:
            c = Collections(client[f"plan_{uuid.uuid4().hex[:8]}"])
            await MongoPostingCommands(c).ensure_indexes()
            explained = await c.postings.find(MAPPING_FAILURES).explain()
            await client.drop_database(c.postings.database.name)
            return str(explained["queryPlanner"]["winningPlan"])
        finally:
            await client.close()

    assert MAPPING_FAILURES_INDEX in asyncio.run(plan())


async def test_failures_waiting_for_a_mapping_nobody_entered_never_hide_the_ones_after_them(
    paypost: Paypost, upstream: Upstream, practice: str,
) -> None:
    """The sweep reads a page a round: ten failures of an account still unmapped fill the first two
    pages of five; the two whose mapping was entered (behind the heal's back) are on the third."""
    from datetime import UTC, datetime

    c = paypost.collections
    waiting = [f"a-wait-{i:02}" for i in range(10)]
    late = ["z-late-1", "z-late-2"]  # after every waiting one in the order of the keys
    for pid in waiting:
        await upstream.payment(payment_id=pid, patient_account_id="acct-nobody", ehr_patient_id=None)
    for pid in late:
        await upstream.payment(payment_id=pid, patient_account_id="acct-late", ehr_patient_id=None)

    async def all_failed() -> bool:  # and dead-lettered: what follows each failure (healing.failed) is done
        return await c.postings.count_documents({"load_status": "FAILED", "dead_lettered_at": {"$ne": None}}) == 12

    await wait_for(all_failed, timeout=60, interval=0.2)
    await paypost.mapping_store.put("clinic-a", "acct-late", "EHR-1", "test", datetime.now(UTC))  # no heal run
    assert [await paypost.healing.sweep(limit=5) for _ in range(3)] == [0, 0, 2]

    async def loaded() -> bool:
        return await c.postings.count_documents({"payment_id": {"$in": late}, "load_status": "LOADED"}) == 2

    await wait_for(loaded, timeout=30, interval=0.2)
    assert await c.postings.count_documents({"payment_id": {"$in": waiting}, "load_status": "FAILED"}) == 10
