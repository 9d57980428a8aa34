"""Retention in MongoDB (contract section 12): the purge of postings, their trails and access
entries past ``PAYPOST_RETENTION_DAYS``, of settled postings' message bodies past
``PAYPOST_MESSAGE_RETENTION_DAYS``, and the legal hold that keeps a practice's whole record.

The purge works in pages (a platform's first purge may remove millions), each a bounded find in
the order received (an index walk from a cursor, never a rescan) and one ``delete_many``. Before a
page is deleted, a purge record naming what it removes is written to ``audit_purges`` and signed
with the audit key: ``paypost audit verify`` then tells a posting purged from one deleted by hand,
and the record is sealed into the audit chain like an access entry. A purge run ends with a summary
record, its counts, sealed the same way (the purge's audit entry).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pymongo import ASCENDING, IndexModel
from pymongo.errors import BulkWriteError

from paypost.domain.access_trail import PurgeCounts, Retention
from paypost.domain.audit_chain import AuditKeys, purge_message, record_hash
from paypost.domain.model import IN_FLIGHT, LoadStatus
from paypost.domain.ports.patient_data import PurgeProgress
from paypost.infra.mongo.access_log import DUPLICATE_KEY
from paypost.infra.mongo.audit_seals import AuditSealer
from paypost.infra.mongo.database import LEDGER_ENTRY, Collections, Doc
from paypost.infra.mongo.postings import entry_of

SETTLED = [LoadStatus.LOADED.value, LoadStatus.CLEARED.value]
IN_FLIGHT_VALUES = [s.value for s in IN_FLIGHT]



class MongoRetention:
    def __init__(self, collections: Collections, keys: AuditKeys | None = None) -> None:
        codecs = collections.postings.codec_options
        self._collections = collections
        self._postings = collections.postings
        self._ledger_entries = collections.ledger_entries
        self._practices = collections.practices
        self._access = collections.db.get_collection("access_log", codec_options=codecs)
        self._purges = collections.db.get_collection("audit_purges", codec_options=codecs)
        self._runs = collections.leases
        self._keys = keys

    async def ensure_indexes(self) -> None:
        # The postings whose message body is still kept, in the order received: the message purge
        # walks it, and a posting leaves it when its body goes.
        await self._postings.create_indexes([IndexModel([("received_at", ASCENDING)], name="message_kept",
                                                        partialFilterExpression={"message": {"$exists": True}})])

    # Legal hold.

    async def hold(self, practice_id: str, reason: str, by: str) -> Doc | None:
        """Put a practice under legal hold; its document, or None for a practice not set up."""
        hold = {"reason": reason, "by": by, "at": _now()}
        return await self._practices.find_one_and_update({"_id": practice_id}, {"$set": {"legal_hold": hold}},
                                                         projection={"legal_hold": 1}, return_document=True)

    async def lift(self, practice_id: str) -> Doc | None:
        return await self._practices.find_one_and_update({"_id": practice_id}, {"$unset": {"legal_hold": ""}},
                                                         projection={"legal_hold": 1}, return_document=True)

    async def held(self) -> list[str]:
        return sorted([d["_id"] async for d in self._practices.find({"legal_hold": {"$exists": True}}, {"_id": 1})])

    # The daily run, once across processes.

    async def done_on(self, day: str) -> bool:
        return await self._runs.find_one({"_id": "retention-purge-day", "day": day}) is not None

    async def mark_done(self, day: str) -> None:
        await self._runs.update_one({"_id": "retention-purge-day"}, {"$set": {"day": day}}, upsert=True)

    # The purge.

    async def purge(self, retention: Retention, now: datetime, *, dry_run: bool, page: int = 1000,
                    progress: PurgeProgress | None = None, by: str = "paypost") -> PurgeCounts:
        """Remove (or, ``dry_run``, count) what retention says must go; ``progress`` is called after each page."""
        cutoff, message_cutoff = retention.cutoffs(now)
        # A posting changed after the newest change the audit chain has sealed waits for its seal.
        if (sealed := await AuditSealer(self._collections).sealed_until()) is not None:
            cutoff = min(cutoff, sealed)
        counts = PurgeCounts(held_practices=await self.held())
        run = uuid.uuid4().hex
        if dry_run:
            return await self._count(cutoff, message_cutoff, counts)
        await self._purge_postings(cutoff, counts, run, page, progress)
        await self._purge_access(cutoff, counts, run, page, progress)
        await self._purge_messages(message_cutoff, counts, page, progress)
        await self._write_record({"_id": f"purge-{run}", "kind": "summary", "run": run, "at": _now(),
                                  "by": by, "retention_days": retention.days,
                                  "message_retention_days": retention.message_days,
                                  "held_practices": counts.held_practices, **counts.as_dict()})
        return counts

    async def _count(self, cutoff: datetime, message_cutoff: datetime, counts: PurgeCounts) -> PurgeCounts:
        held = counts.held_practices
        old = _old_postings(cutoff, held)
        counts.postings = await self._postings.count_documents(old)
        totals = await (await self._postings.aggregate([
            {"$match": old}, {"$group": {"_id": None, "n": {"$sum": {"$size": {"$ifNull": ["$audit", []]}}}}},
        ])).to_list(None) if counts.postings else []
        counts.audit_entries = totals[0]["n"] if totals else 0
        counts.access_entries = await self._access.count_documents({"at": {"$lt": cutoff},
                                                                    "practice_id": {"$nin": held}})
        # Those of postings purged whole are counted with them, as the purge removes them first.
        counts.message_bodies = await self._postings.count_documents(
            {**_kept_messages(message_cutoff, held), "$nor": [old]})
        return counts

    async def _write_record(self, record: Doc) -> None:
        """A purge record, signed (when paypost has an audit key) before the sealer chains it."""
        if self._keys is not None:
            digest = record_hash("purge", record["_id"], record)
            record["key_id"], record["signature"] = self._keys.sign(purge_message(record["_id"], digest))
        await self._purges.insert_one({**record, "sealed": False})

    async def _purge_postings(self, cutoff: datetime, counts: PurgeCounts, run: str, page: int,
                              progress: PurgeProgress | None) -> None:
        after: Doc = {}
        while True:
            held = await self.held()  # a hold placed while the purge runs is honoured from its next page
            docs = await self._postings.find(
                {**_old_postings(cutoff, held), **after},
                {"received_at": 1, "entries": {"$size": {"$ifNull": ["$audit", []]}}},
            ).sort([("received_at", ASCENDING), ("_id", ASCENDING)]).limit(page).to_list(None)
            if not docs:
                return
            last = docs[-1]
            after = {"$or": [{"received_at": {"$gt": last["received_at"]}},
                             {"received_at": last["received_at"], "_id": {"$gt": last["_id"]}}]}
            ids = [d["_id"] for d in docs]
            await self._write_record({"_id": f"purge-{run}-p{uuid.uuid4().hex[:12]}", "kind": "page", "run": run,
                                      "at": _now(), "postings": ids, "access": []})
            await self._keep_ledger_entries(ids)
            # The same conditions again: a posting changed (or a hold placed) since it was read stays.
            removed = await self._postings.delete_many({"_id": {"$in": ids}, **_old_postings(cutoff, held)})
            counts.postings += removed.deleted_count
            counts.audit_entries += sum(d["entries"] for d in docs) if removed.deleted_count == len(ids) else \
                await self._entries_gone(docs)
            await _tell(progress, "postings", counts)

    async def _keep_ledger_entries(self, ids: list[str]) -> None:
        """The built-in ledger's entries in these rows move to ``ledger_entries`` before the rows go:
        the ledger outlives the report (``paypost.infra.ledgers.builtin``). Moved again by a purge
        run again, each is there once, by its row's key."""
        entries = [entry_of(d) async for d in self._postings.find(
            {"_id": {"$in": ids}, LEDGER_ENTRY: {"$exists": True}}, {LEDGER_ENTRY: 1, "practice_id": 1})]
        if not entries:
            return
        try:
            await self._ledger_entries.insert_many(entries, ordered=False)
        except BulkWriteError as exc:
            if any(e.get("code") != DUPLICATE_KEY for e in exc.details.get("writeErrors", [])):
                raise

    async def _entries_gone(self, docs: list[Doc]) -> int:
        still = {d["_id"] async for d in self._postings.find({"_id": {"$in": [d["_id"] for d in docs]}}, {"_id": 1})}
        return sum(d["entries"] for d in docs if d["_id"] not in still)

    async def _purge_access(self, cutoff: datetime, counts: PurgeCounts, run: str, page: int,
                            progress: PurgeProgress | None) -> None:
        while True:
            held = await self.held()
            where = {"at": {"$lt": cutoff}, "practice_id": {"$nin": held}}
            ids = [d["_id"] for d in await self._access.find(where, {"_id": 1}).sort("at", ASCENDING)
                   .limit(page).to_list(None)]
            if not ids:
                return
            await self._write_record({"_id": f"purge-{run}-a{uuid.uuid4().hex[:12]}", "kind": "page", "run": run,
                                      "at": _now(), "postings": [], "access": [str(i) for i in ids]})
            removed = await self._access.delete_many({"_id": {"$in": ids}, **where})
            counts.access_entries += removed.deleted_count
            await _tell(progress, "access entries", counts)

    async def _purge_messages(self, cutoff: datetime, counts: PurgeCounts, page: int,
                              progress: PurgeProgress | None) -> None:
        after: Doc = {}
        while True:
            held = await self.held()
            where = _kept_messages(cutoff, held)
            docs = await self._postings.find({**where, **after}, {"received_at": 1}, hint="message_kept") \
                .sort("received_at", ASCENDING).limit(page).to_list(None)
            if not docs:
                return
            after = {"received_at": {"$gte": docs[-1]["received_at"]}, "_id": {"$nin": [d["_id"] for d in docs]}}
            removed = await self._postings.update_many({"_id": {"$in": [d["_id"] for d in docs]}, **where},
                                                       {"$unset": {"message": ""},
                                                        "$set": {"message_purged_at": datetime.now(UTC)}})
            counts.message_bodies += removed.modified_count
            await _tell(progress, "message bodies", counts)


def _now() -> datetime:
    """Now, to the millisecond, as MongoDB keeps it (a purge record's signature covers its time)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _old_postings(cutoff: datetime, held: list[str]) -> Doc:
    """Postings past retention: received and last changed before ``cutoff``, settled and sealed (by
    ``cutoff``, or marked changed by an earlier version), of a practice not under legal hold."""
    return {"received_at": {"$lt": cutoff}, "updated_at": {"$lt": cutoff}, "practice_id": {"$nin": held},
            "load_status": {"$nin": IN_FLIGHT_VALUES}, "audit_dirty": {"$ne": True}}


def _kept_messages(cutoff: datetime, held: list[str]) -> Doc:
    return {"received_at": {"$lt": cutoff}, "message": {"$exists": True}, "load_status": {"$in": SETTLED},
            "updated_at": {"$lt": cutoff}, "practice_id": {"$nin": held}}


async def _tell(progress: PurgeProgress | None, what: str, counts: PurgeCounts) -> None:
    if progress is not None:
        said = progress(what, counts)
        if said is not None:
            await said
