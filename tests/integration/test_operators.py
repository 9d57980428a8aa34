"""Retry, Clear, Save Changes, the audit trail and self-healing, on the real RabbitMQ and MongoDB."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import aio_pika
import httpx
import pytest
from pymongo.asynchronous.collection import AsyncCollection

from paypost.bench.probes import DocumentsWritten
from paypost.bootstrap import Paypost
from paypost.infra.mongo.database import Doc
from tests.support.api_calls import get_posting, ledger, wait_status
from tests.support.ledgers import builtin_entries
from tests.support.payloads import payment_body
from tests.support.tokens import VIEWER
from tests.support.upstream import Upstream
from tests.support.waits import wait_for

pytestmark = pytest.mark.integration


async def failed_payment(api: httpx.AsyncClient, upstream: Upstream, practice: str, **fields: Any) -> str:
    fields.setdefault("ehr_patient_id", None)
    body = await upstream.payment(**fields)
    await wait_status(api, practice, body["payment_id"], "FAILED")
    return str(body["payment_id"])


async def operation(api: httpx.AsyncClient, operation_id: str) -> dict[str, Any]:
    async def completed() -> dict[str, Any] | None:
        r = await api.get(f"/api/v1/operations/{operation_id}")
        assert r.status_code == 200, r.text
        return r.json() if r.json()["status"] == "completed" else None

    return await wait_for(completed)  # type: ignore[no-any-return]  # what completed() returned


async def test_entering_a_missing_mapping_loads_every_payment_it_blocked(
    api: httpx.AsyncClient, upstream: Upstream, practice: str
) -> None:
    blocked = [await failed_payment(api, upstream, practice, patient_account_id="acct-x") for _ in range(3)]
    other = await failed_payment(api, upstream, practice, patient_account_id="acct-y")

    r = await api.put("/api/v1/practices/clinic-a/patient-accounts/acct-x/mapping", json={"ehr_patient_id": "EHR-2"})
    assert r.status_code == 200
    assert r.json()["retried"] == 3

    for payment_id in blocked:
        posting = await wait_status(api, practice, payment_id, "LOADED")
        assert posting["ehr_patient_id"] == "EHR-2"
        auto = [a for a in posting["audit"] if a["action"] == "auto_retry"]
        assert len(auto) == 1
        assert auto[0]["actor"] == "paypost"
        assert "acct-x" in auto[0]["reason"] and "alice" in auto[0]["reason"]
        assert "set to EHR-2" in auto[0]["reason"]  # the mapping it was sent back for
    assert len(await ledger(api, practice, "EHR-2")) == 3
    untouched = await get_posting(api, practice, other)
    assert untouched is not None and untouched["load_status"] == "FAILED"


async def test_correcting_a_wrong_mapping_retries_patient_not_found(
    api: httpx.AsyncClient, upstream: Upstream, practice: str
) -> None:
    await api.put("/api/v1/practices/clinic-a/patient-accounts/acct-w/mapping", json={"ehr_patient_id": "EHR-404"})
    payment_id = await failed_payment(api, upstream, practice, patient_account_id="acct-w")
    posting = await get_posting(api, practice, payment_id)
    assert posting is not None and posting["load_error"]["code"] == "PATIENT_NOT_FOUND"

    await upstream.send("patient.mapping.updated", {"event_id": str(uuid.uuid4()), "practice_id": "clinic-a",
                                                    "patient_account_id": "acct-w", "ehr_patient_id": "EHR-1"})

    posting = await wait_status(api, practice, payment_id, "LOADED")
    assert any(a["action"] == "auto_retry" for a in posting["audit"])


async def test_save_changes_applies_a_mixed_selection_and_reports_each_item(
    api: httpx.AsyncClient, upstream: Upstream, practice: str
) -> None:
    fixable = await failed_payment(api, upstream, practice, ehr_patient_id="EHR-3")  # PATIENT_NOT_FOUND
    to_clear = await failed_payment(api, upstream, practice)
    loaded = (await upstream.payment())["payment_id"]
    await wait_status(api, practice, loaded, "LOADED")
    await api.put("/api/v1/practices/clinic-a/ehr-patients/EHR-3", json={})  # the cause, fixed

    r = await api.post("/api/v1/postings/changes", json={
        "practice_id": practice, "retry": [fixable, loaded, "no-such-payment"],
        "clear": [{"payment_id": to_clear, "reason": "posted by hand", "manual_reference": "CHK-77"}]})
    assert r.status_code == 202, r.text

    op = await operation(api, r.json()["operation_id"])
    assert op["total"] == op["done"] == 4
    results = {(i["action"], i["payment_id"]): (i["result"], i["message"]) for i in op["items"]}
    assert results[("retry", fixable)][0] == "retried"
    assert results[("retry", loaded)] == ("unchanged", "Already LOADED: nothing to retry.")
    assert results[("retry", "no-such-payment")][0] == "rejected"
    assert results[("clear", to_clear)][0] == "cleared"

    await wait_status(api, practice, fixable, "LOADED")
    cleared = await wait_status(api, practice, to_clear, "CLEARED")
    [clear_audit] = [a for a in cleared["audit"] if a["action"] == "clear"]
    assert clear_audit["actor"] == "alice"
    assert clear_audit["reason"] == "posted by hand"
    assert "CHK-77" in clear_audit["detail"]
    failed_rows = (await api.get("/api/v1/postings", params={"status": "FAILED"})).json()["items"]
    assert to_clear not in {row["payment_id"] for row in failed_rows}


@pytest.mark.parametrize("reason", ["", "   "])
async def test_clear_without_a_reason_is_refused_whole(api: httpx.AsyncClient, upstream: Upstream, practice: str,
                                                       reason: str) -> None:
    a = await failed_payment(api, upstream, practice)
    b = await failed_payment(api, upstream, practice)
    r = await api.post("/api/v1/postings/changes", json={
        "practice_id": practice, "retry": [a], "clear": [{"payment_id": b, "reason": reason}]})
    assert r.status_code == 422
    assert "reason" in r.json()["error"]["message"]
    await asyncio.sleep(0.5)
    for payment_id in (a, b):
        posting = await get_posting(api, practice, payment_id)
        assert posting is not None and posting["load_status"] == "FAILED"
        assert [x["action"] for x in posting["audit"]] == ["received", "failed", "dead_lettered"]


@pytest.mark.api_only
async def test_missing_reason_field_is_422(api: httpx.AsyncClient, practice: str) -> None:
    r = await api.post("/api/v1/postings/changes", json={"practice_id": practice, "clear": [{"payment_id": "x"}]})
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_request"


async def test_viewer_cannot_save_changes(api: httpx.AsyncClient, upstream: Upstream, practice: str) -> None:
    payment_id = await failed_payment(api, upstream, practice)
    r = await api.post("/api/v1/postings/changes", json={"practice_id": practice, "retry": [payment_id]},
                       headers={"Authorization": f"Bearer {VIEWER}"})
    assert r.status_code == 403
    r = await api.post("/api/v1/postings/changes", json={"practice_id": practice, "retry": [payment_id]},
                       headers={"Authorization": ""})
    assert r.status_code == 401
    await asyncio.sleep(0.3)
    posting = await get_posting(api, practice, payment_id)
    assert posting is not None and posting["load_status"] == "FAILED"
    assert all(a["action"] != "retry" for a in posting["audit"])


async def test_concurrent_retries_and_a_mapping_fix_post_once(
    api: httpx.AsyncClient, upstream: Upstream, practice: str, paypost: Paypost
) -> None:
    payment_ids = [await failed_payment(api, upstream, practice, patient_account_id="acct-c") for _ in range(5)]
    await api.put("/api/v1/practices/clinic-a/ehr-patients/EHR-C", json={})
    await paypost.mapping_store.put("clinic-a", "acct-c", "EHR-C", "test", paypost.clock())

    second = {"Authorization": "Bearer op2-token"}
    results = await asyncio.gather(
        api.post("/api/v1/postings/changes", json={"practice_id": practice, "retry": payment_ids}),
        api.post("/api/v1/postings/changes", json={"practice_id": practice, "retry": payment_ids}, headers=second),
        paypost.mapping_service.update("clinic-a", "acct-c", "EHR-C", actor="carol", source="api"),
    )
    ops = [await operation(api, r.json()["operation_id"]) for r in results[:2]]
    for payment_id in payment_ids:
        await wait_status(api, practice, payment_id, "LOADED")
    await asyncio.sleep(0.5)
    entries = await ledger(api, practice, "EHR-C")
    assert sorted(e["payment_id"] for e in entries) == sorted(payment_ids)
    retried = [i for op in ops for i in op["items"] if i["result"] == "retried"]
    assert len(retried) <= 5  # each payment was claimed by one of the racers at most


async def test_retry_racing_a_clear_ends_one_way_only(
    api: httpx.AsyncClient, upstream: Upstream, practice: str, paypost: Paypost
) -> None:
    payment_ids = [await failed_payment(api, upstream, practice, ehr_patient_id="EHR-R") for _ in range(6)]
    await api.put("/api/v1/practices/clinic-a/ehr-patients/EHR-R", json={})

    await asyncio.gather(*[
        api.post("/api/v1/postings/changes", json={"practice_id": practice, "retry": [p]}) for p in payment_ids
    ], *[
        api.post("/api/v1/postings/changes", json={"practice_id": practice,
                                                   "clear": [{"payment_id": p, "reason": "race"}]},
                 headers={"Authorization": "Bearer op2-token"}) for p in payment_ids
    ])
    finals = [await wait_status(api, practice, p, "LOADED", "CLEARED") for p in payment_ids]
    await asyncio.sleep(0.5)
    entries = {e["payment_id"] for e in await ledger(api, practice, "EHR-R")}
    for posting in finals:
        if posting["load_status"] == "LOADED":
            assert posting["payment_id"] in entries
        else:
            assert posting["payment_id"] not in entries


async def test_a_redelivered_command_changes_nothing_more(
    api: httpx.AsyncClient, upstream: Upstream, practice: str
) -> None:
    payment_id = await failed_payment(api, upstream, practice)  # stays FAILED: still no mapping
    command = {"command_id": "cmd-1", "practice_id": practice, "payment_ids": [payment_id],
               "operator": "dana", "requested_at": "2026-11-25T10:00:00+00:00"}
    await upstream.send("posting.retry", command, exchange="paypost.commands")

    async def failed_again() -> dict[str, Any] | None:
        p = await get_posting(api, practice, payment_id)
        return p if p and p["load_status"] == "FAILED" and p["attempts_count"] == 2 else None

    first = await wait_for(failed_again)
    await upstream.send("posting.retry", command, exchange="paypost.commands")
    await upstream.send("posting.retry", command, exchange="paypost.commands")
    marker = await upstream.payment()
    await wait_status(api, practice, marker["payment_id"], "LOADED")
    await asyncio.sleep(0.5)
    again = await get_posting(api, practice, payment_id)
    assert again is not None
    assert again["attempts_count"] == first["attempts_count"] == 2
    assert [a["action"] for a in again["audit"]].count("retry") == 1


async def test_amqp_clear_rejects_items_without_reason_and_applies_the_rest(
    api: httpx.AsyncClient, upstream: Upstream, practice: str
) -> None:
    a = await failed_payment(api, upstream, practice)
    b = await failed_payment(api, upstream, practice)
    await upstream.send("posting.clear", {
        "command_id": "cmd-clear", "practice_id": practice, "operator": "erin",
        "requested_at": "2026-11-25T10:00:00+00:00",
        "items": [{"payment_id": a, "reason": ""}, {"payment_id": b, "reason": "paid at the desk"}]},
        exchange="paypost.commands")
    await wait_status(api, practice, b, "CLEARED")
    posting = await get_posting(api, practice, a)
    assert posting is not None and posting["load_status"] == "FAILED"


async def test_retrying_loaded_or_cleared_changes_nothing(api: httpx.AsyncClient, upstream: Upstream,
                                                         practice: str) -> None:
    loaded = (await upstream.payment())["payment_id"]
    await wait_status(api, practice, loaded, "LOADED")
    cleared = await failed_payment(api, upstream, practice)
    op = await operation(api, (await api.post("/api/v1/postings/changes", json={
        "practice_id": practice, "clear": [{"payment_id": cleared, "reason": "by hand"}]})).json()["operation_id"])
    assert op["items"][0]["result"] == "cleared"

    op = await operation(api, (await api.post("/api/v1/postings/changes", json={
        "practice_id": practice, "retry": [loaded, cleared],
        "clear": [{"payment_id": loaded, "reason": "x"}]})).json()["operation_id"])
    assert [(i["action"], i["result"]) for i in op["items"]] == [
        ("retry", "unchanged"), ("retry", "unchanged"), ("clear", "unchanged")]
    assert len([e for e in await ledger(api, practice, "EHR-1") if e["payment_id"] == loaded]) == 1


async def test_a_refund_that_arrived_first_loads_when_its_payment_does(
    api: httpx.AsyncClient, upstream: Upstream, practice: str
) -> None:
    refund = await upstream.refund(payment_id="pay-late", amount="5.00")
    await wait_status(api, practice, refund["refund_id"], "FAILED")
    await upstream.payment(payment_id="pay-late")
    await wait_status(api, practice, "pay-late", "LOADED")
    row = await wait_status(api, practice, refund["refund_id"], "LOADED")
    assert any(a["action"] == "auto_retry" and "pay-late" in a["reason"] for a in row["audit"])
    amounts = sorted(e["amount"] for e in await ledger(api, practice, "EHR-1"))
    assert amounts == ["-5.00", "125.00"]


async def test_posting_detail_carries_the_whole_story(api: httpx.AsyncClient, upstream: Upstream,
                                                      practice: str) -> None:
    payment_id = await failed_payment(api, upstream, practice, patient_account_id="acct-s")
    await api.put("/api/v1/practices/clinic-a/patient-accounts/acct-s/mapping", json={"ehr_patient_id": "EHR-1"})
    posting = await wait_status(api, practice, payment_id, "LOADED")
    assert [a["action"] for a in posting["audit"]][:2] == ["received", "failed"]
    assert {"auto_retry", "loaded"} <= {a["action"] for a in posting["audit"]}
    assert [a["outcome"] for a in posting["attempts"]] == ["failed", "loaded"]
    assert posting["load_error_history"][0]["code"] == "PATIENT_NOT_MAPPED"
    for entry in posting["audit"]:
        assert entry["at"] and entry["actor"] and entry["action"]


async def test_a_late_dead_letter_never_fails_a_retry_in_flight(
    api: httpx.AsyncClient, upstream: Upstream, practice: str, paypost: Paypost
) -> None:
    """The dead-letter queue can lag (paypost was down, or busy): its copy of the first failure must
    not turn the retry that the office started meanwhile into a failure."""
    from paypost.domain.posting import KeptMessage, PostingKey

    payment_id = await failed_payment(api, upstream, practice, patient_account_id="acct-late")
    doc = await paypost.postings.get_doc(PostingKey(practice, payment_id))
    assert doc is not None
    kept = KeptMessage(doc["message"]["text"].encode(), "payment.posted", doc["message"]["message_id"], {})
    await paypost.collections.postings.update_one({"_id": f"{practice}/{payment_id}"},
                                                  {"$set": {"load_status": "RETRYING"}})
    late = {"x-death": [{"reason": "rejected", "queue": "paypost.postings", "count": 7}]}
    await paypost.dead_letter_service.handle(kept, late)
    posting = await get_posting(api, practice, payment_id)
    assert posting is not None and posting["load_status"] == "RETRYING"

    # A delivery limit reached with no outcome written is different: that becomes FAILED.
    limit = {"x-death": [{"reason": "delivery_limit", "queue": "paypost.postings", "count": 21}]}
    await paypost.dead_letter_service.handle(kept, limit)
    posting = await get_posting(api, practice, payment_id)
    assert posting is not None and posting["load_status"] == "FAILED"
    assert posting["load_error"]["code"] == "LEDGER_UNAVAILABLE"


async def test_a_self_heal_of_many_chunks_replays_each_payment_once(
    amqp_url: str, api: httpx.AsyncClient, upstream: Upstream, practice: str, paypost: Paypost
) -> None:
    """More failures than one claim chunk (500): each is sent back once, not once per later chunk."""
    n = 1_200
    await _failures(upstream, paypost, practice, "acct-many", n, timeout=120)

    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    retried = await channel.declare_queue(exclusive=True)
    await retried.bind("paypost.events", routing_key=f"posting.retried.{practice}")
    try:
        await _healed(api, paypost, practice, "acct-many", n, timeout=120)
        await asyncio.sleep(0.5)  # a second replay of a chunk, if there were one, would be on its way
        events = (await channel.declare_queue(retried.name, passive=True)).declaration_result.message_count
        assert events == n
        replays = await paypost.collections.postings.distinct("replays", {"patient_account_id": "acct-many"})
        assert replays == [1]
    finally:
        await connection.close()


async def test_a_built_in_practices_failures_healed_load_in_place_each_in_one_write(
    amqp_url: str, api: httpx.AsyncClient, upstream: Upstream, practice: str, paypost: Paypost
) -> None:
    """The built-in ledger: a mapping fix's retries load in this process, each claimed and made
    LOADED by one write (no RETRYING, no trip through the replay queue), announced as retried and
    loaded, their tasks and the patient's flag resolved; each posted once."""
    n = 100
    bodies = await _failures(upstream, paypost, practice, "acct-here", n)
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    heard = await channel.declare_queue(exclusive=True)
    for event in ("retried", "loaded"):
        await heard.bind("paypost.events", routing_key=f"posting.{event}.{practice}")
    writes = DocumentsWritten(paypost.collections.db.client)
    await writes.start()
    try:
        await _healed(api, paypost, practice, "acct-here", n)
        resolved = {"practice_id": practice, "state": "resolved"}
        await wait_for(lambda: _count_is_in(paypost.collections.alerts, resolved, n + 1), timeout=30)  # tasks, flag
        written = await writes.since()
        await asyncio.sleep(0.5)
        events = (await channel.declare_queue(heard.name, passive=True)).declaration_result.message_count
    finally:
        await connection.close()
    assert events == 2 * n  # each retried, then loaded
    # The postings' row (claim and outcome in one) and their tasks, the flag, and a little beside
    # (the heal's seals); the queue's way wrote each posting twice (its claim, then its outcome).
    assert written <= 2.2 * n, written
    docs = await paypost.collections.postings.find({"patient_account_id": "acct-here"},
                                                   {"audit.action": 1, "replays": 1}).to_list(None)
    assert {(tuple(a["action"] for a in d["audit"]), d["replays"]) for d in docs} == {
        (("received", "failed", "dead_lettered", "auto_retry", "loaded"), 1)}
    entries = await builtin_entries(paypost.collections, practice_id=practice,
                                    payment_id={"$in": [b["payment_id"] for b in bodies]})
    assert sorted(e["payment_id"] for e in entries) == sorted(b["payment_id"] for b in bodies)


