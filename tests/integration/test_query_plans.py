"""What runs every few seconds or every round whatever the load reads through its indexes and
writes in shared round trips: what it costs must not grow with what a platform keeps (a million
postings and more) nor go one write per item, only with what it finds.

Each is run against a database of its own, with MongoDB's profiler on, so that what the database
did for the call is read from its own account of it rather than from a plan asked for separately.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from paypost.domain.alerts import Delivery
from paypost.domain.transfers import SettledTransfer
from paypost.infra.mongo.alerts import MongoAlertOutbox, MongoAlertStore, outbox_fields
from paypost.infra.mongo.database import Collections, connect, ensure_indexes
from paypost.infra.mongo.directory import MongoPracticeDirectory
from paypost.infra.mongo.postings import MongoPostingStore
from paypost.infra.mongo.transfers import MongoTransferStore
from paypost.infra.runtime.settings import Settings

pytestmark = pytest.mark.integration

AT = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
async def collections(settings: Settings) -> AsyncIterator[Collections]:
    client = connect(settings.mongodb_uri)
    name = f"paypost_plans_{uuid.uuid4().hex[:8]}"
    c = Collections(client[name])
    await ensure_indexes(c)
    try:
        yield c
    finally:
        await client.drop_database(name)
        await client.close()


def _posting(practice_id: str, n: int, parked: bool) -> dict[str, Any]:
    at = AT + timedelta(seconds=n)
    doc: dict[str, Any] = {"_id": f"{practice_id}/p-{n}", "practice_id": practice_id, "payment_id": f"p-{n}",
                           "kind": "payment", "load_status": "HELD" if parked else "LOADED", "received_at": at,
                           "updated_at": at}
    if parked:
        doc["parked_at"] = at
    return doc


@contextlib.asynccontextmanager
async def profiling(c: Collections) -> AsyncIterator[None]:
    """MongoDB's profiler on for what runs inside, every operation recorded."""
    await c.db.command({"profile": 2})
    try:
        yield
    finally:
        await c.db.command({"profile": 0})


async def _profiled(c: Collections, collection: str = "postings") -> list[dict[str, Any]]:
    """What the profiler recorded of one collection (its own settings left out)."""
    return [p async for p in c.db["system.profile"].find({"ns": f"{c.db.name}.{collection}"})]


def _transfer(n: int) -> SettledTransfer:
    return SettledTransfer(f"clinic-{n % 7}", f"mt-{n}", (f"p-{n}",), (), Decimal("10.00"), Decimal("0.30"),
                           Decimal("9.70"), "USD", AT + timedelta(minutes=n), f"evt-{n}")


async def test_the_practices_with_waiting_postings_are_found_by_one_seek_each_not_a_walk_of_every_posting(
        collections: Collections) -> None:
    # 3,000 postings that loaded, of 40 practices; of them, 3 practices have postings waiting.
    docs = [_posting(f"clinic-{n % 40:02d}", n, parked=False) for n in range(3000)]
    docs += [_posting(p, 10_000 + i, parked=True) for p in ("clinic-07", "clinic-19", "clinic-33") for i in range(50)]
    await collections.postings.insert_many(docs)
    store = MongoPostingStore(collections)

    async with profiling(collections):
        found = await store.parked_practices()

    assert found == ["clinic-07", "clinic-19", "clinic-33"]
    profiled = await _profiled(collections)
    assert profiled, "the profiler recorded nothing of the call"
    assert all("COLLSCAN" not in p.get("planSummary", "") for p in profiled), [p.get("planSummary") for p in profiled]
    read = sum(p.get("docsExamined", 0) + p.get("keysExamined", 0) for p in profiled)
    # A seek per waiting practice and one more that finds none: a handful of keys and documents,
    # not the 3,150 postings (nor the 150 waiting).
    assert read <= 4 * 4, [(p.get("planSummary"), p.get("keysExamined"), p.get("docsExamined")) for p in profiled]


async def test_no_practice_is_found_when_nothing_waits(collections: Collections) -> None:
    await collections.postings.insert_many([_posting("clinic-a", n, parked=False) for n in range(100)])
    assert await MongoPostingStore(collections).parked_practices() == []


