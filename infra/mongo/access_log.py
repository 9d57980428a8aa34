"""The access trail in MongoDB (contract section 12): who was shown which payments.

Recording never waits for the database: ``record`` puts the entry in a buffer in memory, and a
background task (``run``) writes the buffer with one ``insert_many`` every ``flush_every`` seconds,
or at once when ``batch`` entries are waiting. A clean stop writes what is left (``run`` returns
after a last flush). An entry's ``_id`` is made when it is recorded, so a flush that failed half way
and is tried again writes each entry once. Entries carry ``sealed: false`` until the audit sealer
(``infra/mongo/audit_seals.py``) has chained them with the postings' trails.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import asdict

import structlog
from bson import ObjectId
from bson.errors import InvalidId
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.errors import BulkWriteError

from paypost.domain.access import Scope
from paypost.domain.access_trail import AccessEntry, AccessQuery
from paypost.domain.errors import BadCursor
from paypost.infra.mongo.database import Collections, Doc

log = structlog.get_logger("paypost.access_log")

DUPLICATE_KEY = 11000
# Entries held while the database does not answer; past this the oldest are dropped, and said so
# (a bounded memory matters more than entries paypost could not write for minutes).
BUFFER_MAX = 100_000


def entry_doc(entry: AccessEntry) -> Doc:
    doc = asdict(entry)
    doc["payment_ids"] = list(entry.payment_ids) if entry.payment_ids is not None else None
    doc["patient_account_ids"] = list(entry.patient_account_ids)
    doc["filters"] = dict(entry.filters) if entry.filters is not None else None
    return {"_id": ObjectId(), **doc, "sealed": False}


def shown(doc: Doc) -> Doc:
    """An entry as ``GET /access-log`` answers it."""
    fields = ("at", "key_id", "key_name", "role", "client", "action", "route", "practice_id", "payment_ids",
              "count", "filters")
    return {"id": str(doc["_id"]), **{name: doc.get(name) for name in fields}}


class MongoAccessLog:
    def __init__(self, collections: Collections, *, flush_every: float = 1.0, batch: int = 200) -> None:
        self._c = collections.db.get_collection("access_log", codec_options=collections.postings.codec_options)
        self._flush_every = flush_every
        self._batch = batch
        self._buffer: list[Doc] = []
        self._wake = asyncio.Event()  # a batch's worth waits: flush now
        self._some = asyncio.Event()  # something waits: flush within flush_every (nothing: sleep)
        self._flushing = asyncio.Lock()
        self.dropped = 0

    @property
    def collection_name(self) -> str:
        return self._c.name

    async def ensure_indexes(self) -> None:
        newest = ("_id", DESCENDING)
        await self._c.create_indexes([
            IndexModel([("practice_id", ASCENDING), newest]),
            IndexModel([("payment_ids", ASCENDING), newest]),
            IndexModel([("patient_account_ids", ASCENDING), newest]),
            IndexModel([("filters.patient_account_id", ASCENDING), newest], sparse=True),
            IndexModel([("key_id", ASCENDING), newest]),
            IndexModel([("at", ASCENDING)]),  # retention
            IndexModel([("sealed", ASCENDING)], name="unsealed", partialFilterExpression={"sealed": False}),
        ])

    def record(self, entry: AccessEntry) -> None:
        """Keep ``entry`` for the next flush; never waits."""
        self._buffer.append(entry_doc(entry))
        self._some.set()
        if len(self._buffer) > BUFFER_MAX:
            excess = len(self._buffer) - BUFFER_MAX
            del self._buffer[:excess]
            self.dropped += excess
            log.error("access_entries_dropped", dropped=excess, detail="the database has not taken the "
                      "access trail's writes for a long time; the oldest waiting entries were dropped")
        if len(self._buffer) >= self._batch:
            self._wake.set()

    @property
    def waiting(self) -> int:
        return len(self._buffer)

    async def flush(self) -> int:
        """Write what is waiting; how many were written. On a failure the entries stay for the next flush."""
        async with self._flushing:
            if not self._buffer:
                return 0
            taking, self._buffer = self._buffer, []
            try:
                await self._c.insert_many(taking, ordered=False)
            except BulkWriteError as exc:
                # A flush tried again after a partial write: the entries written the first time are duplicates.
                if any(e.get("code") != DUPLICATE_KEY for e in exc.details.get("writeErrors", [])):
                    self._buffer[:0] = taking
                    raise
            except BaseException:
                self._buffer[:0] = taking
                raise
            return len(taking)

    async def run(self, stop: asyncio.Event, on_error: Callable[[Exception], object] | None = None) -> None:
        """Flush every ``flush_every`` seconds while entries wait, or at once when a batch is waiting,
        until ``stop``; then a last flush (a clean stop loses nothing). Nothing waiting: it sleeps
        until something is recorded."""
        while not stop.is_set():
            if not self._buffer:
                self._some.clear()
                recorded, stopping = asyncio.ensure_future(self._some.wait()), asyncio.ensure_future(stop.wait())
                try:
                    await asyncio.wait({recorded, stopping}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    recorded.cancel()
                    stopping.cancel()
                continue
            waiting = asyncio.ensure_future(self._wake.wait())
            stopping = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({waiting, stopping}, timeout=self._flush_every,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiting.cancel()
                stopping.cancel()
            self._wake.clear()
            try:
                await self.flush()
            except Exception as exc:  # noqa: BLE001 - kept for the next flush, said once per failure
                if on_error is not None:
                    on_error(exc)
        await self.flush()

    async def page(self, query: AccessQuery, scope: Scope, limit: int,
                   cursor: str | None) -> tuple[list[Doc], str | None]:
        """Entries newest first, within ``scope`` (an entry naming no practice only for every practice)."""
        where: list[Doc] = []
        if query.practice_id is not None:
            where.append({"practice_id": query.practice_id})
        if not scope.every:
            where.append({"practice_id": {"$in": sorted(scope.practices or ())}})
        if query.payment_id is not None:
            where.append({"payment_ids": query.payment_id})
        if query.patient_account_id is not None:
            # A long list records its filters instead: one filtered on the account was about it too.
            where.append({"$or": [{"patient_account_ids": query.patient_account_id},
                                  {"filters.patient_account_id": query.patient_account_id}]})
        if query.key_id is not None:
            where.append({"key_id": query.key_id})
        if query.since is not None:
            where.append({"at": {"$gte": query.since}})
        if query.until is not None:
            where.append({"at": {"$lt": query.until}})
        if cursor:
            try:
                where.append({"_id": {"$lt": ObjectId(cursor)}})
            except (InvalidId, TypeError) as exc:
                raise BadCursor("cursor is not one paypost handed out") from exc
        docs = await self._c.find({"$and": where} if where else {}).sort("_id", DESCENDING) \
            .limit(limit + 1).to_list(None)
        next_cursor = str(docs[limit - 1]["_id"]) if len(docs) > limit else None
        return [shown(d) for d in docs[:limit]], next_cursor