async def test_two_retries_at_once_load_each_built_in_payment_once(
    api: httpx.AsyncClient, upstream: Upstream, practice: str, paypost: Paypost
) -> None:
    """An operator's retry and another's (or a heal's) race: each payment's claim-and-outcome write
    is conditional, so one of them loads it, once, and the other reports it changed meanwhile."""
    # PATIENT_NOT_FOUND, the patient then registered straight in the directory: no heal or sweep
    # retries them (no mapping was entered), so the two retries below are the only ones.
    bodies = await _failures(upstream, paypost, practice, "acct-race", 40, ehr_patient_id="EHR-RACE")
    ids = [str(b["payment_id"]) for b in bodies]
    await paypost.directory.register_patient(practice, "EHR-RACE", datetime.now(UTC))

    first, second = await asyncio.gather(
        paypost.operations.retry(practice, ids, actor="alice", command_id="race-1"),
        paypost.operations.retry(practice, list(reversed(ids)), actor="bob", command_id="race-2"))

    by_id = {r.payment_id: [r.result] for r in first}
    for r in second:
        by_id[r.payment_id].append(r.result)
    assert all(sorted(results) == ["retried", "unchanged"] for results in by_id.values()), by_id
    docs = await paypost.collections.postings.find({"patient_account_id": "acct-race"},
                                                   {"load_status": 1, "replays": 1}).to_list(None)
    assert {(d["load_status"], d["replays"]) for d in docs} == {("LOADED", 1)}
    entries = await builtin_entries(paypost.collections, practice_id=practice, payment_id={"$in": ids})
    assert sorted(e["payment_id"] for e in entries) == sorted(ids)


