"""The access trail (contract section 12): every answer that shows patients' payments is recorded,
off the request's path, sealed into the audit chain, and read back by admins within their scope."""

from __future__ import annotations

import asyncio
import ipaddress
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from paypost.api.app import create_app
from paypost.bootstrap import Paypost
from paypost.domain.model import LoadStatus, PostingKind
from paypost.domain.posting import AuditEntry, KeptMessage, Posting, PostingKey
from paypost.infra.mongo.audit_seals import AuditSealer
from paypost.infra.mongo.database import connect
from paypost.infra.mongo.postings import new_doc
from paypost.infra.rabbit.asyncapi import asyncapi_text
from paypost.infra.runtime.settings import Settings
from tests.support.api_calls import wait_status
from tests.support.tokens import OPERATOR, TOKENS
from tests.support.upstream import Upstream
from tests.support.waits import wait_for

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": "Bearer adm-token"}  # an admin of every practice
ADMIN_A = {"Authorization": "Bearer adm-a-token"}  # an admin of clinic-a only
ADMIN_B = {"Authorization": "Bearer adm-b-token"}  # an admin of clinic-b only
LEDGER_ROUTE = "/api/v1/practices/{practice_id}/ehr-patients/{ehr_patient_id}/ledger"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    tokens = f"{TOKENS},adm-token:admin:ada,adm-a-token:admin:ann:clinic-a,adm-b-token:admin:ben:clinic-b"
    return settings.model_copy(update={"api_tokens": tokens})


async def trail(api: httpx.AsyncClient, paypost: Paypost, headers: dict[str, str] = ADMIN,
                **params: str) -> list[dict[str, Any]]:
    await paypost.access_log.flush()
    r = await api.get("/api/v1/access-log", params=params, headers=headers)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def test_every_answer_that_shows_payments_is_recorded_and_read_by_admins_in_scope(
    paypost: Paypost, api: httpx.AsyncClient, upstream: Upstream, practice: str,
) -> None:
    bodies = [await upstream.payment(patient_account_id="acct-77") for _ in range(3)]
    for body in bodies:
        await wait_status(api, practice, body["payment_id"], "LOADED")
    ids = {b["payment_id"] for b in bodies}
    await asyncio.sleep(0.005)  # the reads above (wait_status's) are a millisecond (MongoDB's precision) before
    started = datetime.now(UTC)

    assert (await api.get("/api/v1/postings", params={"practice_id": practice})).status_code == 200
    assert (await api.get(f"/api/v1/postings/{practice}/{bodies[0]['payment_id']}")).status_code == 200
    assert (await api.get("/api/v1/postings.csv", params={"practice_id": practice})).status_code == 200
    assert (await api.get(f"/api/v1/practices/{practice}/ehr-patients/EHR-1/ledger")).status_code == 200
    assert (await api.get("/api/v1/alerts", params={"practice_id": practice})).status_code == 200
    assert (await api.get("/api/v1/failure-groups", params={"practice_id": practice})).status_code == 200
    dry = await api.post("/api/v1/postings/changes", params={"dry_run": "true"},
                         json={"practice_id": practice, "retry": [bodies[2]["payment_id"]]})
    assert dry.status_code == 200

    entries = await trail(api, paypost, since=started.isoformat())
    by_route = {e["route"]: e for e in entries}
    listed = by_route["/api/v1/postings"]
    assert (listed["action"], listed["key_name"], listed["role"], listed["practice_id"]) == \
        ("read", "alice", "operator", practice)
    assert set(listed["payment_ids"]) == ids and listed["count"] == 3
    assert listed["client"] == "127.0.0.1" and listed["key_id"] is None  # a key of PAYPOST_API_TOKENS
    assert listed["filters"] == {"practice_id": practice}
    detail = by_route["/api/v1/postings/{practice_id}/{payment_id:path}"]
    assert (detail["payment_ids"], detail["count"]) == ([bodies[0]["payment_id"]], 1)
    export = by_route["/api/v1/postings.csv"]
    assert export["action"] == "export" and set(export["payment_ids"]) == ids
    ledger = by_route[LEDGER_ROUTE]
    assert set(ledger["payment_ids"]) == ids and ledger["practice_id"] == practice
    assert by_route["/api/v1/alerts"]["count"] == 0  # nothing failed: an answer of none is on record too
    assert by_route["/api/v1/failure-groups"]["practice_id"] == practice  # a group's cause may be an account
    previewed = by_route["/api/v1/postings/changes"]
    assert previewed["payment_ids"] == [bodies[2]["payment_id"]] and previewed["filters"]["dry_run"] == "true"

    # Found by payment, by patient account (never shown in an entry) and by key.
    assert {e["route"] for e in await trail(api, paypost, payment_id=bodies[1]["payment_id"],
                                            since=started.isoformat())} == \
        {"/api/v1/postings", "/api/v1/postings.csv", LEDGER_ROUTE}
    by_account = await trail(api, paypost, patient_account_id="acct-77", since=started.isoformat())
    assert by_account and all("patient_account_ids" not in e for e in by_account)
    assert await trail(api, paypost, patient_account_id="acct-nobody") == []
    assert await trail(api, paypost, key_id="no-such-key") == []
    assert await trail(api, paypost, since=datetime.now(UTC).isoformat()) == []

    # Admins only, within their scope.
    assert (await api.get("/api/v1/access-log")).status_code == 403  # an operator
    assert len(await trail(api, paypost, ADMIN_A, since=started.isoformat())) >= 7
    assert await trail(api, paypost, ADMIN_B) == []
    assert (await api.get("/api/v1/access-log", params={"practice_id": practice}, headers=ADMIN_B)).status_code == 404
    assert (await api.get("/api/v1/access-log", params={"cursor": "nope"}, headers=ADMIN)).status_code == 400

    # Paged newest first.
    first = (await api.get("/api/v1/access-log", params={"limit": 2}, headers=ADMIN)).json()
    second = (await api.get("/api/v1/access-log", params={"limit": 2, "cursor": first["next_cursor"]},
                            headers=ADMIN)).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    assert not {e["id"] for e in first["items"]} & {e["id"] for e in second["items"]}
    assert first["items"][0]["at"] >= first["items"][1]["at"] >= second["items"][0]["at"]


