"""Deposits and the close of a month (contract section 11), on the real broker and database."""

from __future__ import annotations

import asyncio
import functools
import uuid
from datetime import UTC, datetime
from typing import Any
from unittest.mock import ANY

import aio_pika
import httpx
import orjson
import pytest

from paypost.bootstrap import Paypost
from paypost.handlers.deposits import Deposits, deposit_from_message
from paypost.infra.mongo.database import Collections, connect
from paypost.infra.mongo.deposits import MongoDeposits
from paypost.infra.runtime.settings import Settings
from paypost.schemas.messages import DepositReceived
from tests.support.api_calls import wait_status
from tests.support.tokens import TOKENS, VIEWER
from tests.support.upstream import Upstream
from tests.support.waits import wait_for

P = "clinic-a"
ADMIN = {"Authorization": "Bearer adm-token"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The test paypost also knows an admin, who reads the access trail."""
    return settings.model_copy(update={"api_tokens": f"{TOKENS},adm-token:admin:ada"})


def settled(transfer: str, payments: list[str], gross: str, fees: str, at: str) -> dict[str, Any]:
    net = f"{float(gross) - float(fees):.2f}"
    return {"event_id": str(uuid.uuid4()), "practice_id": P, "merchant_transfer_id": transfer,
            "payment_ids": payments, "refund_ids": [], "gross_amount": gross, "fees_amount": fees,
            "net_amount": net, "currency": "USD", "settled_at": at}


def deposit_body(deposit_id: str, amount: str, at: str, named: list[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"event_id": str(uuid.uuid4()), "practice_id": P, "deposit_id": deposit_id,
                            "amount": amount, "currency": "USD", "deposited_at": at}
    if named is not None:
        body["merchant_transfer_ids"] = named
    return body


async def deposit(api: httpx.AsyncClient, deposit_id: str, status: str | None = None) -> dict[str, Any] | None:
    r = await api.get(f"/api/v1/practices/{P}/deposits")
    assert r.status_code == 200, r.text
    found = next((d for d in r.json()["items"] if d["deposit_id"] == deposit_id), None)
    if found is not None and status is not None and found["status"] != status:
        return None
    return found


async def transfers_in(upstream: Upstream, api: httpx.AsyncClient, *transfers: tuple[str, str, str]) -> None:
    """Settle transfers of (id, gross, fees) on 2026-10-20, and wait until paypost holds them."""
    for tid, gross, fees in transfers:
        await upstream.send("transfer.settled", settled(tid, [], gross, fees, "2026-10-20T12:00:00+00:00"))
    for tid, _, _ in transfers:
        await wait_for(functools.partial(_transfer_known, api, tid))


async def _transfer_known(api: httpx.AsyncClient, tid: str) -> bool:
    return (await api.get(f"/api/v1/transfers/{P}/{tid}")).status_code == 200


async def test_matching_by_name_by_amount_n_to_one_ambiguity_and_a_late_transfer(
        upstream: Upstream, api: httpx.AsyncClient, practice: str, amqp_url: str) -> None:
    events = await _listen(amqp_url, f"deposit.matched.{P}")
    await transfers_in(upstream, api, ("MT-1", "100.00", "3.00"), ("MT-2", "50.00", "1.50"), ("MT-3", "20.00", "0.60"),
                       ("MT-4", "300.00", "9.00"), ("MT-5", "40.00", "1.00"), ("MT-6", "40.00", "1.00"))
    # By name, whatever the amount (the bank's fee on the deposit shows as its difference).
    await upstream.send("deposit.received", deposit_body("D-name", "290.00", "2026-10-21T09:00:00+00:00", ["MT-4"]))
    named = await wait_for(lambda: deposit(api, "D-name", "matched"))
    assert named["merchant_transfer_ids"] == ["MT-4"] and named["difference"] == "-1.00"
    # N to 1 net of fees: 97.00 + 48.50 + 19.40 = 164.90.
    await upstream.send("deposit.received", deposit_body("D-sum", "164.90", "2026-10-21T09:00:00+00:00"))
    summed = await wait_for(lambda: deposit(api, "D-sum", "matched"))
    assert sorted(summed["merchant_transfer_ids"]) == ["MT-1", "MT-2", "MT-3"] and summed["difference"] == "0.00"
    # Two transfers of 39.00: either explains it, so neither is guessed.
    await upstream.send("deposit.received", deposit_body("D-two", "39.00", "2026-10-21T09:00:00+00:00"))
    ambiguous = await wait_for(lambda: deposit(api, "D-two", "ambiguous"))
    assert sorted(map(tuple, ambiguous["candidates"])) == [("MT-5",), ("MT-6",)]
    assert ambiguous["merchant_transfer_ids"] == []
    # A deposit whose transfer has not arrived waits, then matches when it does.
    await upstream.send("deposit.received", deposit_body("D-late", "77.00", "2026-10-22T09:00:00+00:00"))
    assert (await wait_for(lambda: deposit(api, "D-late")))["status"] == "unmatched"
    await upstream.send("transfer.settled", settled("MT-7", [], "80.00", "3.00", "2026-10-21T12:00:00+00:00"))
    late = await wait_for(lambda: deposit(api, "D-late", "matched"))
    assert late["merchant_transfer_ids"] == ["MT-7"]
    got = [orjson.loads(m) for m in await _drain(events, 4)]
    assert sorted(e["deposit_id"] for e in got) == ["D-late", "D-name", "D-sum"]
    assert all("patient_account_id" not in e for e in got)


async def test_matching_by_hand_and_unmatching_are_audited_and_a_viewer_cannot(
        upstream: Upstream, api: httpx.AsyncClient, practice: str) -> None:
    await transfers_in(upstream, api, ("MT-5", "40.00", "1.00"), ("MT-6", "40.00", "1.00"))
    await upstream.send("deposit.received", deposit_body("D-two", "39.00", "2026-10-21T09:00:00+00:00"))
    await wait_for(lambda: deposit(api, "D-two", "ambiguous"))
    url = f"/api/v1/practices/{P}/deposits/D-two"
    assert (await api.post(f"{url}/match", json={"merchant_transfer_ids": ["MT-6"]})).status_code == 422  # no reason
    viewer = {"Authorization": f"Bearer {VIEWER}"}
    r = await api.post(f"{url}/match", json={"merchant_transfer_ids": ["MT-6"], "reason": "x"}, headers=viewer)
    assert r.status_code == 403
    r = await api.post(f"{url}/match", json={"merchant_transfer_ids": ["MT-6"], "reason": "bank ref 8812"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "matched" and r.json()["merchant_transfer_ids"] == ["MT-6"]
    r = await api.post(f"{url}/match", json={"merchant_transfer_ids": ["MT-5"], "reason": "again"})
    assert r.status_code == 409
    r = await api.post(f"{url}/unmatch", json={"reason": "wrong transfer"})
    assert r.status_code == 200 and r.json()["status"] == "unmatched"
    # A transfer arriving later does not match by itself a deposit an operator unmatched.
    await upstream.send("transfer.settled", settled("MT-8", [], "40.00", "1.00", "2026-10-21T00:00:00+00:00"))
    await wait_for(lambda: _transfer_known(api, "MT-8"))
    still = await deposit(api, "D-two")
    assert still is not None and still["status"] == "unmatched"
    trail = (await api.get(f"{url}/audit")).json()["items"]
    by_hand = [(e["actor"], e["action"], e["reason"]) for e in trail if e["actor"] != "paypost"]
    assert by_hand == [("alice", "match", "bank ref 8812"), ("alice", "unmatch", "wrong transfer")]
    aging = (await api.get(f"/api/v1/practices/{P}/aging")).json()
    assert aging["transfers"]["over-10"] == {"count": 3, "amount": "117.00"}  # settled in October
    assert aging["deposits"]["over-10"] == {"count": 1, "amount": "39.00"}


async def test_two_workers_matching_one_deposit_at_once_make_one_match(
        upstream: Upstream, api: httpx.AsyncClient, practice: str, paypost: Paypost, settings: Settings) -> None:
    await transfers_in(upstream, api, ("MT-1", "100.00", "3.00"))
    # The deposit is kept without matching it, then two workers (each with its own connection) match it.
    message = DepositReceived.model_validate_json(orjson.dumps(deposit_body("D-race", "97.00",
                                                                            "2026-10-21T09:00:00+00:00")))
    clients = [connect(settings.mongodb_uri) for _ in range(2)]
    try:
        stores = [MongoDeposits(Collections(c[settings.mongodb_db])) for c in clients]
        await stores[0].received(deposit_from_message(message), paypost.clock())
        workers = [Deposits(s, s, paypost.outcomes) for s in stores]
        results = await asyncio.gather(*(w.match(P, "D-race") for w in workers for _ in range(3)))
    finally:
        for c in clients:
            await c.close()
    # Each worker's answer is the deposit as it last read it (a loser may have read it before the
    # winner committed); what is stored is one decision.
    assert "matched" in [r.status.value if r else None for r in results]
    found = await paypost.deposit_store.get(P, "D-race")
    assert found is not None and found.status.value == "matched" and found.merchant_transfer_ids == ("MT-1",)
    trail = (await api.get(f"/api/v1/practices/{P}/deposits/D-race/audit")).json()["items"]
    assert [e["action"] for e in trail] == ["received", "matched"]  # one decision written
    doc = await paypost.collections.transfers.find_one({"_id": f"{P}/MT-1"})
    assert doc is not None and doc["deposit_id"] == "D-race"


async def test_a_month_becomes_ready_is_refused_then_forced_and_a_late_payment_is_marked(
        upstream: Upstream, api: httpx.AsyncClient, practice: str, paypost: Paypost) -> None:
    r = await api.put(f"/api/v1/practices/{P}", json={"name": "Clinic A", "ledger": {"kind": "builtin"},
                                                     "time_zone": "America/Chicago",
                                                     "reconciliation": {"amount_tolerance": "0.10", "days": 3}})
    assert r.status_code == 200 and r.json()["time_zone"] == "America/Chicago"
    assert (await api.put(f"/api/v1/practices/{P}", json={"name": "A", "ledger": {"kind": "builtin"},
                                                          "time_zone": "Mars/Olympus"})).status_code == 422
    month = f"/api/v1/practices/{P}/periods/2026-10"
    # 2026-11-01 03:00 UTC is still October in Chicago.
    paid = await upstream.payment(amount="100.00", occurred_at="2026-11-01T03:00:00+00:00", merchant_transfer_id="MT-1")
    await wait_status(api, P, paid["payment_id"], "LOADED")
    await upstream.send("transfer.settled", settled("MT-1", [paid["payment_id"]], "100.00", "3.00",
                                                    "2026-10-30T12:00:00+00:00"))
    await upstream.send("deposit.received", deposit_body("D-1", "97.05", "2026-10-31T09:00:00+00:00"))
    await wait_for(lambda: deposit(api, "D-1", "matched"))
    refund = await upstream.refund(payment_id=paid["payment_id"], amount="10.00",
                                   occurred_at="2026-10-31T12:00:00+00:00")
    await wait_status(api, P, refund["refund_id"], "LOADED")
    report = await wait_for(lambda: _ready(api, month))
    assert report["by_method"]["card"] == {"count": 1, "amount": "100.00"}
    assert report["by_kind_and_method"] == {"payment": {"card": {"count": 1, "amount": "100.00"}},
                                            "refund": {"card": {"count": 1, "amount": "10.00"}}}
    assert report["net_amount"] == "90.00"
    assert report["transfers"]["reconciled"]["count"] == 1 and report["deposits"]["matched"]["count"] == 1
    # A failed payment of the month blocks it.
    failed = await upstream.payment(amount="25.00", occurred_at="2026-10-15T12:00:00+00:00",
                                    patient_account_id="acct-none", ehr_patient_id=None)
    await wait_status(api, P, failed["payment_id"], "FAILED")
    report = (await api.get(month)).json()
    assert not report["ready"] and report["blockers"] == [{"kind": "failed_postings", "count": 1, "amount": "25.00"}]
    r = await api.post(f"{month}/close", json={"note": "October"})
    assert r.status_code == 409 and r.json()["error"]["blockers"][0]["kind"] == "failed_postings"
    assert (await api.post(f"{month}/close", json={"note": "October", "force": True})).status_code == 400
    r = await api.post(f"{month}/close", json={"note": "October", "force": True, "reason": "posted by hand"})
    assert r.status_code == 200, r.text
    closed = r.json()["closed"]
    assert closed["forced"] is True and closed["closed_by"] == "alice" and closed["rows"] == 3
    assert len(closed["digest"]) == 64 and closed["audit"][0]["action"] == "close"
    assert (await api.post(f"{month}/close", json={"note": "again"})).status_code == 409
    # The close is a record of the sealed audit chain: sealed once, and verified unaltered.
    await paypost.sealer.seal_all()
    seals = paypost.collections.db.get_collection("audit_seals")
    assert [r async for s in seals.find({"records.kind": "period"}) for r in s["records"] if r["kind"] == "period"] \
        == [{"kind": "period", "id": f"{P}/2026-10", "hash": ANY}]
    verified = await paypost.sealer.verify()
    assert verified.problems == [] and verified.records >= 1
    csv_text = (await api.get(f"{month}.csv")).text
    assert csv_text.splitlines()[0].startswith("payment_id,kind,method,amount") and len(csv_text.splitlines()) == 4
    assert "acct-" not in csv_text  # no patient account in the export
    await paypost.access_log.flush()  # the export is in the access trail (contract section 12)
    trail = (await api.get("/api/v1/access-log", params={"practice_id": P}, headers=ADMIN)).json()["items"]
    exports = [e for e in trail if e["action"] == "export" and "/periods/" in e["route"]]
    assert len(exports) == 1 and exports[0]["count"] == 3 and exports[0]["key_name"] == "alice"
    # A payment of October arriving now: loaded, marked late, in the report, and a task.
    late = await upstream.payment(amount="12.00", occurred_at="2026-10-20T12:00:00+00:00")
    await wait_status(api, P, late["payment_id"], "LOADED")
    row = await wait_for(lambda: _late_row(api, late["payment_id"]))
    assert row["late_for_closed_period"] is True
    report = (await api.get(month)).json()
    assert report["late_payment_ids"] == [late["payment_id"]] and report["late_for_closed_period"]["count"] == 1
    await wait_for(lambda: _late_task(api, late["payment_id"]))  # opened just after the row is marked


async def _late_task(api: httpx.AsyncClient, payment_id: str) -> bool:
    alerts = (await api.get("/api/v1/alerts", params={"practice_id": P, "state": "open"})).json()["items"]
    return any(a["alert_id"] == f"task:{P}:{payment_id}:late" and a["kind"] == "task" for a in alerts)


async def _ready(api: httpx.AsyncClient, url: str) -> dict[str, Any] | None:
    report: dict[str, Any] = (await api.get(url)).json()
    return report if report["ready"] else None


async def _late_row(api: httpx.AsyncClient, payment_id: str) -> dict[str, Any] | None:
    row: dict[str, Any] = (await api.get(f"/api/v1/postings/{P}/{payment_id}")).json()
    return row if row.get("late_for_closed_period") else None


async def _listen(amqp_url: str, key: str) -> asyncio.Queue[bytes]:
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind("paypost.events", key)
    got: asyncio.Queue[bytes] = asyncio.Queue()

    async def on(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        await got.put(message.body)
        await message.ack()

    await queue.consume(on)
    return got


async def _drain(events: asyncio.Queue[bytes], at_most: int) -> list[bytes]:
    got: list[bytes] = []
    while len(got) < at_most:
        try:
            got.append(await asyncio.wait_for(events.get(), timeout=1.5))
        except TimeoutError:
            break
    return got


async def test_a_deposit_that_breaks_the_contract_is_an_unreadable_row(
        upstream: Upstream, api: httpx.AsyncClient, practice: str) -> None:
    body = deposit_body("D-bad", "12.345", "2026-10-21T09:00:00+00:00")
    await upstream.send("deposit.received", body)
    row = await wait_for(lambda: _row(api, body["event_id"]))
    assert row["kind"] == "unreadable" and row["load_status"] == "FAILED"
    assert row["load_error"]["code"] == "INVALID_MESSAGE" and "amount" in row["load_error"]["message"]
    assert await deposit(api, "D-bad") is None


async def _row(api: httpx.AsyncClient, payment_id: str) -> dict[str, Any] | None:
    r = await api.get(f"/api/v1/postings/{P}/{payment_id}")
    found: dict[str, Any] | None = r.json() if r.status_code == 200 else None
    return found


async def test_a_months_returns_and_chargebacks_count_by_kind_block_until_their_tasks_resolve_and_arrive_late(
        upstream: Upstream, api: httpx.AsyncClient, practice: str) -> None:
    month = f"/api/v1/practices/{P}/periods/2026-10"
    paid = await upstream.payment(amount="80.00", method="ach", occurred_at="2026-10-05T12:00:00+00:00")
    await wait_status(api, P, paid["payment_id"], "LOADED")
    returned = {"event_id": str(uuid.uuid4()), "practice_id": P, "return_id": "ret-1", "payment_id": paid["payment_id"],
                "amount": "30.00", "currency": "USD", "return_code": "R01", "occurred_at": "2026-10-09T12:00:00+00:00"}
    await upstream.send("payment.returned", returned)
    await wait_status(api, P, "ret-1", "LOADED")
    report = await wait_for(lambda: _blocked_by(api, month, "open_return_tasks"))
    assert report["by_kind"]["return"] == {"count": 1, "amount": "30.00"}
    assert report["by_kind_and_method"]["return"] == {"ach": {"count": 1, "amount": "30.00"}}
    assert report["net_amount"] == "50.00"
    assert report["blockers"] == [{"kind": "open_return_tasks", "count": 1, "amount": "30.00"}]
    alerts = (await api.get("/api/v1/alerts", params={"practice_id": P, "state": "open"})).json()["items"]
    for alert in alerts:
        if alert["payment_id"] == "ret-1" and alert["kind"] == "task":
            r = await api.post(f"/api/v1/alerts/{alert['alert_id']}/resolve", json={"reason": "fee charged"})
            assert r.status_code == 200, r.text
    assert (await api.get(month)).json()["ready"] is True
    assert (await api.post(f"{month}/close", json={"note": "October"})).status_code == 200
    # A chargeback of October that arrives after the close: loaded, marked late, and a task.
    disputed = {"event_id": str(uuid.uuid4()), "practice_id": P, "dispute_id": "dis-1",
                "payment_id": paid["payment_id"], "amount": "20.00", "currency": "USD", "reason": "not recognised",
                "occurred_at": "2026-10-30T12:00:00+00:00"}
    await upstream.send("payment.disputed", disputed)
    await wait_status(api, P, "dis-1", "LOADED")
    row = await wait_for(lambda: _late_row(api, "dis-1"))
    assert row["kind"] == "chargeback"
    await wait_for(lambda: _late_task(api, "dis-1"))
    report = (await api.get(month)).json()
    assert report["late_payment_ids"] == ["dis-1"] and report["by_kind"]["chargeback"]["count"] == 1


async def _blocked_by(api: httpx.AsyncClient, url: str, kind: str) -> dict[str, Any] | None:
    report: dict[str, Any] = (await api.get(url)).json()
    return report if any(b["kind"] == kind for b in report["blockers"]) else None


async def test_the_tolerance_at_its_edge_and_a_month_that_has_not_ended(
        upstream: Upstream, api: httpx.AsyncClient, practice: str) -> None:
    """A deposit off by exactly the practice's tolerance matches; a cent more is not matched by
    itself. A month still running cannot be closed, not even forced."""
    r = await api.put(f"/api/v1/practices/{P}", json={"name": "Clinic A", "ledger": {"kind": "builtin"},
                                                     "reconciliation": {"amount_tolerance": "0.10", "days": 3}})
    assert r.status_code == 200, r.text
    await transfers_in(upstream, api, ("MT-E1", "100.00", "3.00"), ("MT-E2", "500.00", "5.00"))
    await upstream.send("deposit.received", deposit_body("D-edge", "96.90", "2026-10-21T09:00:00+00:00"))
    edge = await wait_for(lambda: deposit(api, "D-edge", "matched"))
    assert edge["merchant_transfer_ids"] == ["MT-E1"] and edge["difference"] == "-0.10"
    await upstream.send("deposit.received", deposit_body("D-past", "494.89", "2026-10-21T09:00:00+00:00"))
    past = await wait_for(lambda: deposit(api, "D-past"))
    assert past["status"] == "unmatched" and past["merchant_transfer_ids"] == []

    running = datetime.now(UTC).strftime("%Y-%m")
    refused = await api.post(f"/api/v1/practices/{P}/periods/{running}/close",
                             json={"note": "too soon", "force": True, "reason": "testing the refusal"})
    assert refused.status_code == 400 and "has not ended" in refused.text


async def test_a_batch_asking_for_a_practices_settings_as_they_lapse_makes_one_read(
        api: httpx.AsyncClient, practice: str, paypost: Paypost, settings: Settings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every loaded posting asks for its practice's time zone (the month's check): when the kept
    answer lapses, the payments in hand ask at once, and one read of the database answers them all."""
    r = await api.put(f"/api/v1/practices/{P}", json={"name": "Clinic A", "ledger": {"kind": "builtin"},
                                                     "time_zone": "America/Denver"})
    assert r.status_code == 200, r.text
    client = connect(settings.mongodb_uri)
    try:
        store = MongoDeposits(Collections(client[settings.mongodb_db]), settings_ttl=0.05)
        practices = store._practices
        reads = 0

        async def counted(*args: Any, **kwargs: Any) -> Any:
            nonlocal reads
            reads += 1
            return await practices.find_one(*args, **kwargs)

        monkeypatch.setattr(store, "_practices", type("Counted", (), {"find_one": staticmethod(counted)})())
        for expected_reads in (1, 2):
            answers = await asyncio.gather(*(store.settings_of(P) for _ in range(200)))
            assert reads == expected_reads
            assert {zone for zone, _ in answers} == {"America/Denver"}
            await asyncio.sleep(0.1)  # the kept answer lapses
    finally:
        await client.close()
