"""A payment whose entry may have reached the practice's system with its answer lost looks the entry up
(``GET /entries/{key}``) before it posts again, whichever call comes next: released from parking,
released from HELD, retried by an operator after LEDGER_UNAVAILABLE, handled again after paypost was
killed between the POST and the outcome's write (issue 31). The posting's row says so (``sent_at``),
not the memory of the call that sent it.

Each test makes the system commit the entry and lose the answer, deterministically: it answers 503
and stays down (``down_after_commit_seconds``), or holds the answer while paypost is killed
(``answer_after_commit_seconds``). The test settings hold a practice after 3 s without an answer and
try it every second; a call makes 3 attempts.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import httpx
import orjson
import pytest

from paypost.bench.load import TOKEN
from paypost.infra.mongo.database import connect
from paypost.infra.runtime.settings import Settings
from paypost.local.reference_ledger import Faults
from tests.support.api_calls import wait_status
from tests.support.ledgers import PATIENT, ReferenceLedger, entry_key, serve_reference_ledger
from tests.support.payloads import payment_body
from tests.support.processes import GuardedProcess
from tests.support.upstream import Upstream
from tests.support.waits import wait_for

pytestmark = pytest.mark.integration

PMS = "clinic-pms"
ATTEMPTS = 3  # the test settings' ledger_attempts: the first call sends at most this many requests


@pytest.fixture
async def system() -> AsyncIterator[ReferenceLedger]:
    async with serve_reference_ledger() as server:
        yield server


@pytest.fixture
async def pms_practice(api: httpx.AsyncClient, system: ReferenceLedger) -> str:
    r = await api.put(f"/api/v1/practices/{PMS}", json={
        "name": "PMS", "ledger": {"kind": "http", "base_url": system.url, "timeout_seconds": 5, "tasks": False},
        "enabled": True})
    assert r.status_code == 200, r.text
    return PMS


def key(payment_id: str, practice_id: str = PMS) -> str:
    return entry_key(practice_id, payment_id)


def requests_for(system: ReferenceLedger, payment_id: str, practice_id: str = PMS) -> list[str]:
    """The methods of the lookups and posts of one payment's entry, in the order they arrived."""
    return [method for method, k in system.state.entry_requests if k == key(payment_id, practice_id)]


def posted_again_without_a_lookup(system: ReferenceLedger) -> list[str]:
    """The entries posted a second time with no lookup of the entry since the post before."""
    looked: dict[str, bool] = {}  # entry: looked up since its last post (absent: never posted)
    found = []
    for method, k in system.state.entry_requests:
        if method == "GET" and k in looked:
            looked[k] = True
        elif method == "POST":
            if looked.get(k) is False:
                found.append(k)
            looked[k] = False
    return found


def assert_looked_up_before_any_second_post(system: ReferenceLedger, payment_id: str) -> list[str]:
    """The entry was committed by its first POST, whose answer was lost; every call after the commit
    looked it up first and found it: no POST arrived after the commit, and a later call came (more
    requests than the first call's attempts). A request that arrived before the commit (the first
    POST answered so late that paypost's attempt timed out, looked up, found nothing yet and posted
    again, all before that POST committed) is not one after it."""
    sent = requests_for(system, payment_id)
    since = system.state.committed_after[key(payment_id)]
    after_commit = [method for method, k in system.state.entry_requests[since:] if k == key(payment_id)]
    assert sent[0] == "POST" and after_commit and "POST" not in after_commit, (sent, after_commit)
    assert len(sent) > ATTEMPTS, sent  # a later call came, and began with the lookup
    assert posted_again_without_a_lookup(system) == []
    assert key(payment_id) in system.state.dropped_keys and system.state.reposted_after_drop == 0
    return sent


async def loaded_with_the_committed_entry(api: httpx.AsyncClient, system: ReferenceLedger,
                                          payment_id: str) -> dict[str, Any]:
    posting = await wait_status(api, PMS, payment_id, "LOADED", timeout=30)
    entry_id = system.state.entries[key(payment_id)]["entry_id"]
    assert [a["detail"] for a in posting["audit"] if a["action"] == "loaded"] == [f"ledger entry {entry_id}"]
    return posting


