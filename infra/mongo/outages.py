"""The practices whose system is failing or held (``paypost.domain.outages``), one document each in MongoDB.

Every process reads them often (``paypost.handlers.outages.OutageBoard``) and changes them with conditional
writes, so two processes that see the same failure count it once and hold the practice once.
"""

from __future__ import annotations

from datetime import datetime

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from paypost.domain.outages import Health, PracticeOutage, next_try
from paypost.infra.mongo.database import Collections, Doc


def outage_from(doc: Doc) -> PracticeOutage:
    return PracticeOutage(
        practice_id=doc["_id"], health=Health(doc["health"]), failing_since=doc.get("failing_since"),
        last_error=doc.get("last_error"), tries=doc.get("tries", 0), probe_at=doc.get("probe_at"),
        held_since=doc.get("held_since"), reason=doc.get("reason"), held_by=doc.get("held_by"),
        task_id=doc.get("task_id"),
    )


class MongoOutageStore:
    def __init__(self, collections: Collections) -> None:
        self._c = collections.outages

    async def every(self) -> list[PracticeOutage]:
        return [outage_from(d) async for d in self._c.find({})]

    async def get(self, practice_id: str) -> PracticeOutage | None:
        doc = await self._c.find_one({"_id": practice_id})
        return outage_from(doc) if doc else None

    async def failing(self, practice_id: str, error: str, at: datetime, probe_every: float) -> PracticeOutage:
        for _ in range(3):  # two processes may both start the record: the loser counts on it
            try:
                doc = await self._c.find_one_and_update(
                    {"_id": practice_id},
                    {"$setOnInsert": {"health": Health.FAILING.value},
                     "$min": {"failing_since": at}, "$set": {"last_error": error[:300]}, "$inc": {"tries": 1}},
                    upsert=True, return_document=ReturnDocument.AFTER,
                )
            except DuplicateKeyError:
                continue
            assert doc is not None  # an upsert returns what it wrote
            outage = outage_from(doc)
            if outage.by_hand:
                return outage  # nothing is tried before its release
            probe_at = next_try(outage, at, probe_every)
            await self._c.update_one({"_id": practice_id}, {"$set": {"probe_at": probe_at}})
            return outage_from({**doc, "probe_at": probe_at})
        raise RuntimeError(f"the outage record of {practice_id} could not be written")

    async def hold(self, practice_id: str, at: datetime, reason: str, held_by: str | None,
                   task_id: str | None, probe_at: datetime | None) -> PracticeOutage | None:
        fields = {"health": Health.HELD.value, "held_since": at, "reason": reason, "held_by": held_by,
                  "task_id": task_id, "probe_at": probe_at}
        if held_by is None:  # paypost's hold: of a failing practice, once
            doc = await self._c.find_one_and_update(
                {"_id": practice_id, "health": Health.FAILING.value}, {"$set": fields},
                return_document=ReturnDocument.AFTER)
            return outage_from(doc) if doc else None
        # By hand: whatever it was, it is held by this operator now (nothing is tried till released).
        try:
            doc = await self._c.find_one_and_update(
                {"_id": practice_id, "held_by": None}, {"$set": fields, "$setOnInsert": {"tries": 0}},
                upsert=True, return_document=ReturnDocument.AFTER)
        except DuplicateKeyError:
            return None  # held by hand already
        return outage_from(doc) if doc else None

    async def clear(self, practice_id: str, by_hand: bool) -> PracticeOutage | None:
        query: Doc = {"_id": practice_id} if by_hand else {"_id": practice_id, "held_by": None}
        doc = await self._c.find_one_and_delete(query)
        return outage_from(doc) if doc else None

