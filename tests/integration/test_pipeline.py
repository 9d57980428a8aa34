"""The posting pipeline end to end on the real RabbitMQ and MongoDB."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest

from paypost.bootstrap import Paypost
from paypost.domain.load_errors import LoadErrorCode, load_error
from paypost.domain.model import LoadStatus
from paypost.domain.posting import Integration, KeptMessage, LedgerEntryRequest, LedgerReceipt, Posting, PostingKey
from paypost.handlers.posting import Disposition, Outcome
from paypost.infra.mongo.database import Collections, connect
from paypost.infra.rabbit.watch import watch_events
from paypost.infra.runtime.settings import Settings
from paypost.schemas.topics import DEAD_LETTER_QUEUE, INTAKE_QUEUE
from tests.support.api_calls import get_posting, ledger, wait_status
from tests.support.ledgers import builtin_entries
from tests.support.payloads import payment_body
from tests.support.upstream import Upstream, queue_depth
from tests.support.waits import wait_for

pytestmark = pytest.mark.integration


async def test_payment_loads_into_the_patients_ledger(api: httpx.AsyncClient, upstream: Upstream,
                                                      practice: str) -> None:
    body = await upstream.payment(amount="125.00", method="hsa", merchant_transfer_id="MT-1")

    posting = await wait_status(api, practice, body["payment_id"], "LOADED")

    assert posting["load_error"] is None
    assert posting["kind"] == "payment"
    assert posting["ehr_patient_id"] == "EHR-1"
    assert posting["amount"] == "125.00"
    assert posting["method"] == "hsa"
    assert posting["merchant_transfer_id"] == "MT-1"
    assert posting["attempts_count"] == 1
    assert posting["attempts"][0]["outcome"] == "loaded"
    assert [a["action"] for a in posting["audit"]] == ["received", "loaded"]
    entries = await ledger(api, practice, "EHR-1")
    assert [(e["payment_id"], e["refund_id"], e["amount"]) for e in entries] == [(body["payment_id"], None, "125.00")]


async def test_the_built_in_ledgers_entry_is_kept_in_its_postings_row_written_with_its_outcome(
        paypost: Paypost, api: httpx.AsyncClient, upstream: Upstream, practice: str) -> None:
    """One document for a first load: the row, LOADED, holding its entry; nothing in ``ledger_entries``."""
    body = await upstream.payment(amount="42.50")
    await wait_status(api, practice, body["payment_id"], "LOADED")

    row = await paypost.collections.postings.find_one({"_id": f"{practice}/{body['payment_id']}"})
    assert row is not None
    entry = row["ledger_entry"]
    assert entry["entry_id"] == row["ledger_entry_id"]
    assert (entry["ehr_patient_id"], entry["payment_id"], entry["refund_id"], entry["kind"], entry["amount"],
            entry["currency"]) == ("EHR-1", body["payment_id"], None, "payment", Decimal("42.50"), "USD")
    assert await paypost.collections.ledger_entries.count_documents({"practice_id": practice}) == 0
    assert [e["entry_id"] for e in await ledger(api, practice, "EHR-1")] == [entry["entry_id"]]


async def test_outcome_is_recorded(api: httpx.AsyncClient, upstream: Upstream, practice: str) -> None:
    # How fast is the bench's to say (`paypost bench`); a test's clock on a loaded machine is not.
    body = await upstream.payment()
    await wait_status(api, practice, body["payment_id"], "LOADED", timeout=10.0)


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"ehr_patient_id": None}, "PATIENT_NOT_MAPPED"),
        ({"ehr_patient_id": "EHR-404"}, "PATIENT_NOT_FOUND"),
        ({"practice_id": "clinic-none"}, "INTEGRATION_NOT_CONFIGURED"),
        ({"currency": "EUR"}, "LEDGER_REJECTED"),
    ],
)
async def test_failures_a_person_must_fix_are_failed_and_dead_lettered(
    api: httpx.AsyncClient, upstream: Upstream, practice: str, fields: dict[str, object], code: str
) -> None:
    body = await upstream.payment(**fields)

    posting = await wait_status(api, body["practice_id"], body["payment_id"], "FAILED")

    words = load_error(LoadErrorCode(code))  # what the office reads for that code
    assert posting["load_error"]["code"] == code
    assert posting["load_error"]["message"].startswith(words.message)
    assert posting["load_error"]["fix"] == words.fix
    assert posting["load_error_history"][0]["code"] == code
    # The message went through paypost.postings.dead and is kept with its posting.
    posting = await wait_for(lambda: _with_action(api, body["practice_id"], body["payment_id"], "dead_lettered"))
    assert [a["action"] for a in posting["audit"]] == ["received", "failed", "dead_lettered"]


async def _with_action(api: httpx.AsyncClient, practice: str, payment: str, action: str) -> dict[str, object] | None:
    p = await get_posting(api, practice, payment)
    return p if p and any(a["action"] == action for a in p["audit"]) else None


async def test_disabled_integration_is_not_configured(api: httpx.AsyncClient, upstream: Upstream,
                                                      practice: str) -> None:
    r = await api.put("/api/v1/practices/clinic-a", json={"name": "A", "ledger": {"kind": "builtin"},
                                                          "enabled": False})
    assert r.status_code == 200
    body = await upstream.payment()
    posting = await wait_status(api, practice, body["payment_id"], "FAILED")
    assert posting["load_error"]["code"] == "INTEGRATION_NOT_CONFIGURED"


async def test_refund_posts_negative_entry_against_its_payment(api: httpx.AsyncClient, upstream: Upstream,
                                                               practice: str) -> None:
    payment = await upstream.payment(amount="100.00", patient_account_id="acct-2", ehr_patient_id="EHR-2")
    await wait_status(api, practice, payment["payment_id"], "LOADED")

    refund = await upstream.refund(payment_id=payment["payment_id"], amount="30.50")

    row = await wait_status(api, practice, refund["refund_id"], "LOADED")
    assert row["kind"] == "refund"
    assert row["amount"] == "30.50"
    assert row["refunded_payment_id"] == payment["payment_id"]
    assert row["patient_account_id"] == "acct-2"
    assert row["method"] is None
    entries = await ledger(api, practice, "EHR-2")
    assert {(e["payment_id"], e["refund_id"], e["amount"]) for e in entries} == {
        (payment["payment_id"], None, "100.00"),
        (payment["payment_id"], refund["refund_id"], "-30.50"),
    }


async def test_refund_of_a_payment_not_loaded_fails(api: httpx.AsyncClient, upstream: Upstream,
                                                    practice: str) -> None:
    refund = await upstream.refund(payment_id="never-seen")
    row = await wait_status(api, practice, refund["refund_id"], "FAILED")
    assert row["load_error"]["code"] == "ORIGINAL_PAYMENT_NOT_LOADED"


async def test_duplicates_with_the_same_or_a_new_event_id_post_once(
    api: httpx.AsyncClient, upstream: Upstream, practice: str
) -> None:
    body = payment_body(payment_id="pay-dup")
    await upstream.send("payment.posted", body)
    await upstream.send("payment.posted", body)  # same event_id
    await upstream.send("payment.posted", {**body, "event_id": str(uuid.uuid4())})  # new event_id
    await wait_status(api, practice, "pay-dup", "LOADED")
    await upstream.send("payment.posted", {**body, "event_id": str(uuid.uuid4()), "amount": "1.00"})

    marker = await upstream.payment(payment_id="pay-after")  # the queue is drained once this loads
    await wait_status(api, practice, marker["payment_id"], "LOADED")

    entries = [e for e in await ledger(api, practice, "EHR-1") if e["payment_id"] == "pay-dup"]
    assert len(entries) == 1
    assert entries[0]["amount"] == "125.00"  # a LOADED payment is never changed by a republish
    posting = await get_posting(api, practice, "pay-dup")
    assert posting is not None and posting["amount"] == "125.00"


async def test_republish_while_failed_replays_the_corrected_body(api: httpx.AsyncClient, upstream: Upstream,
                                                                  practice: str) -> None:
    body = payment_body(payment_id="pay-fix", ehr_patient_id=None)
    await upstream.send("payment.posted", dict(body))
    await wait_status(api, practice, "pay-fix", "FAILED")

    await upstream.send("payment.posted", {**body, "event_id": str(uuid.uuid4()), "ehr_patient_id": "EHR-2"})

    posting = await wait_status(api, practice, "pay-fix", "LOADED")
    assert posting["ehr_patient_id"] == "EHR-2"
    assert posting["attempts_count"] == 2
    assert len(await ledger(api, practice, "EHR-2")) == 1


async def test_held_mapping_wins_over_the_events_id(api: httpx.AsyncClient, upstream: Upstream,
                                                   practice: str) -> None:
    r = await api.put("/api/v1/practices/clinic-a/patient-accounts/acct-9/mapping", json={"ehr_patient_id": "EHR-2"})
    assert r.status_code == 200, r.text

    body = await upstream.payment(patient_account_id="acct-9", ehr_patient_id="EHR-1")

    posting = await wait_status(api, practice, body["payment_id"], "LOADED")
    assert posting["ehr_patient_id"] == "EHR-2"


async def test_mapping_from_an_event(api: httpx.AsyncClient, upstream: Upstream, practice: str) -> None:
    await upstream.send("patient.mapping.updated", {"event_id": "m-1", "practice_id": "clinic-a",
                                                    "patient_account_id": "acct-5", "ehr_patient_id": "EHR-2"})

    async def mapped() -> bool:
        body = await upstream.payment(patient_account_id="acct-5", ehr_patient_id=None)
        posting = await wait_status(api, practice, body["payment_id"], "LOADED", "FAILED")
        return bool(posting["load_status"] == "LOADED" and posting["ehr_patient_id"] == "EHR-2")

    await wait_for(mapped, timeout=10)


@pytest.mark.parametrize(
    ("body", "headers", "code", "detail"),
    [
        (b"this is not json", None, "INVALID_MESSAGE", "not valid UTF-8 JSON"),
        (b"\xff\xfe\x00garbage", None, "INVALID_MESSAGE", "not valid UTF-8 JSON"),
        (b"[1, 2, 3]", None, "INVALID_MESSAGE", "not a JSON object"),
        (orjson.dumps({**payment_body(), "amount": 12.5}), None, "INVALID_MESSAGE", "amount"),
        (orjson.dumps({**payment_body(), "method": "bitcoin"}), None, "INVALID_MESSAGE", "method"),
        (orjson.dumps({**payment_body(), "practice_id": "bad id!"}), None, "INVALID_MESSAGE", "practice_id"),
        (orjson.dumps(payment_body()), {"schema_version": 2}, "UNSUPPORTED_SCHEMA_VERSION", "schema_version"),
        (b'{"pad": "' + b"x" * 300_000 + b'"}', None, "INVALID_MESSAGE", "over the"),
    ],
)
async def test_poison_messages_become_failed_unreadable_rows(
    api: httpx.AsyncClient, upstream: Upstream, practice: str, body: bytes, headers: dict[str, int] | None,
    code: str, detail: str,
) -> None:
    message_id = f"poison-{uuid.uuid4().hex[:8]}"
    await upstream.raw("payment.posted", body, message_id=message_id, headers=headers)

    async def row() -> dict[str, object] | None:
        for practice_id in ("_unknown", "clinic-a"):
            found = await get_posting(api, practice_id, message_id)
            if found:
                return found
        return None

    posting = await wait_for(row)
    assert posting["kind"] == "unreadable"
    assert posting["load_status"] == "FAILED"
    assert posting["load_error"]["code"] == code
    assert detail in posting["load_error"]["message"]
    # Nothing is echoed from the body into the error (it may carry patient detail).
    assert "bitcoin" not in posting["load_error"]["message"]
    await wait_for(lambda: _with_action(api, str(posting["practice_id"]), message_id, "dead_lettered"))


async def test_unreadable_row_never_changes_the_payment_it_names(api: httpx.AsyncClient, upstream: Upstream,
                                                                  practice: str) -> None:
    good = await upstream.payment(payment_id="pay-named")
    await wait_status(api, practice, "pay-named", "LOADED")
    bad = {**good, "event_id": str(uuid.uuid4()), "amount": 99}
    await upstream.raw("payment.posted", orjson.dumps(bad), message_id="pay-named")

    unreadable = await wait_for(lambda: get_posting(api, practice, "pay-named~unreadable"))
    assert unreadable["kind"] == "unreadable"
    posting = await get_posting(api, practice, "pay-named")
    assert posting is not None and posting["load_status"] == "LOADED" and posting["amount"] == "125.00"


async def test_unknown_routing_key_is_kept_as_an_unreadable_row(api: httpx.AsyncClient, upstream: Upstream,
                                                                  practice: str) -> None:
    await upstream.send("payment.teleported", {"event_id": "ev-void", "practice_id": "clinic-a", "payment_id": "p"})

    posting = await wait_for(lambda: get_posting(api, "clinic-a", "ev-void"))
    assert posting["kind"] == "unreadable"
    assert "payment.teleported" in posting["load_error"]["message"]


async def test_payments_published_while_paypost_is_stopped_wait_for_it(
    api: httpx.AsyncClient, paypost: Paypost, upstream: Upstream, practice: str
) -> None:
    await paypost.stop()
    bodies = [await upstream.payment() for _ in range(20)]

    restarted = Paypost(paypost.settings)
    await restarted.start()
    try:
        transport = httpx.ASGITransport(app=restarted.http_app(manage_lifecycle=False))
        async with httpx.AsyncClient(transport=transport, base_url="http://paypost", headers=api.headers) as again:
            for body in bodies:
                await wait_status(again, practice, body["payment_id"], "LOADED")
            assert len(await ledger(again, practice, "EHR-1")) == 20
    finally:
        await restarted.stop()


async def test_consumer_restarted_mid_stream_loses_nothing_and_posts_nothing_twice(
    amqp_url: str, paypost: Paypost, upstream: Upstream, practice: str
) -> None:
    total = 600  # every tenth has no mapping: PATIENT_NOT_MAPPED

    async def publish() -> None:
        for i in range(total):
            await upstream.payment(payment_id=f"stream-{i:04d}", ehr_patient_id="EHR-1" if i % 10 else None)

    publishing = asyncio.create_task(publish())
    await wait_for(_final_reaches(paypost.collections, 50), timeout=20)
    await paypost.stop()  # while payments are still arriving and being loaded
    async with _database(paypost.settings) as collections:
        done_before = await _count_final(collections)
    await publishing
    waiting = await _ready_messages(amqp_url, INTAKE_QUEUE)

    # Mid-stream: some payments were loaded before the stop, and the rest were not.
    assert 50 <= done_before < total, done_before
    # Each one not loaded waits in the queue (in flight ones went back), and none that was is there.
    assert waiting == total - done_before, (waiting, done_before)

    restarted = Paypost(paypost.settings)
    await restarted.start()
    try:
        await wait_for(_final_reaches(restarted.collections, total), timeout=60)
        entries = len(await builtin_entries(restarted.collections))
        failed = await restarted.collections.postings.count_documents({"load_status": "FAILED"})
    finally:
        await restarted.stop()
    assert entries == total - total // 10  # every mapped payment posted exactly once
    assert failed == total // 10  # PATIENT_NOT_MAPPED, none lost


async def _count_final(collections: Collections) -> int:
    """How many of the stream's payments are LOADED or FAILED."""
    return await collections.postings.count_documents(
        {"payment_id": {"$regex": "^stream-"}, "load_status": {"$in": ["LOADED", "FAILED"]}})