async def test_the_transfers_left_to_reconcile_are_read_from_their_index_not_from_every_transfer(
        collections: Collections) -> None:
    store = MongoTransferStore(collections)
    await store.ensure_indexes()
    for n in range(300):
        await store.settled(_transfer(n))
    # All but three reconciled, as nearly every transfer of a platform is a day after it settled.
    for n in range(300):
        if n not in (41, 150, 299):
            assert await store.mark_reconciled(_transfer(n), AT + timedelta(days=1))

    async with profiling(collections):
        left = await store.unreconciled(limit=500)

    assert [t.merchant_transfer_id for t in left] == ["mt-299", "mt-150", "mt-41"]  # the newest first
    profiled = [p for p in await _profiled(collections, "transfers") if p.get("op") == "query"]
    assert profiled, "the profiler recorded nothing of the call"
    assert all("COLLSCAN" not in p.get("planSummary", "") and not p.get("hasSortStage") for p in profiled), profiled
    assert sum(p.get("docsExamined", 0) for p in profiled) <= 3, profiled  # the three, not the 300


def _task(n: int) -> dict[str, Any]:
    at = AT + timedelta(seconds=n)
    alert_id = f"task:clinic-a:p-{n}"
    return {"_id": alert_id, "alert_id": alert_id, "kind": "task", "practice_id": "clinic-a", "payment_id": f"p-{n}",
            "state": "open", "open": True, "opened_at": at, **outbox_fields(at)}


async def test_a_delivery_round_claims_its_alerts_in_one_write_and_two_processes_never_claim_one_alike(
        collections: Collections) -> None:
    await MongoAlertStore(collections).ensure_indexes()
    await collections.alerts.insert_many([_task(n) for n in range(300)])
    now = AT + timedelta(hours=1)
    one, other = MongoAlertOutbox(collections), MongoAlertOutbox(collections)  # as two processes

    async with profiling(collections):
        first = await one.claim(now, 100, lease_seconds=60)
    writes = [p for p in await _profiled(collections, "alerts") if p.get("op") in ("update", "command")]
    assert len(writes) == 1, [(p.get("op"), str(p.get("command"))[:80]) for p in writes]  # not one per alert
    assert [i.alert.payment_id for i in first] == [f"p-{n}" for n in range(100)]  # the first due, in order
    assert all(i.version == 1 and not i.put for i in first)

    # The rest, by two claimers at once, round after round: each alert is claimed by one of them.
    claimed = [i.alert.alert_id for i in first]
    while rounds := await asyncio.gather(one.claim(now, 30, 60), other.claim(now, 30, 60)):
        if not any(rounds):
            break
        claimed += [i.alert.alert_id for found in rounds for i in found]
    assert sorted(claimed) == sorted(f"task:clinic-a:p-{n}" for n in range(300))  # all, each once

    # Claimed, they are not due again before the lease ends; delivered together, they are done.
    assert await one.claim(now + timedelta(seconds=30), 500, 60) == []
    await asyncio.gather(*(one.delivered(i, Delivery.NOT_SENT, False, None) for i in first))
    again = await one.claim(now + timedelta(seconds=61), 500, 60)
    assert len(again) == 200 and not {i.alert.alert_id for i in again} & {i.alert.alert_id for i in first}


async def test_an_alert_changed_while_its_version_was_sent_is_due_again(collections: Collections) -> None:
    await MongoAlertStore(collections).ensure_indexes()
    await collections.alerts.insert_many([_task(n) for n in range(3)])
    outbox = MongoAlertOutbox(collections)
    now = AT + timedelta(hours=1)
    items = await outbox.claim(now, 10, 60)
    # Resolved meanwhile: a new version for the system.
    await collections.alerts.update_one({"_id": items[1].alert.alert_id},
                                        {"$set": {"state": "resolved", "open": False}, "$inc": {"pms_version": 1}})
    await asyncio.gather(*(outbox.delivered(i, Delivery.SENT, True, None) for i in items))
    due = await outbox.claim(datetime.now(UTC) + timedelta(seconds=1), 10, 60)
    assert [(i.alert.payment_id, i.version, i.put) for i in due] == [("p-1", 2, True)]


async def test_a_batch_asking_at_once_for_a_patient_not_seen_yet_reads_the_registration_once(
        collections: Collections) -> None:
    writer, reader = MongoPracticeDirectory(collections), MongoPracticeDirectory(collections)  # two processes
    await writer.register_patient("clinic-a", "EHR-7", AT)

    async with profiling(collections):
        answers = await asyncio.gather(*(reader.patient_registered("clinic-a", "EHR-7") for _ in range(200)),
                                       *(reader.patient_registered("clinic-a", "EHR-NOBODY") for _ in range(50)))
        again = await reader.patient_registered("clinic-a", "EHR-7")  # known now: no read at all
        known = await writer.patient_registered("clinic-a", "EHR-7")  # registered through this one

    assert answers == [True] * 200 + [False] * 50 and again and known
    reads = [p for p in await _profiled(collections, "ehr_patients") if p.get("op") in ("query", "command")]
    assert len(reads) == 2, [str(p.get("command"))[:100] for p in reads]  # one per patient, not 250