async def test_a_payment_released_from_parking_looks_its_entry_up_before_posting_again(
    api: httpx.AsyncClient, upstream: Upstream, pms_practice: str, system: ReferenceLedger,
) -> None:
    system.state.faults = Faults(down_after_commit_seconds=3600)  # down until the test brings it back
    await upstream.payment(practice_id=pms_practice, payment_id="park-1", ehr_patient_id=PATIENT)
    # Its call got no answer: the practice is failing, and a payment that comes now is parked unsent.
    await wait_for(lambda: _waiting(api, pms_practice, 1), timeout=30)
    await upstream.payment(practice_id=pms_practice, payment_id="park-2", ehr_patient_id=PATIENT)
    await wait_for(lambda: _waiting(api, pms_practice, 2), timeout=30)
    system.state.down_until = 0  # it answers again, well before the 3 s after which it would be held

    posting = await loaded_with_the_committed_entry(api, system, "park-1")
    await wait_status(api, pms_practice, "park-2", "LOADED", timeout=30)

    assert "held" not in [a["action"] for a in posting["audit"]]  # parked, never HELD
    assert_looked_up_before_any_second_post(system, "park-1")
    # Never sent before its release, the other is posted without a lookup: its row says so.
    assert requests_for(system, "park-2") == ["POST"]
    assert sorted(e["payment_id"] for e in system.state.entries.values()) == ["park-1", "park-2"]


async def test_a_payment_released_from_held_looks_its_entry_up_before_posting_again(
    api: httpx.AsyncClient, upstream: Upstream, pms_practice: str, system: ReferenceLedger,
) -> None:
    system.state.faults = Faults(down_after_commit_seconds=3600)  # down until the test brings it back
    await upstream.payment(practice_id=pms_practice, payment_id="held-1", ehr_patient_id=PATIENT)
    await wait_status(api, pms_practice, "held-1", "HELD", timeout=30)  # held after 3 s, tried every second
    system.state.down_until = 0  # it answers again

    posting = await loaded_with_the_committed_entry(api, system, "held-1")

    assert "held" in [a["action"] for a in posting["audit"]]
    assert_looked_up_before_any_second_post(system, "held-1")


async def test_a_payment_retried_by_an_operator_after_ledger_unavailable_looks_its_entry_up_first(
    api: httpx.AsyncClient, upstream: Upstream, pms_practice: str, system: ReferenceLedger,
) -> None:
    system.state.faults = Faults(down_after_commit_seconds=3600)
    body = await upstream.payment(practice_id=pms_practice, payment_id="retry-1", ehr_patient_id=PATIENT)
    await wait_for(lambda: _seen(system, "retry-1", ATTEMPTS))  # its first call got no answer: parked
    # Its message reaches the dead letters without an outcome (its deliveries used up): FAILED,
    # LEDGER_UNAVAILABLE, for a person to retry.
    death = {"x-death": [{"reason": "delivery_limit", "queue": "paypost.postings", "count": 21}]}
    await upstream.send("payment.posted", body, headers=death, exchange="paypost.dead-letter")
    failed = await wait_status(api, pms_practice, "retry-1", "FAILED", timeout=30)
    assert failed["load_error"]["code"] == "LEDGER_UNAVAILABLE"
    system.state.down_until = 0  # it answers again; nothing waits for it, so it is healthy again
    await wait_for(lambda: _healthy(api, pms_practice), timeout=30)
    await asyncio.sleep(1.2)  # every board has read that (once a second): the retry is loaded, not parked
    before_retry = len(requests_for(system, "retry-1"))

    r = await api.post("/api/v1/postings/changes", json={"practice_id": pms_practice, "retry": ["retry-1"]})
    assert r.status_code == 202, r.text
    await loaded_with_the_committed_entry(api, system, "retry-1")

    sent = assert_looked_up_before_any_second_post(system, "retry-1")
    assert sent[before_retry:] == ["GET"]  # the retry's one request: the lookup, which found the entry