def _final_reaches(collections: Collections, count: int) -> Callable[[], Awaitable[bool]]:
    async def reached() -> bool:
        return await _count_final(collections) >= count

    return reached


@contextlib.asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[Collections]:
    """paypost's collections on a client of the test's own (a stopped paypost closed its client)."""
    client = connect(settings.mongodb_uri)
    try:
        yield Collections(client[settings.mongodb_db])
    finally:
        await client.close()


async def _ready_messages(amqp_url: str, queue: str) -> int:
    return (await queue_depth(amqp_url, queue))[0]


async def test_dead_letter_queue_holds_messages_while_paypost_is_down(
    amqp_url: str, paypost: Paypost, upstream: Upstream, api: httpx.AsyncClient, practice: str
) -> None:
    await paypost.stop()
    # Something dead-lettered while paypost's dead-letter consumer is down waits in the queue.
    await upstream.raw("", b"not json", message_id="dl-1", exchange="paypost.dead-letter")
    assert await _ready_messages(amqp_url, DEAD_LETTER_QUEUE) == 1

    restarted = Paypost(paypost.settings)
    await restarted.start()
    try:
        from paypost.domain.posting import PostingKey
        from paypost.infra.mongo.postings import doc_id

        doc = await wait_for(lambda: restarted.collections.postings.find_one(
            {"_id": doc_id(PostingKey("_unknown", "dl-1"))}))
        assert doc["load_status"] == "FAILED"
        assert doc["load_error"]["code"] == "INVALID_MESSAGE"
        assert doc["message"]["text"] == "not json"
    finally:
        await restarted.stop()


