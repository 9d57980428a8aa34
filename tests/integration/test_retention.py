"""Retention (contract section 12): postings, their trails and access entries purged after
PAYPOST_RETENTION_DAYS, settled message bodies after PAYPOST_MESSAGE_RETENTION_DAYS, never a practice
under legal hold; in pages, once a day across processes, each purge audited, the audit chain still
verifying after it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from bson import ObjectId

from paypost.bootstrap import Paypost
from paypost.domain.access_trail import PurgeCounts, Retention
from paypost.domain.audit_chain import AuditKeys
from paypost.domain.model import LoadStatus, PostingKind
from paypost.domain.posting import AuditEntry, KeptMessage, Posting, PostingKey
from paypost.handlers.retention import RetentionService
from paypost.infra.ledgers.builtin import BuiltinLedger
from paypost.infra.mongo.audit_seals import AuditSealer
from paypost.infra.mongo.database import Collections, ensure_indexes
from paypost.infra.mongo.directory import MongoPracticeDirectory
from paypost.infra.mongo.leases import Lease
from paypost.infra.mongo.postings import new_doc
from paypost.infra.mongo.retention import MongoRetention
from paypost.infra.runtime.settings import Settings
from tests.support.tokens import TOKENS
from tests.support.waits import wait_for

pytestmark = pytest.mark.integration

KEY = "retention-test-audit-key-0123456789abcdef"
ADMIN = {"Authorization": "Bearer adm-token"}
PAYPOST = str(Path(sys.executable).with_name("paypost"))
YEARS_AGO = datetime.now(UTC) - timedelta(days=2600)  # past the default 2557 days
WEEKS_AGO = datetime.now(UTC) - timedelta(days=40)  # past the message bodies' 30 days, within the postings'


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"api_tokens": f"{TOKENS},adm-token:admin:ada", "audit_key": KEY})



async def posting(collections: Collections, practice: str, n: int, at: datetime,
                  status: LoadStatus = LoadStatus.LOADED) -> str:
    """A settled posting received and last changed at ``at``, as paypost writes it."""
    key = PostingKey(practice, f"pay-{n}")
    doc = new_doc(Posting(key=key, kind=PostingKind.PAYMENT, load_status=status, event_id=f"e-{practice}-{n}",
                          received_at=at, patient_account_id="acct-1", amount=Decimal("10.00"), currency="USD",
                          method="card"),
                  KeptMessage(b'{"memo": "kept body"}', "payment.posted", None, {}),
                  [AuditEntry(at, "paypost", "received"), AuditEntry(at, "paypost", status.value.lower())], status)
    doc["updated_at"] = at
    await collections.postings.insert_one(doc)
    return str(doc["_id"])


async def access_entry(collections: Collections, practice: str | None, at: datetime) -> ObjectId:
    entry_id = ObjectId()
    entry = {"_id": entry_id, "at": at, "key_id": None, "key_name": "alice", "role": "operator",
             "client": "127.0.0.1", "action": "read", "route": "/api/v1/postings", "practice_id": practice,
             "payment_ids": ["pay-1"], "count": 1, "filters": None, "patient_account_ids": ["acct-1"], "sealed": False}
    await collections.db.get_collection("access_log").insert_one(entry)
    return entry_id


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PAYPOST_MONGODB_URI": settings.mongodb_uri, "PAYPOST_MONGODB_DB": settings.mongodb_db,
           "PAYPOST_AUDIT_KEY": KEY, "COLUMNS": "200"}
    return subprocess.run([PAYPOST, *args], env=env, capture_output=True, text=True, timeout=120, check=False)


async def test_purge_removes_what_retention_says_keeps_what_is_held_and_the_chain_still_verifies(
    settings: Settings, paypost: Paypost, api: httpx.AsyncClient,
) -> None:
    c = paypost.collections
    # paypost's own daily purge runs at its start: the postings below come after it.
    await wait_for(lambda: paypost.retention_store.done_on(datetime.now(UTC).date().isoformat()))
    for practice in ("clinic-a", "clinic-h"):
        r = await api.put(f"/api/v1/practices/{practice}", json={"name": practice, "ledger": {"kind": "builtin"},
                                                                 "enabled": True})
        assert r.status_code == 200, r.text
    for n in range(5):
        await posting(c, "clinic-a", n, YEARS_AGO)
    held = [await posting(c, "clinic-h", n, YEARS_AGO) for n in range(3)]
    recent_loaded = await posting(c, "clinic-a", 100, WEEKS_AGO)
    recent_failed = await posting(c, "clinic-a", 101, WEEKS_AGO, LoadStatus.FAILED)
    recent_held = await posting(c, "clinic-h", 100, WEEKS_AGO)
    fresh = await posting(c, "clinic-a", 200, datetime.now(UTC))
    old_access = [await access_entry(c, p, YEARS_AGO) for p in ("clinic-a", None, "clinic-h")]
    await access_entry(c, "clinic-a", datetime.now(UTC))
    await AuditSealer(c, AuditKeys(KEY)).seal_all()  # purged entries were sealed: verify must account for them

    # A legal hold: admins only.
    assert (await api.post("/api/v1/practices/clinic-h/legal-hold", json={"reason": "litigation 2026-17"})) \
        .status_code == 403
    assert (await api.post("/api/v1/practices/clinic-h/legal-hold", json={"reason": " "}, headers=ADMIN)) \
        .status_code == 422
    assert (await api.post("/api/v1/practices/clinic-zz/legal-hold", json={"reason": "x"}, headers=ADMIN)) \
        .status_code == 404
    r = await api.post("/api/v1/practices/clinic-h/legal-hold", json={"reason": "litigation 2026-17"}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["legal_hold"]["reason"] == "litigation 2026-17"
    assert r.json()["legal_hold"]["by"] == "ada"

    dry = cli(settings, "purge", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "would remove 5 postings (10 audit entries), 2 access entries and 1 kept message bodies" in dry.stdout
    assert "clinic-h" in dry.stdout
    assert await c.postings.count_documents({}) == 12  # a dry run removes nothing

    done = cli(settings, "purge", "--page", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "removed 5 postings (10 audit entries), 2 access entries and 1 kept message bodies" in done.stdout
    assert done.stderr.count("... postings") == 3  # pages of two: 2, 2, 1
    left = {d["_id"] async for d in c.postings.find({}, {"_id": 1})}
    assert left == {*held, recent_loaded, recent_failed, recent_held, fresh}
    loaded = await c.postings.find_one({"_id": recent_loaded})
    assert loaded is not None and "message" not in loaded and loaded["message_purged_at"]
    for kept in (recent_failed, recent_held, fresh):  # a failure is replayed from it; a hold keeps all
        found = await c.postings.find_one({"_id": kept})
        assert found is not None and found["message"]
    access = c.db.get_collection("access_log")
    assert await access.count_documents({"_id": {"$in": old_access[:2]}}) == 0
    assert await access.count_documents({"_id": old_access[2]}) == 1  # its practice is held
    purges = c.db.get_collection("audit_purges")
    [summary] = await purges.find({"kind": "summary", "by": "paypost purge"}).to_list(None)
    assert (summary["postings"], summary["audit_entries"], summary["access_entries"], summary["message_bodies"]) \
        == (5, 10, 2, 1)
    assert summary["held_practices"] == ["clinic-h"] and summary["signature"]

    verified = cli(settings, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "12 entries removed by retention" in verified.stdout  # 10 trail entries, 2 access entries
    assert "TAMPERED" not in verified.stdout

    # The hold lifted, the held practice's old postings go at the next purge.
    r = await api.delete("/api/v1/practices/clinic-h/legal-hold", headers=ADMIN)
    assert r.status_code == 200 and r.json()["legal_hold"] is None
    again = cli(settings, "purge")
    assert "removed 3 postings (6 audit entries), 1 access entries and 1 kept message bodies" in again.stdout
    assert cli(settings, "audit", "verify").returncode == 0

    # A deletion by hand is not a purge: it is reported, and so is a purge record forged without the key.
    await c.postings.delete_one({"_id": fresh})
    await c.db.get_collection("audit_purges").insert_one(
        {"_id": "purge-forged", "kind": "page", "run": "x", "at": datetime.now(UTC), "postings": [fresh],
         "access": [], "sealed": False})
    tampered = cli(settings, "audit", "verify")
    assert tampered.returncode == 1
    assert f"{fresh}: the posting and its audit trail were removed" in tampered.stdout
    assert "purge record purge-forged is not signed" in tampered.stdout


async def test_the_daily_purge_runs_once_a_day_across_processes_in_pages(collections: Collections) -> None:
    for n in range(25):
        await posting(collections, "clinic-a", n, YEARS_AGO)
    await AuditSealer(collections, AuditKeys(KEY)).seal_all()  # an unsealed posting waits for its seal
    store = MongoRetention(collections, AuditKeys(KEY))
    pages: list[int] = []

    class Counting(MongoRetention):
        async def purge(self, retention: Retention, now: datetime, *, dry_run: bool, page: int = 1000,
                        progress: object = None, by: str = "paypost") -> PurgeCounts:
            async def told(what: str, counts: PurgeCounts) -> None:
                pages.append(counts.postings)
                if callable(progress):
                    await progress(what, counts)

            return await super().purge(retention, now, dry_run=dry_run, page=page, progress=told, by=by)

    services = [RetentionService(Counting(collections, AuditKeys(KEY)), Retention()) for _ in range(3)]
    leases = [Lease(collections.leases, "retention-purge", f"process-{n}", ttl=60) for n in range(3)]
    results = await asyncio.gather(*(s.purge_once_today(lease, page=10) for s, lease in zip(services, leases,
                                                                                           strict=True)))
    done = [r for r in results if r is not None]
    assert len(done) == 1 and done[0].postings == 25  # one process purged, the others stood by
    assert pages == [10, 20, 25]  # in pages, the lease renewed after each
    assert await collections.postings.count_documents({}) == 0
    # The same day again, from the lease's holder or another once it is free: nothing to do.
    for lease in leases:
        await lease.release()
    assert [await s.purge_once_today(lease) for s, lease in zip(services, leases, strict=True)] == [None] * 3
    assert await store.done_on(datetime.now(UTC).date().isoformat())


async def test_a_purged_rows_built_in_ledger_entry_stays_in_the_ledger(collections: Collections) -> None:
    """The ledger outlives the report: the entry kept in a purged row moves to ``ledger_entries``,
    and the patient's ledger still shows it (once, if the purge runs again)."""
    await ensure_indexes(collections)  # the ledger's, on the postings
    row_id = await posting(collections, "clinic-a", 1, YEARS_AGO)
    entry = {"entry_id": "entry-1", "ehr_patient_id": "EHR-1", "payment_id": "pay-1", "refund_id": None,
             "kind": "payment", "reversal_id": None, "amount": Decimal("10.00"), "currency": "USD",
             "posted_at": YEARS_AGO}
    await collections.postings.update_one({"_id": row_id}, {"$set": {"ledger_entry": entry}})
    await AuditSealer(collections, AuditKeys(KEY)).seal_all()
    directory = MongoPracticeDirectory(collections)
    await directory.register_patient("clinic-a", "EHR-1", YEARS_AGO)
    ledger = BuiltinLedger(collections, directory)
    assert [e["entry_id"] for e in await ledger.entries("clinic-a", "EHR-1")] == ["entry-1"]

    counts = await MongoRetention(collections, AuditKeys(KEY)).purge(Retention(), datetime.now(UTC), dry_run=False)
    await MongoRetention(collections, AuditKeys(KEY)).purge(Retention(), datetime.now(UTC), dry_run=False)

    assert counts.postings == 1 and await collections.postings.count_documents({}) == 0
    assert await collections.ledger_entries.find({}, {"_id": 1, "entry_id": 1}).to_list(None) == [
        {"_id": row_id, "entry_id": "entry-1"}]
    assert [(e["entry_id"], e["amount"]) for e in await ledger.entries("clinic-a", "EHR-1")] == [
        ("entry-1", Decimal("10.00"))]


async def test_the_scheduled_purge_runs_the_days_purge_once_under_the_workers_lease(
    settings: Settings, collections: Collections,
) -> None:
    """`paypost purge --daily` (the compose service, the CronJob): the first of the day purges and
    seals; a second, or one beside a worker holding the lease, does nothing."""
    from paypost.bootstrap import maintenance

    async with maintenance(settings) as first, maintenance(settings) as second:
        done = await first.purge_daily(page=50)
        again = await second.purge_daily(page=50)
    assert isinstance(done, PurgeCounts) and again is None
    assert await collections.db["leases"].count_documents({"_id": "retention-purge"}) == 1
