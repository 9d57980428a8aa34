"""Calls with unknown keys per client address, in MongoDB: one document per address, counted with one
upsert, so every API process of one database shares the count (contract section 6's 429)."""

from __future__ import annotations

from datetime import datetime, timedelta

from pymongo import ASCENDING, IndexModel, ReturnDocument

from paypost.infra.mongo.database import CODECS, Collections


class MongoFailedKeyCounts:
    """The FailedKeyCounts port. A window begins at an address's first failed call; the document
    lapses (a TTL index) once its window has passed, so addresses are not kept for ever."""

    def __init__(self, collections: Collections) -> None:
        self._counts = collections.db.get_collection("failed_key_counts", codec_options=CODECS)

    async def ensure_indexes(self) -> None:
        # Removal only: the TTL monitor runs about once a minute, so reads never rely on it.
        await self._counts.create_indexes([IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0)])

    async def add(self, address: str, at: datetime, window: timedelta) -> tuple[int, datetime]:
        # One atomic pipeline update: a window that has ended (or none yet) starts again at ``at``.
        fresh = {"$lte": [{"$ifNull": ["$started", at - window]}, at - window]}
        doc = await self._counts.find_one_and_update(
            {"_id": address},
            [{"$set": {"count": {"$cond": [fresh, 1, {"$add": ["$count", 1]}]},
                       "started": {"$cond": [fresh, at, "$started"]}}},
             {"$set": {"expires_at": {"$add": ["$started", int(window.total_seconds() * 1000)]}}}],
            upsert=True, return_document=ReturnDocument.AFTER)
        assert doc is not None  # an upsert returning the document after it always has one
        return int(doc["count"]), doc["started"]