async def test_an_export_of_more_than_500_rows_records_its_filters_and_count(
    paypost: Paypost, api: httpx.AsyncClient, practice: str,
) -> None:
    now = datetime.now(UTC)
    docs = []
    for n in range(520):
        posting = Posting(key=PostingKey(practice, f"bulk-{n:04d}"), kind=PostingKind.PAYMENT,
                          load_status=LoadStatus.LOADED, event_id=f"e-{n}", received_at=now,
                          patient_account_id="acct-1", amount=Decimal("10.00"), currency="USD", method="card")
        docs.append(new_doc(posting, KeptMessage(b"{}", "payment.posted", None, {}),
                            [AuditEntry(now, "paypost", "received")], LoadStatus.LOADED))
    await paypost.collections.postings.insert_many(docs)
    r = await api.get("/api/v1/postings.csv", params={"practice_id": practice, "status": "LOADED"})
    assert r.status_code == 200 and r.text.count("\n") == 521
    [entry] = [e for e in await trail(api, paypost) if e["route"] == "/api/v1/postings.csv"]
    assert (entry["action"], entry["count"], entry["payment_ids"]) == ("export", 520, None)
    assert entry["filters"] == {"practice_id": practice, "status": "LOADED"}


async def test_recording_waits_for_no_write_and_a_clean_stop_loses_nothing(
    settings: Settings, paypost: Paypost, api: httpx.AsyncClient, practice: str,
) -> None:
    access = paypost.collections.db.get_collection("access_log")
    assert (await api.get("/api/v1/postings")).status_code == 200
    assert paypost.access_log.waiting == 1 and await access.count_documents({}) == 0  # not written on the call
    await wait_for(lambda: access.find_one({}), timeout=3)  # written by the background task, within a second or so
    for _ in range(30):
        assert (await api.get("/api/v1/alerts")).status_code == 200
    assert paypost.access_log.waiting > 0
    await paypost.stop()
    client = connect(settings.mongodb_uri)
    try:
        written = await client[settings.mongodb_db]["access_log"].count_documents({})
        sealed = await client[settings.mongodb_db]["access_log"].count_documents({"sealed": True})
    finally:
        await client.close()
    assert written == sealed == 31  # written, then sealed by the stop's last seal