async def test_concurrent_duplicates_on_two_consumers_post_once(
    paypost: Paypost, upstream: Upstream, api: httpx.AsyncClient, practice: str
) -> None:
    second = Paypost(paypost.settings)
    await second.start()
    try:
        # The premise: both paypost processes consume the intake queue, each on its lanes.
        _, consumers = (await paypost.refresh_queue_metrics())[INTAKE_QUEUE]
        assert consumers == 2 * paypost.settings.intake_lanes
        bodies = [payment_body(payment_id=f"race-{i}") for i in range(50)]
        for body in bodies:
            for _ in range(3):
                await upstream.send("payment.posted", {**body, "event_id": str(uuid.uuid4())})
        for body in bodies:
            await wait_status(api, practice, body["payment_id"], "LOADED")
        await asyncio.sleep(0.5)
    finally:
        await second.stop()
    entries = await ledger(api, practice, "EHR-1")
    assert len(entries) == 50
    assert len({e["payment_id"] for e in entries}) == 50


async def test_every_paypost_queue_has_its_consumer(paypost: Paypost) -> None:
    depths = await paypost.refresh_queue_metrics()
    assert set(depths) == {"paypost.postings", "paypost.replays", "paypost.mappings", "paypost.transfers",
                           "paypost.commands.postings", "paypost.payments.unrouted", "paypost.postings.dead",
                           "paypost.deposits"}  # contract section 11
    assert all(consumers >= 1 for _, consumers in depths.values()), depths