async def test_a_payment_handled_again_after_a_kill_between_its_post_and_its_outcome_looks_its_entry_up_first(
    settings: Settings,
) -> None:
    practice_id, payment_id = "clinic-k", "killed-1"
    client = connect(settings.mongodb_uri)
    try:
        async with serve_reference_ledger() as system:
            system.state.faults = Faults(answer_after_commit_seconds=120)  # commits, then keeps the answer
            worker = GuardedProcess(settings.amqp_url, settings.mongodb_uri, settings.mongodb_db)
            worker.env["PAYPOST_LEDGER_ALLOWED_HOSTS"] = "127.0.0.0/8"
            await worker.start()
            try:
                async with httpx.AsyncClient(base_url=f"{worker.base}/api/v1",
                                             headers={"Authorization": f"Bearer {TOKEN}"}) as api:
                    r = await api.put(f"/practices/{practice_id}", json={"name": "K", "enabled": True, "ledger": {
                        "kind": "http", "base_url": system.url, "timeout_seconds": 60, "tasks": False}})
                    assert r.status_code == 200, r.text
                    await _publish(settings.amqp_url, payment_body(practice_id=practice_id, payment_id=payment_id,
                                                                   ehr_patient_id=PATIENT))
                    await wait_for(lambda: _committed(system, key(payment_id, practice_id)), timeout=30)
                    assert worker.proc is not None
                    worker.proc.send_signal(signal.SIGKILL)  # after its POST, before its outcome's write
                    await asyncio.to_thread(worker.proc.wait)
                    row = await client[settings.mongodb_db].postings.find_one({"_id": f"{practice_id}/{payment_id}"})
                    assert row is not None and row["load_status"] == "PENDING" and row["sent_at"] is not None
                    system.state.faults = Faults()  # answers at once now (the kept answer reaches nobody)

                    await worker.start()  # the unacknowledged delivery comes again
                    posting = await wait_for(lambda: _loaded(api, practice_id, payment_id), timeout=60)
            finally:
                worker.stop()
        entry_id = system.state.entries[key(payment_id, practice_id)]["entry_id"]
        assert [a["detail"] for a in posting["audit"] if a["action"] == "loaded"] == [f"ledger entry {entry_id}"]
        assert requests_for(system, payment_id, practice_id) == ["POST", "GET"]
        assert system.state.posts == 1
    finally:
        await client.drop_database(settings.mongodb_db)
        await client.close()


async def _seen(system: ReferenceLedger, payment_id: str, at_least: int = 1) -> bool:
    return len(requests_for(system, payment_id)) >= at_least


async def _committed(system: ReferenceLedger, entry_key: str) -> bool:
    return entry_key in system.state.entries


async def _waiting(api: httpx.AsyncClient, practice_id: str, count: int) -> bool:
    r = await api.get(f"/api/v1/practices/{practice_id}")
    assert r.status_code == 200, r.text
    hold = r.json()["hold"]
    return hold is not None and hold["health"] == "failing" and hold["waiting"] == count


async def _healthy(api: httpx.AsyncClient, practice_id: str) -> bool:
    r = await api.get(f"/api/v1/practices/{practice_id}")
    assert r.status_code == 200, r.text
    return r.json()["hold"] is None


async def _loaded(api: httpx.AsyncClient, practice_id: str, payment_id: str) -> dict[str, Any] | None:
    r = await api.get(f"/postings/{practice_id}/{payment_id}")
    found: dict[str, Any] | None = r.json() if r.status_code == 200 and r.json()["load_status"] == "LOADED" else None
    return found


async def _publish(amqp_url: str, body: dict[str, Any]) -> None:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange("paypost.payments", ensure=False)
        await exchange.publish(aio_pika.Message(orjson.dumps(body), message_id=str(body["event_id"]),
                                                delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                               routing_key="payment.posted")
    finally:
        await connection.close()

