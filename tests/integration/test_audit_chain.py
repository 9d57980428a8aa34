"""The audit trail is tamper-evident: sealed into a hash chain that `paypost audit verify` checks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo.asynchronous.collection import AsyncCollection

from paypost.bootstrap import Paypost
from paypost.domain.model import LoadStatus, PostingKind
from paypost.domain.posting import AuditEntry, KeptMessage, Posting, PostingKey
from paypost.infra.mongo.audit_seals import AuditSealer
from paypost.infra.mongo.database import Collections, Doc, connect
from paypost.infra.mongo.postings import doc_id, new_doc
from paypost.infra.runtime.sealer_process import SealerProcess
from paypost.infra.runtime.settings import Settings
from tests.support.api_calls import wait_status
from tests.support.upstream import Upstream
from tests.support.waits import wait_for

pytestmark = pytest.mark.integration

CHECKOUT = Path(__file__).resolve().parents[2]


def verify(settings: Settings) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PAYPOST_MONGODB_URI": settings.mongodb_uri, "PAYPOST_MONGODB_DB": settings.mongodb_db}
    return subprocess.run([str(Path(sys.executable).with_name("paypost")), "audit", "verify"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


async def test_untouched_trail_verifies_and_an_edit_is_caught(
    settings: Settings, paypost: Paypost, api: httpx.AsyncClient, upstream: Upstream, practice: str
) -> None:
    failed = await upstream.payment(ehr_patient_id=None, patient_account_id="acct-h")
    loaded = await upstream.payment()
    await wait_status(api, practice, failed["payment_id"], "FAILED")
    await wait_status(api, practice, loaded["payment_id"], "LOADED")
    postings = paypost.collections.postings
    failed_id, loaded_id = f"{practice}/{failed['payment_id']}", f"{practice}/{loaded['payment_id']}"
    await wait_for(lambda: postings.find_one({"_id": failed_id, "audit.action": "dead_lettered"}))
    await api.post("/api/v1/postings/changes", json={"practice_id": practice,
                   "clear": [{"payment_id": failed["payment_id"], "reason": "posted by hand"}]})
    await wait_status(api, practice, failed["payment_id"], "CLEARED")
    assert await actions(postings, failed_id) == ["received", "failed", "dead_lettered", "clear"]
    assert await actions(postings, loaded_id) == ["received", "loaded"]

    # The whole trail is sealed (by this sealer or paypost's own), so the check below covers every entry.
    sealer = AuditSealer(paypost.collections)
    await sealer.seal_all()
    sealed = await sealer.verify()
    assert (sealed.ok, sealed.entries, sealed.unsealed) == (True, 6, 0), sealed.problems
    good = verify(settings)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "TAMPERED" not in good.stdout and "6 audit entries verified, 0 not sealed yet" in good.stdout

    # Someone rewrites who cleared it and why.
    await postings.update_one({"_id": failed_id, "audit.action": "clear"},
                              {"$set": {"audit.$.actor": "nobody", "audit.$.reason": "never happened"}})
    # And someone deletes the last entry of another posting.
    await postings.update_one({"_id": loaded_id}, {"$pop": {"audit": 1}})
    bad = verify(settings)
    assert bad.returncode == 1
    assert f"{failed_id}: audit entry 3 was altered" in bad.stdout
    assert f"{loaded_id}: audit entry 1 was removed" in bad.stdout


async def test_an_altered_seal_breaks_the_chain(settings: Settings, paypost: Paypost, api: httpx.AsyncClient,
                                                upstream: Upstream, practice: str) -> None:
    for _ in range(2):
        body = await upstream.payment()
        await wait_status(api, practice, body["payment_id"], "LOADED")
        await AuditSealer(paypost.collections).seal()
    seals = paypost.collections.db.get_collection("audit_seals")
    assert await seals.count_documents({}) >= 2
    before = await AuditSealer(paypost.collections).verify()
    assert before.ok, before.problems  # the chain was whole: the edit below is what breaks it
    # The first seal of postings' entries (a seal of access entries alone may come before it).
    first = await seals.find_one({"entries.0": {"$exists": True}}, sort=[("seq", 1)])
    assert first is not None
    await seals.update_one({"seq": first["seq"]}, {"$set": {"entries": []}})
    result = await AuditSealer(paypost.collections).verify()
    assert not result.ok
    assert any(f"seal {first['seq']} was altered" in p for p in result.problems)


async def test_a_sealer_asked_to_stop_begins_no_more_rounds_and_the_next_seals_the_rest(
    collections: Collections,
) -> None:
    """A stop ends the rounds of a sealer with a backlog (paypost's stop must end in its time); what
    it leaves, the next sealer seals from where its chain ends, each entry once."""
    # No paypost here (its own sealer would seal too): postings are written as paypost writes them.
    ids = [await loaded_posting(collections, n) for n in range(3)]
    stopping, rounds = AuditSealer(collections), 0

    def stop_after_one_round() -> bool:
        nonlocal rounds
        rounds += 1
        return rounds > 1

    assert await stopping.seal_all(limit=1, until=stop_after_one_round) == 2  # one posting's two entries
    assert await stopping.waiting()

    assert await AuditSealer(collections).seal_all(limit=1) == 2 * (len(ids) - 1)
    assert sorted([await stopping.sealed_count(i) for i in ids]) == [2] * len(ids)
    assert not await stopping.waiting()
    result = await stopping.verify()
    assert result.ok, result.problems
    assert (result.entries, result.unsealed) == (2 * len(ids), 0)


async def test_a_trail_that_grows_after_its_seal_has_its_new_entries_sealed_once_in_rounds(
    paypost: Paypost, api: httpx.AsyncClient, upstream: Upstream, practice: str
) -> None:
    ids = []
    for _ in range(5):
        body = await upstream.payment()
        await wait_status(api, practice, body["payment_id"], "LOADED")
        ids.append(f"{practice}/{body['payment_id']}")
    # The answers above are in the access trail, written off their requests' path within a second:
    # written now, so that none lands after the seals below (it would be waiting to be sealed).
    await paypost.access_log.flush()
    sealer = AuditSealer(paypost.collections)
    await sealer.seal_all(limit=2)  # several rounds of two
    assert [await sealer.sealed_count(i) for i in ids] == [2] * 5  # received, loaded
    postings = paypost.collections.postings
    before = await postings.find_one({"_id": ids[0]})

    # One of them is being loaded again: a new entry appended while it is RETRYING.
    await postings.update_one({"_id": ids[0]}, {"$set": {"load_status": "RETRYING"},
                                                "$push": {"audit": {"actor": "carol", "action": "retry"}}})
    await sealer.seal_all(limit=2)  # (or paypost's own sealer did)
    assert [await sealer.sealed_count(i) for i in ids] == [3, 2, 2, 2, 2]
    assert not await sealer.waiting()
    after = await postings.find_one({"_id": ids[0]}, {"audit": 0, "load_status": 0})
    assert before is not None and after is not None
    unchanged = {k: v for k, v in before.items() if k not in ("audit", "load_status")}
    assert unchanged == after  # sealing wrote nothing to the posting
    result = await sealer.verify()
    assert result.ok, result.problems
    assert result.unsealed == 0


async def test_an_entry_appended_while_a_round_seals_is_sealed_by_the_next_once(
    collections: Collections,
) -> None:
    """An entry appended while a round is sealing (an operator's note, a retry) is not in what the
    round read: its change comes after where the round recorded it read to, and the next round
    seals it. No entry is sealed twice, none is left out."""
    # No paypost here (its own sealer would seal too): postings are written as paypost writes them.
    postings = collections.postings
    ids = [await loaded_posting(collections, n) for n in range(3)]
    appended: list[str] = []
    seals_written: list[int] = []

    class GrowsOneTrail:
        """The seals collection, but while the first seal is written an entry is appended to ids[0]."""

        def __init__(self, seals: Any) -> None:
            self._seals = seals

        def __getattr__(self, name: str) -> Any:
            return getattr(self._seals, name)

        async def insert_one(self, doc: Any, **kwargs: Any) -> Any:
            seals_written.append(doc["seq"])
            if not appended:  # outside the round's transaction, as the posting path writes
                appended.append(ids[0])
                await postings.update_one({"_id": ids[0]}, {"$push": {"audit": {"actor": "carol", "action": "note"}}})
            return await self._seals.insert_one(doc, **kwargs)

    seals = GrowsOneTrail(collections.db.get_collection("audit_seals", codec_options=postings.codec_options))
    sealer = AuditSealer(collections, seals=seals)  # type: ignore[arg-type]  # a stand-in for the collection
    assert await sealer.seal(limit=10) == 6  # the three trails as the round read them
    assert await sealer.seal(limit=10) == 1  # the note, appended meanwhile
    assert await sealer.seal(limit=10) == 0
    assert seals_written == [1, 2]
    assert [await sealer.sealed_count(i) for i in ids] == [3, 2, 2]

    result = await AuditSealer(collections).verify()
    assert result.ok, result.problems  # the appended entry sealed once, nothing sealed twice
    assert (result.seals, result.entries, result.unsealed) == (2, 7, 0)


async def loaded_posting(collections: Collections, n: int) -> str:
    """A LOADED posting with its two entries, not sealed yet, as paypost writes it."""
    now = datetime.now(UTC)
    posting = Posting(key=PostingKey("clinic-s", f"pay-{n}"), kind=PostingKind.PAYMENT,
                      load_status=LoadStatus.LOADED, event_id=f"e-{n}", received_at=now,
                      patient_account_id="acct-1", amount=Decimal("10.00"), currency="USD", method="card")
    entries = [AuditEntry(now, "paypost", "received"), AuditEntry(now, "paypost", "loaded")]
    await collections.postings.insert_one(new_doc(posting, KeptMessage(b"{}", "payment.posted", None, {}), entries,
                                                  LoadStatus.LOADED))
    return doc_id(posting.key)


async def test_the_sealer_process_seals_comes_back_when_killed_and_seals_the_rest_at_stop(
    settings: Settings, collections: Collections,
) -> None:
    count = 0

    async def loaded() -> str:
        nonlocal count
        count += 1
        return await loaded_posting(collections, count)

    async def sealed(posting_id: str, timeout: float = 20.0) -> bool:
        return await sealed_soon(collections, posting_id, timeout)

    process = SealerProcess(settings.mongodb_uri, settings.mongodb_db, every=0.2)
    process.start()
    try:
        assert await sealed(await loaded())
        pid = process.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await asyncio.to_thread(_wait_dead, process)
        assert not process.alive
        assert process.restart_if_dead()
        assert process.pid != pid
        assert await sealed(await loaded())
    finally:
        await process.stop()
    assert not process.alive
    assert not process.restart_if_dead()  # asked to stop: not started again

    # Stopping asks it to seal what is left. This one seals at start, then not for a minute.
    slow = SealerProcess(settings.mongodb_uri, settings.mongodb_db, every=60)
    slow.start()
    try:
        assert await sealed(await loaded())  # its first rounds have run
        await asyncio.sleep(1.0)  # and found nothing more: it now waits a minute
        last = await loaded()
        assert not await sealed(last, timeout=0.5)
    finally:
        await slow.stop()
    assert await sealed(last, timeout=0)
    result = await AuditSealer(collections).verify()
    assert result.ok, result.problems
    assert (result.entries, result.unsealed) == (8, 0)


async def test_a_resting_sealer_holds_no_connection_and_seals_once_woken(
    settings: Settings, collections: Collections,
) -> None:
    """With nothing to seal, paypost's sealer (``rests``) closes its connections after a few rounds and
    sleeps on its pipe: a posting written then waits, unsealed, until its paypost wakes it; an idle
    round renews no lease (an idle sealer writes nothing)."""
    process = SealerProcess(settings.mongodb_uri, settings.mongodb_db, every=0.1, rests=True)
    process.start()
    try:
        assert await sealed_soon(collections, await loaded_posting(collections, 1))
        renewed = (await collections.leases.find_one({"_id": "audit-sealer"}) or {}).get("renewed_at")
        await asyncio.sleep(5.0)  # three rounds with nothing (0.1, 0.2, 0.4 s on), with room for busy cores: it rests
        resting = await loaded_posting(collections, 2)
        assert not await sealed_soon(collections, resting, timeout=1.5)  # nobody woke it
        assert (await collections.leases.find_one({"_id": "audit-sealer"}) or {}).get("renewed_at") == renewed
        assert process.alive
        process.nudge()  # what paypost's sealing duty does once it sees something to seal
        assert await sealed_soon(collections, resting, timeout=10)
    finally:
        await process.stop()
    result = await AuditSealer(collections).verify()
    assert result.ok and result.unsealed == 0, result.problems


def _wait_dead(process: SealerProcess) -> None:
    for _ in range(100):
        if not process.alive:
            return
        time.sleep(0.05)


@pytest.mark.parametrize("arriving", [False, True], ids=["quiet", "payments-arriving"])
async def test_a_sealer_whose_paypost_was_killed_exits_by_itself(settings: Settings, collections: Collections,
                                                                  arriving: bool) -> None:
    """kill -9 leaves paypost no time to stop its sealer; a new paypost starts its own, whose sealer
    waits for this one's lease. So it goes within its last rounds' 10 s even while postings keep
    coming faster than its rounds catch up with (its rounds once went on for as long as they came)."""
    parent = subprocess.Popen(  # noqa: ASYNC220  (started here, waited for below without blocking)
        [sys.executable, "-c", (
            "import sys, time\n"
            "from paypost.infra.runtime.sealer_process import SealerProcess\n"
            "p = SealerProcess(sys.argv[1], sys.argv[2], every=0.2)\n"
            "p.start()\n"
            "print(p.pid, flush=True)\n"
            "time.sleep(60)\n"
        ), settings.mongodb_uri, settings.mongodb_db],
        stdout=subprocess.PIPE, text=True, cwd=CHECKOUT,
    )
    assert parent.stdout is not None
    child = int(await asyncio.to_thread(parent.stdout.readline))
    assert await sealed_soon(collections, await loaded_posting(collections, 1))  # it works
    feeding = asyncio.create_task(_keep_loading(collections, 2)) if arriving else None
    try:
        if feeding is not None:
            await asyncio.sleep(1)  # its rounds are under way, never catching up
        parent.kill()
        await asyncio.to_thread(parent.wait)
        assert await asyncio.to_thread(_gone, child, 20.0), "the sealer outlived its paypost"
    finally:
        if feeding is not None:
            feeding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeding


async def _keep_loading(collections: Collections, first: int) -> None:
    """LOADED postings one after another, as fast as the database takes them, until cancelled."""
    n = first
    while True:
        await loaded_posting(collections, n)
        n += 1


async def actions(postings: AsyncCollection[Doc], posting_id: str) -> list[str]:
    doc = await postings.find_one({"_id": posting_id}, {"audit.action": 1})
    return [entry["action"] for entry in doc["audit"]] if doc else []


async def sealed_soon(collections: Collections, posting_id: str, timeout: float = 20.0) -> bool:
    """Whether the posting's whole trail is sealed within ``timeout`` seconds (looked at once at least)."""
    deadline = time.monotonic() + timeout
    sealer = AuditSealer(collections)
    while True:
        doc = await collections.postings.find_one({"_id": posting_id}, {"audit": 1})
        if doc is not None and await sealer.sealed_count(posting_id) == len(doc["audit"]):
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)


def _gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # not our child: only reaps if it were
        time.sleep(0.1)
    return False


async def _write_while(collections: Collections, stop: asyncio.Event, written: list[str]) -> int:
    """Postings settle, and settled ones grow (a note), while the sealers seal; the entries written."""
    n, entries = 1000, 0
    while not stop.is_set():
        n += 1
        written.append(await loaded_posting(collections, n))
        entries += 2
        if n % 3 == 0:
            entries += 1
            await collections.postings.update_one(
                {"_id": written[len(written) // 2]},
                {"$push": {"audit": {"at": datetime.now(UTC), "actor": "carol", "action": "note", "reason": None,
                                     "detail": None}}})
        await asyncio.sleep(0.002)
    return entries


async def test_four_sealers_at_once_keep_one_linear_chain_each_entry_sealed_once(
    settings: Settings, collections: Collections,
) -> None:
    """Four sealers with no lease between them, each on a client of its own, seal while postings
    settle and grow: their rounds conflict, and the chain stays linear with every entry once."""
    clients = [connect(settings.mongodb_uri) for _ in range(4)]
    sealers = [AuditSealer(Collections(client[settings.mongodb_db])) for client in clients]
    stop = asyncio.Event()
    written: list[str] = []
    rounds: list[int] = []

    async def keep_sealing(sealer: AuditSealer) -> None:
        while not stop.is_set():
            rounds.append(await sealer.seal(limit=50))

    try:
        work = [asyncio.ensure_future(keep_sealing(s)) for s in sealers]
        writer = asyncio.ensure_future(_write_while(collections, stop, written))

        async def sealed_concurrently_often() -> bool:  # they did seal concurrently, often: 4 s, or longer if slow
            return len(written) > 100 and sum(1 for r in rounds if r) > 4

        await asyncio.sleep(4)
        await wait_for(sealed_concurrently_often, timeout=60)
        stop.set()
        entries, *_ = await asyncio.gather(writer, *work)
        await sealers[0].seal_all()
    finally:
        for client in clients:
            await client.close()

    result = await AuditSealer(collections).verify()
    assert result.ok, result.problems[:5]  # no seal missing or out of order, no entry sealed twice
    assert result.unsealed == 0
    assert result.entries == entries  # every entry, once


async def test_four_sealer_processes_at_once_seal_every_entry_once(
    settings: Settings, collections: Collections,
) -> None:
    """Four paypost processes' sealers (processes of their own, each its own lease holder) run at
    once while postings settle: one seals at a time, the chain verifies, nothing is left."""
    processes = [SealerProcess(settings.mongodb_uri, settings.mongodb_db, every=0.1) for _ in range(4)]
    for process in processes:
        process.start()
    stop = asyncio.Event()
    written: list[str] = []
    sealer = AuditSealer(collections)

    async def one_led_while_postings_settled() -> bool:
        # A process starts in seconds on a loaded machine: postings settle for 4 s at least, and until
        # one of the four has taken the lease and sealed some of them while the rest still came.
        lease = await collections.leases.find_one({"_id": "audit-sealer"})
        return (lease is not None and len(written) > 100
                and await sealer.sealed_count(written[0]) > 0)

    try:
        writer = asyncio.ensure_future(_write_while(collections, stop, written))
        await asyncio.sleep(4)
        await wait_for(one_led_while_postings_settled, timeout=60, interval=0.1)
        stop.set()
        entries = await writer
    finally:
        stop.set()
        await asyncio.gather(*(process.stop() for process in processes))  # each seals what is left

    result = await sealer.verify()
    assert result.ok, result.problems[:5]
    assert (result.unsealed, result.entries) == (0, entries)
