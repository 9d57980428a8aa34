"""Live-feed tickets in MongoDB (contract section 12): each kept by its hash with the hash of the key's
token, taken with one find-and-delete so that any API process accepts it, and only once."""

from __future__ import annotations

from datetime import datetime

from pymongo import ASCENDING, IndexModel

from paypost.infra.mongo.database import CODECS, Collections


class MongoFeedTickets:
    """The FeedTickets port. An unused ticket lapses by itself (a TTL index; reads never rely on it)."""

    def __init__(self, collections: Collections) -> None:
        self._tickets = collections.db.get_collection("feed_tickets", codec_options=CODECS)

    async def ensure_indexes(self) -> None:
        await self._tickets.create_indexes([IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0)])

    async def issue(self, ticket_hash: str, token_hash: str, expires_at: datetime) -> None:
        await self._tickets.insert_one({"_id": ticket_hash, "token_hash": token_hash, "expires_at": expires_at})

    async def redeem(self, ticket_hash: str, at: datetime) -> str | None:
        doc = await self._tickets.find_one_and_delete({"_id": ticket_hash, "expires_at": {"$gt": at}})
        return str(doc["token_hash"]) if doc is not None else None