async def test_only_failures_and_refunds_enter_their_partial_indexes(
    api: httpx.AsyncClient, upstream: Upstream, practice: str, paypost: Paypost
) -> None:
    loaded = await upstream.payment()
    unmapped = await upstream.payment(patient_account_id="acct-none", ehr_patient_id=None)
    refund = await upstream.refund(payment_id="never-seen")
    await wait_status(api, practice, loaded["payment_id"], "LOADED")
    await wait_status(api, practice, unmapped["payment_id"], "FAILED")
    await wait_status(api, practice, refund["refund_id"], "FAILED")

    postings = paypost.collections.postings
    keys = (await paypost.collections.db.command("validate", postings.name))["keysPerIndex"]
    assert keys["_id_"] == 3
    assert keys["by_error_code"] == 2  # the two failures, not the loaded payment
    assert keys["refunds_by_payment"] == 1  # the refund

    # The queries that filter on those fields still find their index.
    async def index_used(query: Mapping[str, object]) -> str:
        plan = (await postings.find(query).explain())["queryPlanner"]["winningPlan"]
        return str(plan)

    assert "by_error_code" in await index_used({"practice_id": practice, "load_error.code": "PATIENT_NOT_MAPPED"})
    refunds_of = {"practice_id": practice, "refunded_payment_id": {"$in": ["never-seen"]}}
    assert "refunds_by_payment" in await index_used(refunds_of)
    found = await paypost.posting_commands.failed_refunds_by_payment(practice, ["never-seen"])
    assert [k.payment_id for k in found["never-seen"]] == [refund["refund_id"]]


@pytest.mark.api_only
async def test_indexes_of_earlier_versions_are_replaced(paypost: Paypost) -> None:
    from paypost.infra.mongo.database import ensure_indexes

    postings = paypost.collections.postings
    await postings.drop_index("by_error_code")
    await postings.drop_index("refunds_by_payment")
    await postings.create_index([("practice_id", 1), ("load_error.code", 1), ("received_at", -1), ("_id", -1)])
    await postings.create_index([("practice_id", 1), ("refunded_payment_id", 1)], sparse=True)

    await ensure_indexes(paypost.collections)

    names = set((await postings.index_information()).keys())
    assert {"by_error_code", "refunds_by_payment"} <= names
    assert "practice_id_1_load_error.code_1_received_at_-1__id_-1" not in names
    assert "practice_id_1_refunded_payment_id_1" not in names