async def _failures(upstream: Upstream, paypost: Paypost, practice: str, account: str, n: int, *,
                    ehr_patient_id: str | None = None, timeout: float = 60) -> list[dict[str, Any]]:
    """``n`` payments of ``account`` published, each FAILED (not mapped, or its patient unknown)."""
    bodies = [payment_body(ehr_patient_id=ehr_patient_id, patient_account_id=account) for _ in range(n)]
    await asyncio.gather(*[upstream.send("payment.posted", body) for body in bodies])
    failed = {"practice_id": practice, "patient_account_id": account, "load_status": "FAILED"}
    await wait_for(lambda: _count_is(paypost, failed, n), timeout=timeout)
    # and their messages kept from the dead letters (a write each, after the FAILED one)
    await wait_for(lambda: _count_is(paypost, {**failed, "audit.action": "dead_lettered"}, n), timeout=timeout)
    return bodies


async def _healed(api: httpx.AsyncClient, paypost: Paypost, practice: str, account: str, n: int, *,
                  timeout: float = 60) -> None:
    """The account's mapping entered: its ``n`` failures are retried, and each loads."""
    r = await api.put(f"/api/v1/practices/{practice}/patient-accounts/{account}/mapping",
                      json={"ehr_patient_id": "EHR-1"})
    assert r.json()["retried"] == n
    loaded = {"practice_id": practice, "patient_account_id": account, "load_status": "LOADED"}
    await wait_for(lambda: _count_is(paypost, loaded, n), timeout=timeout)


