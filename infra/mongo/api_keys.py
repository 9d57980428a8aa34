"""API keys in MongoDB: each kept with its token's SHA-256 only, and a trail of who made or revoked it."""

from __future__ import annotations

from datetime import datetime

from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument

from paypost.domain.access import ApiKey, Role, Scope
from paypost.infra.mongo.database import CODECS, Collections, Doc


def _key(doc: Doc) -> ApiKey:
    return ApiKey(
        key_id=doc["_id"], name=doc["name"], role=Role(doc["role"]), scope=Scope.of(doc["practices"]),
        created_at=doc["created_at"], created_by=doc["created_by"], expires_at=doc.get("expires_at"),
        revoked_at=doc.get("revoked_at"),
    )


class MongoApiKeyStore:
    """The ApiKeyStore port. Every call reads the database: a revocation holds at once, in every process."""

    def __init__(self, collections: Collections) -> None:
        self._keys = collections.db.get_collection("api_keys", codec_options=CODECS)
        self._trail = collections.db.get_collection("api_key_trail", codec_options=CODECS)

    async def ensure_indexes(self) -> None:
        await self._keys.create_indexes([IndexModel([("token_sha256", ASCENDING)], unique=True)])
        await self._trail.create_indexes([IndexModel([("at", DESCENDING)])])

    async def add(self, key: ApiKey, token_hash: str) -> None:
        await self._keys.insert_one({
            "_id": key.key_id, "token_sha256": token_hash, "name": key.name, "role": key.role.value,
            "practices": key.scope.names(), "created_at": key.created_at, "created_by": key.created_by,
            "expires_at": key.expires_at, "revoked_at": None,
        })

    async def by_hash(self, token_hash: str) -> tuple[ApiKey, str] | None:
        doc = await self._keys.find_one({"token_sha256": token_hash})
        return (_key(doc), doc["token_sha256"]) if doc else None

    async def get(self, key_id: str) -> ApiKey | None:
        doc = await self._keys.find_one({"_id": key_id})
        return _key(doc) if doc else None

    async def every(self) -> list[ApiKey]:
        return [_key(d) async for d in self._keys.find({}, {"token_sha256": 0}).sort("created_at", DESCENDING)]

    async def revoke(self, key_id: str, at: datetime) -> ApiKey | None:
        doc = await self._keys.find_one_and_update(
            {"_id": key_id, "revoked_at": None}, {"$set": {"revoked_at": at}}, return_document=ReturnDocument.AFTER)
        return _key(doc) if doc else None

    async def record(self, at: datetime, actor: str, action: str, key: ApiKey) -> None:
        await self._trail.insert_one({"at": at, "actor": actor, "action": action, "key_id": key.key_id,
                                      "name": key.name, "role": key.role.value, "practices": key.scope.names()})

    async def trail(self, limit: int = 500) -> list[Doc]:
        return await self._trail.find({}, {"_id": 0}).sort("at", DESCENDING).limit(limit).to_list(None)