async def _oplog(paypost: Paypost, doc_id: str) -> list[dict[str, object]]:
    """The replica set's log of every write to one posting's row, in order."""
    ns = f"{paypost.settings.mongodb_db}.postings"
    cursor = paypost.mongo.local["oplog.rs"].find({"ns": ns, "$or": [{"o._id": doc_id}, {"o2._id": doc_id}]})
    return [entry async for entry in cursor.sort("$natural", 1)]


async def test_a_built_in_ledgers_posting_is_written_once_with_its_outcome(
    paypost: Paypost, upstream: Upstream, api: httpx.AsyncClient, practice: str
) -> None:
    loaded = await upstream.payment()
    failed = await upstream.payment(ehr_patient_id=None)  # no mapping, no patient id: PATIENT_NOT_MAPPED
    await wait_status(api, practice, loaded["payment_id"], "LOADED")
    row = await wait_status(api, practice, failed["payment_id"], "FAILED")
    assert [a["action"] for a in row["audit"]][:2] == ["received", "failed"]  # then dead_lettered, soon after
    assert row["attempts_count"] == 1
    stored = await paypost.collections.postings.find_one({"_id": f"{practice}/{failed['payment_id']}"})
    assert stored is not None and stored["group_id"]  # in its failure group, as a failed write puts it

    for body, status in ((loaded, "LOADED"), (failed, "FAILED")):
        writes = await _oplog(paypost, f"{practice}/{body['payment_id']}")
        assert writes[0]["op"] == "i" and writes[0]["o"]["load_status"] == status  # type: ignore[index]  # an insert's document
        # What follows the insert (the audit sealer's marks) never changes its Load Status: no PENDING row came first.
        assert all("load_status" not in str(w.get("o")) for w in writes[1:]), writes[1:]


async def test_an_entry_made_before_a_crash_is_found_and_the_row_written_once(
    paypost: Paypost, api: httpx.AsyncClient, practice: str
) -> None:
    """An earlier version (its entries in ``ledger_entries``) stopped between the ledger entry and the
    posting's row: the delivery comes again, finds the entry by its key, and writes the row LOADED
    with that entry; nothing posts twice."""
    body = payment_body(payment_id=f"pay-{uuid.uuid4().hex[:8]}")
    await paypost.collections.ledger_entries.insert_one({
        "_id": f"{practice}/{body['payment_id']}", "entry_id": "entry-before-the-crash", "practice_id": practice,
        "ehr_patient_id": "EHR-1", "payment_id": body["payment_id"], "refund_id": None, "amount": Decimal("125.00"),
        "currency": "USD", "posted_at": datetime.now(UTC)})

    outcome = await paypost.posting_service.handle(KeptMessage(orjson.dumps(body), "payment.posted", None, {}))

    assert outcome.load_status is LoadStatus.LOADED
    row = await get_posting(api, practice, body["payment_id"])
    assert row is not None and row["load_status"] == "LOADED"
    assert [e["entry_id"] for e in await ledger(api, practice, "EHR-1")
            if e["payment_id"] == body["payment_id"]] == ["entry-before-the-crash"]


async def test_two_deliveries_of_a_new_payment_at_once_make_one_row_one_entry_one_event(
    paypost: Paypost, api: httpx.AsyncClient, practice: str, amqp_url: str
) -> None:
    """Handled in one batch, both find no row, both post (the ledger's key makes one entry) and both
    write the row: one insert wins; the other delivery finds it LOADED, a duplicate."""
    body = payment_body(payment_id=f"pay-{uuid.uuid4().hex[:8]}")
    message = KeptMessage(orjson.dumps(body), "payment.posted", None, {})
    async with watch_events(amqp_url, [f"posting.loaded.{practice}"]) as events:
        outcomes = await paypost.posting_service.handle_batch([message, message])
        first = await asyncio.wait_for(events.get(), 5)
        with contextlib.suppress(TimeoutError):
            second = await asyncio.wait_for(events.get(), 1)
            pytest.fail(f"a second posting.loaded: {second.body}")
    assert first.body["payment_id"] == body["payment_id"]
    assert all(isinstance(o, Outcome) and o.disposition is Disposition.ACK for o in outcomes), outcomes
    assert [o.load_status for o in outcomes if isinstance(o, Outcome)] == [LoadStatus.LOADED, LoadStatus.LOADED]
    row = await get_posting(api, practice, body["payment_id"])
    assert row is not None and row["attempts_count"] == 1
    assert [a["action"] for a in row["audit"]] == ["received", "loaded"]
    assert len([e for e in await ledger(api, practice, "EHR-1") if e["payment_id"] == body["payment_id"]]) == 1