async def _count_is_in(collection: AsyncCollection[Doc], query: dict[str, Any], n: int) -> bool:
    return await collection.count_documents(query) == n


async def _count_is(paypost: Paypost, query: dict[str, Any], n: int) -> bool:
    return await paypost.collections.postings.count_documents(query) == n


async def test_a_mapping_entered_while_a_payment_is_failing_for_want_of_it_still_heals_it(
    paypost: Paypost, api: httpx.AsyncClient, upstream: Upstream, practice: str
) -> None:
    # The office enters the mapping right after the payment's mapping read and before its FAILED
    # write: the self-healing that follows the mapping finds nothing FAILED yet.
    # A payment alone reads its mapping with ``get``; a batch's new payments read theirs together.
    store = paypost.mapping_store
    read, read_many = store.get, store.get_many
    answers: list[int] = []

    async def the_office_enters_it() -> None:
        r = await api.put(f"/api/v1/practices/{practice}/patient-accounts/acct-race/mapping",
                          json={"ehr_patient_id": "EHR-2"})
        answers.append(r.json()["retried"])

    async def read_then_the_office_enters_it(practice_id: str, patient_account_id: str) -> str | None:
        held = await read(practice_id, patient_account_id)
        if patient_account_id == "acct-race" and not answers:
            await the_office_enters_it()
        return held

    async def read_many_then_the_office_enters_it(accounts: Iterable[tuple[str, str]],
                                                  ) -> dict[tuple[str, str], str]:
        wanted = list(accounts)
        held = await read_many(wanted)
        if any(account == "acct-race" for _, account in wanted) and not answers:
            await the_office_enters_it()
        return held

    store.get = read_then_the_office_enters_it  # type: ignore[method-assign]  # the race, injected
    store.get_many = read_many_then_the_office_enters_it  # type: ignore[method-assign]  # and for a batch
    body = await upstream.payment(ehr_patient_id=None, patient_account_id="acct-race")
    posting = await wait_status(api, practice, body["payment_id"], "LOADED", timeout=20)
    assert answers == [0]  # the office's fix found nothing to retry: the race happened
    assert posting["ehr_patient_id"] == "EHR-2"
    actions = [e["action"] for e in posting["audit"]]  # dead_lettered may come anywhere after failed
    assert actions.index("failed") < actions.index("auto_retry") < actions.index("loaded")
    assert actions.count("auto_retry") == 1