async def test_many_reads_write_in_batches_of_200(paypost: Paypost, api: httpx.AsyncClient, practice: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    access = paypost.collections.db.get_collection("access_log")
    # The tick made too slow to write anything here: what is written below, a batch of 200 wrote. (A
    # deadline under the 1 s tick once did this, and a loaded machine's two inserts missed it.)
    monkeypatch.setattr(paypost.access_log, "_flush_every", 60.0)
    await paypost.access_log.flush()
    await asyncio.sleep(1.2)  # the tick under way before (1 s) has passed: the writer sleeps until a record
    await asyncio.gather(*(api.get("/api/v1/alerts") for _ in range(450)))
    await wait_for(lambda: _at_least(access, 400), timeout=30)
    await paypost.access_log.flush()
    assert await access.count_documents({}) == 450


async def _at_least(collection: Any, n: int) -> bool:
    return bool(await collection.count_documents({}) >= n)


async def test_the_client_comes_from_x_forwarded_for_only_behind_a_trusted_proxy(
    paypost: Paypost, api: httpx.AsyncClient, practice: str,
) -> None:
    forged = {"X-Forwarded-For": "203.0.113.66"}
    assert (await api.get("/api/v1/postings", headers=forged)).status_code == 200  # no proxy is trusted
    proxied = create_app(paypost.application, asyncapi_text,
                         trusted_proxies=[ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("10.0.0.0/8")])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=proxied), base_url="http://paypost",
                                 headers={"Authorization": f"Bearer {OPERATOR}"}) as behind:
        # The caller's own header says 192.0.2.1 (anything); the proxies appended what they saw.
        r = await behind.get("/api/v1/postings", headers={"X-Forwarded-For": "192.0.2.1, 198.51.100.7, 10.1.2.3"})
        assert r.status_code == 200
        assert (await behind.get("/api/v1/alerts", headers={"X-Forwarded-For": "not-an-address"})).status_code == 200
    clients = [(e["route"], e["client"]) for e in await trail(api, paypost)]
    assert clients == [
        ("/api/v1/alerts", "127.0.0.1"),  # a header that cannot be read: the proxy's own address
        ("/api/v1/postings", "198.51.100.7"),  # the last hop before the trusted proxies
        ("/api/v1/postings", "127.0.0.1"),  # the forged header, from a caller that is no trusted proxy
    ]


async def test_access_entries_are_sealed_and_an_edit_or_a_deletion_is_caught(
    paypost: Paypost, api: httpx.AsyncClient, practice: str,
) -> None:
    for _ in range(3):
        assert (await api.get("/api/v1/postings")).status_code == 200
    await paypost.access_log.flush()
    sealer = AuditSealer(paypost.collections)
    await sealer.seal_all()
    whole = await sealer.verify()
    assert whole.ok, whole.problems
    purges = await paypost.collections.db.get_collection("audit_purges").count_documents({})  # the daily purge's
    assert whole.records == 3 + purges and whole.unsealed == 0
    access = paypost.collections.db.get_collection("access_log")
    first, second, *_ = await access.find({}).sort("_id", 1).to_list(None)
    # Someone with write access hides who looked, and removes another look altogether.
    await access.update_one({"_id": first["_id"]}, {"$set": {"key_name": "nobody"}})
    await access.delete_one({"_id": second["_id"]})
    result = await sealer.verify()
    assert f"access record {first['_id']} was altered" in result.problems
    assert f"access record {second['_id']} was removed" in result.problems