async def test_a_new_payment_is_inserted_with_its_outcome_before_its_row_is_ever_read(
    paypost: Paypost, api: httpx.AsyncClient, practice: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Insert first: a first delivery waits for its mapping's read alone; its row is read only once
    an insert finds it taken, which makes the next delivery of the same payment a duplicate."""
    read: list[str] = []
    get = paypost.postings.get

    async def counted_get(key: PostingKey) -> Posting | None:
        read.append(key.payment_id)
        return await get(key)

    monkeypatch.setattr(paypost.postings, "get", counted_get)
    body = payment_body(payment_id=f"pay-{uuid.uuid4().hex[:8]}")
    message = KeptMessage(orjson.dumps(body), "payment.posted", None, {})

    first = await paypost.posting_service.handle(message)
    assert (first.load_status, read) == (LoadStatus.LOADED, [])
    again = await paypost.posting_service.handle(message)

    assert (again.disposition, again.load_status, read) == (Disposition.ACK, LoadStatus.LOADED, [body["payment_id"]])
    row = await get_posting(api, practice, body["payment_id"])
    assert row is not None and [a["action"] for a in row["audit"]] == ["received", "loaded"]
    assert len([e for e in await ledger(api, practice, "EHR-1") if e["payment_id"] == body["payment_id"]]) == 1


async def test_a_first_delivery_loads_into_the_ledger_of_the_integration_it_read(
    paypost: Paypost, api: httpx.AsyncClient, practice: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A delivery reads its practice's integration once (from a cache that lapses): the practice
    switching to a system of its own just after that read changes nothing for this delivery, which
    loads into paypost's ledger as it chose to; the next delivery of the payment, reading the new
    integration, finds a known LOADED posting and makes no call to the new system."""
    other = OtherLedgers()
    service = paypost.posting_service
    read = service._practices.integration
    reads = 0

    async def switching(practice_id: str) -> Integration | None:
        nonlocal reads
        reads += 1
        integration = await read(practice_id)
        if reads == 1 or integration is None:
            return integration
        return replace(integration, kind="other")  # the practice's own system from the second read on

    def ledgers(integration: Integration) -> Any:
        return other if integration.kind == "other" else real_ledgers(integration)

    real_ledgers = service._ledgers.for_integration
    monkeypatch.setattr(service._practices, "integration", switching)
    monkeypatch.setattr(service._ledgers, "for_integration", ledgers)
    body = payment_body(payment_id=f"pay-{uuid.uuid4().hex[:8]}")
    message = KeptMessage(orjson.dumps(body), "payment.posted", None, {})

    first = await service.handle(message)
    assert reads == 1  # one read of the integration for the first delivery
    again = await service.handle(message)

    assert (first.load_status, again.disposition, again.load_status) == (
        LoadStatus.LOADED, Disposition.ACK, LoadStatus.LOADED)
    assert other.entries == []  # no call to the new system for a payment loaded already
    row = await get_posting(api, practice, body["payment_id"])
    assert row is not None and [a["action"] for a in row["audit"]] == ["received", "loaded"]
    assert len([e for e in await ledger(api, practice, "EHR-1") if e["payment_id"] == body["payment_id"]]) == 1


LATER = timedelta(days=5 * 365)


class TestAClockHandedIn:
    """The composition root takes its clock as a parameter (``Paypost(clock=...)``): the handlers
    read the one handed in, nothing patched after the build."""

    @pytest.fixture
    def paypost_adapters(self) -> dict[str, Any]:
        return {"clock": lambda: datetime.now(UTC) + LATER}

    async def test_a_load_and_its_event_are_timed_by_it(
        self, settings: Settings, api: httpx.AsyncClient, upstream: Upstream, practice: str,
    ) -> None:
        async with watch_events(settings.amqp_url, [f"posting.loaded.{practice}"]) as events:
            body = await upstream.payment()
            posting = await wait_status(api, practice, body["payment_id"], "LOADED")
            event = await asyncio.wait_for(events.get(), 10)
        later = datetime.now(UTC) + LATER - timedelta(minutes=5)
        loaded = next(a for a in posting["audit"] if a["action"] == "loaded")
        assert datetime.fromisoformat(loaded["at"]) > later
        assert event.body["payment_id"] == body["payment_id"]
        assert datetime.fromisoformat(event.body["occurred_at"]) > later


class OtherLedgers:
    """Ledgers handed to the composition root: every practice's entries go to one list here."""

    def __init__(self) -> None:
        self.entries: list[LedgerEntryRequest] = []

    def for_integration(self, integration: Integration) -> OtherLedgers:
        return self

    async def post(self, request: LedgerEntryRequest) -> LedgerReceipt:
        self.entries.append(request)
        return LedgerReceipt(entry_id=f"other-{len(self.entries)}")


class TestLedgersHandedIn:
    """The composition root takes the posting service's ledgers as a parameter (``Paypost(ledgers=...)``)."""

    @pytest.fixture
    def other(self) -> OtherLedgers:
        return OtherLedgers()

    @pytest.fixture
    def paypost_adapters(self, other: OtherLedgers) -> dict[str, Any]:
        return {"ledgers": other}

    async def test_a_payment_loads_into_the_ledger_handed_in(
        self, other: OtherLedgers, api: httpx.AsyncClient, upstream: Upstream, practice: str,
    ) -> None:
        body = await upstream.payment(amount="42.00")
        posting = await wait_status(api, practice, body["payment_id"], "LOADED")
        assert [(e.payment_id, e.amount, e.ehr_patient_id) for e in other.entries] == [
            (body["payment_id"], Decimal("42.00"), "EHR-1")]
        loaded = next(a for a in posting["audit"] if a["action"] == "loaded")
        assert loaded["detail"] == "ledger entry other-1"
        assert await ledger(api, practice, "EHR-1") == []  # the built-in ledger was not the one used


async def test_a_batch_mixing_every_kind_of_delivery_gives_each_the_outcome_it_has_alone(
    paypost: Paypost, api: httpx.AsyncClient, practice: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With no span per message (tracing off), a batch's first payments into the built-in ledger are
    decided together and written by one insert; what shares their batch (a refund, an unreadable body,
    a second delivery of one of them) is handled alone. Each delivery ends as it would alone, in its place."""
    from tests.support.payloads import refund_body

    earlier = payment_body()
    assert (await paypost.posting_service.handle(_kept(earlier))).load_status is LoadStatus.LOADED
    one_by_one: list[str] = []
    insert_finished = paypost.postings.insert_finished

    async def counted(posting: Posting, *args: Any, **kwargs: Any) -> bool:
        one_by_one.append(posting.key.payment_id)
        return await insert_finished(posting, *args, **kwargs)

    monkeypatch.setattr(paypost.postings, "insert_finished", counted)
    new, unmapped = payment_body(), payment_body(patient_account_id="acct-nobody-maps", ehr_patient_id=None)
    unknown = payment_body(patient_account_id="acct-nobody-maps", ehr_patient_id="EHR-NOT-REGISTERED")
    refund = refund_body(payment_id=earlier["payment_id"])
    batch = [_kept(new), KeptMessage(b"{not json", "payment.posted", None, {}), _kept(unmapped),
             _kept(refund, "payment.refunded"), _kept(new), _kept(unknown)]

    outcomes = await paypost.posting_service.handle_batch(batch)

    assert [(o.disposition, o.load_status, o.error_code) if isinstance(o, Outcome) else o for o in outcomes] == [
        (Disposition.ACK, LoadStatus.LOADED, None),
        (Disposition.DEAD_LETTER, LoadStatus.FAILED, LoadErrorCode.INVALID_MESSAGE),
        (Disposition.DEAD_LETTER, LoadStatus.FAILED, LoadErrorCode.PATIENT_NOT_MAPPED),
        (Disposition.ACK, LoadStatus.LOADED, None),
        (Disposition.ACK, LoadStatus.LOADED, None),  # the second delivery of ``new``: a duplicate
        (Disposition.DEAD_LETTER, LoadStatus.FAILED, LoadErrorCode.PATIENT_NOT_FOUND),
    ]
    # The payments' rows went in the batch's one insert; the refund, handled alone, wrote its own.
    assert one_by_one == [refund["refund_id"]]
    row = await get_posting(api, practice, new["payment_id"])
    assert row is not None and row["attempts_count"] == 1 and [a["action"] for a in row["audit"]] == [
        "received", "loaded"]
    assert [e["payment_id"] for e in await ledger(api, practice, "EHR-1")].count(new["payment_id"]) == 1
    failed = await get_posting(api, practice, unknown["payment_id"])
    assert failed is not None and failed["load_error"]["code"] == "PATIENT_NOT_FOUND"
    assert failed["attempts"][0]["outcome"] == "failed"


def _kept(body: Mapping[str, Any], routing_key: str = "payment.posted") -> KeptMessage:
    return KeptMessage(orjson.dumps(body), routing_key, None, {})


async def test_a_batch_whose_shared_mapping_read_fails_gives_each_payment_that_error_to_be_handled_again(
    paypost: Paypost, api: httpx.AsyncClient, practice: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The batch's one read of its mappings stands for each payment's own: when the database does not
    answer it, each of those payments gets the error (a transient one: handled again, alone), the
    batch's other deliveries are handled, and nothing is written for the payments."""
    from pymongo.errors import AutoReconnect

    async def unanswered(accounts: Any) -> dict[tuple[str, str], str]:
        raise AutoReconnect("the database did not answer")

    monkeypatch.setattr(paypost.mapping_store, "get_many", unanswered)
    first, second = payment_body(), payment_body()
    outcomes = await paypost.posting_service.handle_batch(
        [_kept(first), KeptMessage(b"[]", "payment.posted", None, {}), _kept(second)])

    assert isinstance(outcomes[0], AutoReconnect) and isinstance(outcomes[2], AutoReconnect)
    assert isinstance(outcomes[1], Outcome) and outcomes[1].error_code is LoadErrorCode.INVALID_MESSAGE
    assert await get_posting(api, practice, first["payment_id"]) is None
    monkeypatch.undo()
    again = await paypost.posting_service.handle_batch([_kept(first), _kept(second)])
    assert [o.load_status for o in again if isinstance(o, Outcome)] == [LoadStatus.LOADED, LoadStatus.LOADED]


async def test_a_batch_the_database_applied_without_confirming_is_handled_again_and_announced_once(
    paypost: Paypost, api: httpx.AsyncClient, practice: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A write concern the database could not meet (a majority did not have the rows in time, or the
    primary stepped down) leaves rows that may yet be rolled back: no payment is acknowledged or
    announced on them. Each gets a transient error; handled again, the kept row is found and its
    outcome announced then, once; a third delivery is a duplicate."""
    from pymongo import WriteConcern

    from paypost.domain.errors import UnconfirmedWrite
    from paypost.domain.events import PostingFailed, PostingLoaded

    announced: list[tuple[str, str]] = []

    async def heard(event: PostingLoaded | PostingFailed) -> None:
        announced.append((event.posting.key.payment_id, event.posting.load_status.value))

    paypost.bus.subscribe(PostingLoaded, heard)
    paypost.bus.subscribe(PostingFailed, heard)
    store: Any = paypost.postings
    # More members than any test replica set has: the server applies the insert, then says so.
    monkeypatch.setattr(store, "_c", store._c.with_options(write_concern=WriteConcern(w=5, wtimeout=500)))
    loads, fails = payment_body(), payment_body(patient_account_id="acct-nobody-maps", ehr_patient_id=None)

    first = await paypost.posting_service.handle_batch([_kept(loads), _kept(fails)])

    assert [type(o) for o in first] == [UnconfirmedWrite, UnconfirmedWrite]
    assert announced == []
    assert (await get_posting(api, practice, loads["payment_id"]) or {}).get("load_status") == "LOADED"
    monkeypatch.undo()
    again = await paypost.posting_service.handle_batch([_kept(loads), _kept(fails)])
    assert [(o.disposition, o.load_status) for o in again if isinstance(o, Outcome)] == [
        (Disposition.ACK, LoadStatus.LOADED), (Disposition.DEAD_LETTER, LoadStatus.FAILED)]
    assert announced == [(loads["payment_id"], "LOADED"), (fails["payment_id"], "FAILED")]
    third = await paypost.posting_service.handle_batch([_kept(loads)])
    assert [(o.disposition, o.load_status) for o in third if isinstance(o, Outcome)] == [
        (Disposition.ACK, LoadStatus.LOADED)]
    assert len(announced) == 2
    assert [e["payment_id"] for e in await ledger(api, practice, "EHR-1")].count(loads["payment_id"]) == 1


async def test_a_first_write_applied_without_confirming_is_announced_when_its_delivery_comes_again(
    paypost: Paypost, api: httpx.AsyncClient, practice: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same for a payment handled alone (as with tracing on): its row's insert unconfirmed, the
    delivery fails transiently and nothing is announced; handled again, it is announced once."""
    from pymongo import WriteConcern

    from paypost.domain.errors import UnconfirmedWrite
    from paypost.domain.events import PostingLoaded
    from paypost.infra.batching import inserter

    announced: list[str] = []

    async def heard(event: PostingLoaded) -> None:
        announced.append(event.posting.key.payment_id)

    paypost.bus.subscribe(PostingLoaded, heard)
    store: Any = paypost.postings
    monkeypatch.setattr(store, "_finished_inserts",
                        inserter(store._c.with_options(write_concern=WriteConcern(w=5, wtimeout=500))))
    body = payment_body()
    with pytest.raises(UnconfirmedWrite):
        await paypost.posting_service.handle(_kept(body))
    assert announced == []
    monkeypatch.undo()
    outcome = await paypost.posting_service.handle(_kept(body))
    assert (outcome.disposition, outcome.load_status) == (Disposition.ACK, LoadStatus.LOADED)
    assert announced == [body["payment_id"]]
    row = await get_posting(api, practice, body["payment_id"])
    assert row is not None and row["attempts_count"] == 1



async def test_conditional_updates_applied_without_confirming_are_told_apart_from_those_not_applied(
    paypost: Paypost,
) -> None:
    """The coalesced conditional update (an outcome written onto a row that was there before):
    each update the server applied without meeting its write concern is ``UnconfirmedWrite``, one
    whose condition did not match is not written, as ever, with or without the changed document."""
    from pymongo import WriteConcern

    from paypost.domain.errors import UnconfirmedWrite
    from paypost.infra.batching import conditional_updater

    plain: Any = paypost.postings
    rows = plain._c.database[f"updates_{uuid.uuid4().hex[:8]}"]
    await rows.insert_many([{"_id": "a", "state": "FAILED"}, {"_id": "b", "state": "LOADED"}])
    unmet = rows.with_options(write_concern=WriteConcern(w=5, wtimeout=500))
    loads = ({"_id": "a", "state": "FAILED"}, {"$set": {"state": "LOADED"}})
    moved_on = ({"_id": "b", "state": "FAILED"}, {"$set": {"state": "LOADED"}})

    told = await asyncio.gather(conditional_updater(unmet).submit(loads), conditional_updater(unmet).submit(moved_on),
                                return_exceptions=True)
    assert isinstance(told[0], UnconfirmedWrite) and told[1] is False
    assert (await rows.find_one({"_id": "a"}) or {}).get("state") == "LOADED"  # applied, not confirmed
    await rows.update_one({"_id": "a"}, {"$set": {"state": "FAILED"}})
    told = await asyncio.gather(*(conditional_updater(unmet, returning=True).submit(op) for op in (loads, moved_on)),
                                return_exceptions=True)
    assert isinstance(told[0], UnconfirmedWrite) and told[1] is None
    assert await conditional_updater(rows).submit(({"_id": "a", "state": "LOADED"}, {"$set": {"n": 1}})) is True
    await rows.drop()