async def test_a_refund_of_a_failed_payment_keeps_its_patient_account_and_flag(
    api: httpx.AsyncClient, upstream: Upstream, practice: str
) -> None:
    """A refund that waits for a FAILED payment belongs to that payment's patient account: its row
    says so, and the patient's flag stays open while the refund still fails."""
    payment_id = await failed_payment(api, upstream, practice, patient_account_id="acct-rf")
    refund = await upstream.refund(payment_id=payment_id, amount="5.00")
    row = await wait_status(api, practice, refund["refund_id"], "FAILED")
    assert row["load_error"]["code"] == "ORIGINAL_PAYMENT_NOT_LOADED"
    assert row["patient_account_id"] == "acct-rf"

    # The payment is cleared (posted by hand); the refund is tried again, and fails again: its
    # payment was cleared, not loaded. The patient still has a failing posting: the flag stays.
    r = await api.post("/api/v1/postings/changes", json={
        "practice_id": practice, "retry": [], "clear": [{"payment_id": payment_id, "reason": "posted by hand"}]})
    assert r.status_code == 202, r.text
    await operation(api, r.json()["operation_id"])

    async def failed_again() -> dict[str, Any] | None:
        posting = await get_posting(api, practice, refund["refund_id"])
        return posting if posting and posting["load_status"] == "FAILED" and posting["attempts_count"] == 2 else None

    again = await wait_for(failed_again)
    assert again["patient_account_id"] == "acct-rf"
    alerts = (await api.get("/api/v1/alerts", params={"practice_id": practice, "state": "open"})).json()["items"]
    flags = [a for a in alerts if a["kind"] == "patient" and a["patient_account_id"] == "acct-rf"]
    assert len(flags) == 1
    tasks = [a for a in alerts if a["kind"] == "task" and a["payment_id"] == refund["refund_id"]]
    assert [t["patient_account_id"] for t in tasks] == ["acct-rf"]


async def test_each_dead_lettering_of_a_message_is_noted_once(paypost: Paypost, upstream: Upstream,
                                                               api: httpx.AsyncClient, practice: str) -> None:
    """The posting's trail notes each time its message was dead-lettered, once per dead-lettering
    (the marker the port is given), however often the dead-letter queue delivers it."""
    from datetime import UTC, datetime

    from paypost.domain.posting import PAYPOST_ACTOR, AuditEntry, PostingKey

    payment_id = await failed_payment(api, upstream, practice, patient_account_id="acct-dl1")
    key = PostingKey(practice, payment_id)
    audit = AuditEntry(datetime.now(UTC), PAYPOST_ACTOR, "dead_lettered", reason="delivery_limit", detail="seen")

    async def dead_letterings() -> list[dict[str, Any]]:
        return [a for a in (await get_posting(api, practice, payment_id) or {})["audit"]
                if a["action"] == "dead_lettered"]

    # The failure's own message is dead-lettered (a person must fix it) and noted: once that is in,
    # only this test's markers add to the trail.
    before = await wait_for(dead_letterings)

    assert await paypost.postings.mark_dead_lettered(key, "msg-1:paypost.postings:delivery_limit:21", audit)
    assert not await paypost.postings.mark_dead_lettered(key, "msg-1:paypost.postings:delivery_limit:21", audit)
    assert await paypost.postings.mark_dead_lettered(key, "msg-1:paypost.postings:delivery_limit:42", audit)
    assert len(await dead_letterings()) == len(before) + 2
