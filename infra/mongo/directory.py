"""Practices, their registered EHR patients, and patient mappings, in MongoDB."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pymongo import ReturnDocument

from paypost.domain.access import Scope
from paypost.domain.integrations import SEALED, Practice
from paypost.domain.posting import Integration
from paypost.infra.batching import SharedRead, finder
from paypost.infra.ledgers.secrets import SecretBox
from paypost.infra.mongo.database import Collections, Doc


def practice_from(doc: Doc) -> Practice:
    return Practice(practice_id=doc["_id"], name=doc.get("name", ""), ledger=dict(doc.get("ledger") or {}),
                    enabled=bool(doc.get("enabled")))


def _id(practice_id: str, other: str) -> str:
    return f"{practice_id}/{other}"


class MongoPracticeDirectory:
    """Practices and their ledger integrations.

    Two small caches keep round trips off the posting path: a practice's integration for
    ``integration_ttl`` seconds (a change made through this process applies at once; one made
    through another paypost process within that time), and the patients known to be registered
    (a registration is never withdrawn, so a positive answer never goes stale).
    """

    def __init__(self, collections: Collections, integration_ttl: float = 2.0) -> None:
        self._practices = collections.practices
        self._patients = collections.ehr_patients
        self._ttl = integration_ttl
        self._integrations: dict[str, tuple[float, Integration | None]] = {}
        # A whole batch asks at once when an entry expires, or for a patient not seen yet: one
        # read answers them all.
        self._integration_reads = SharedRead(self._read_integration)
        self._registered: OrderedDict[str, None] = OrderedDict()
        self._registration_reads = SharedRead(self._read_registered)

    async def integration(self, practice_id: str) -> Integration | None:
        cached = self._integrations.get(practice_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        return await self._integration_reads(practice_id)

    async def _read_integration(self, practice_id: str) -> Integration | None:
        doc = await self._practices.find_one({"_id": practice_id})
        found = None
        if doc is not None:
            ledger: dict[str, Any] = dict(doc.get("ledger") or {})
            kind = str(ledger.pop("kind", "builtin"))
            found = Integration(practice_id=practice_id, kind=kind, enabled=bool(doc.get("enabled")), settings=ledger)
        self._integrations[practice_id] = (time.monotonic() + self._ttl, found)
        return found

    async def put_practice(self, practice_id: str, name: str, ledger: Doc, enabled: bool,
                           at: datetime) -> Practice:
        doc = await self._practices.find_one_and_update(
            {"_id": practice_id},
            {"$set": {"name": name, "ledger": ledger, "enabled": enabled, "updated_at": at},
             "$setOnInsert": {"created_at": at}},
            upsert=True, return_document=ReturnDocument.AFTER,
        )
        assert doc is not None
        self._integrations.pop(practice_id, None)
        return practice_from(doc)

    async def get_practice(self, practice_id: str) -> Practice | None:
        doc = await self._practices.find_one({"_id": practice_id})
        return practice_from(doc) if doc is not None else None

    async def list_practices(self, scope: Scope) -> list[Practice]:
        query: Doc = {} if scope.practices is None else {"_id": {"$in": sorted(scope.practices)}}
        docs = self._practices.find(query, {"name": 1, "enabled": 1, "ledger": 1}).sort("_id", 1)
        return [practice_from(d) async for d in docs]

    async def register_patient(self, practice_id: str, ehr_patient_id: str, at: datetime) -> bool:
        """Register a patient in the built-in ledger; True if new."""
        result = await self._patients.update_one(
            {"_id": _id(practice_id, ehr_patient_id)},
            {"$setOnInsert": {"practice_id": practice_id, "ehr_patient_id": ehr_patient_id, "registered_at": at}},
            upsert=True,
        )
        self._remember(_id(practice_id, ehr_patient_id))  # registered now, and never withdrawn
        return result.upserted_id is not None

    async def patient_registered(self, practice_id: str, ehr_patient_id: str) -> bool:
        key = _id(practice_id, ehr_patient_id)
        if key in self._registered:
            return True
        return await self._registration_reads(key)

    async def _read_registered(self, key: str) -> bool:
        if await self._patients.count_documents({"_id": key}, limit=1) != 1:
            return False
        self._remember(key)
        return True

    def _remember(self, key: str) -> None:
        self._registered[key] = None
        if len(self._registered) > 200_000:
            self._registered.popitem(last=False)


class MongoSealedSecrets:
    """The practices' stored secrets (``ledger.auth.sealed``), sealed again on a key rotation."""

    def __init__(self, collections: Collections, keys: str) -> None:
        self._practices = collections.practices
        self._keys = keys  # PAYPOST_SECRET_KEY, read only when a rotation asks (a bad key fails only that)

    async def reseal_all(self) -> int:
        """Seal every practice's stored secret again with the first key; how many."""
        box = SecretBox(self._keys)
        resealed = 0
        async for doc in self._practices.find({f"ledger.auth.{SEALED}": {"$exists": True}}):
            sealed = doc["ledger"]["auth"][SEALED]
            again = box.reseal(sealed)
            result = await self._practices.update_one(
                {"_id": doc["_id"], f"ledger.auth.{SEALED}": sealed}, {"$set": {f"ledger.auth.{SEALED}": again}})
            resealed += result.modified_count
        return resealed


class MongoMappingStore:
    """(practice_id, patient_account_id) → the practice-management patient id."""

    def __init__(self, collections: Collections) -> None:
        self._c = collections.mappings
        self._finds = finder(self._c, {"ehr_patient_id": 1})

    async def get(self, practice_id: str, patient_account_id: str) -> str | None:
        doc = await self._finds.submit(_id(practice_id, patient_account_id))
        return doc["ehr_patient_id"] if doc else None

    async def get_many(self, accounts: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        wanted = {_id(practice_id, account): (practice_id, account) for practice_id, account in accounts}
        if not wanted:
            return {}
        found = self._c.find({"_id": {"$in": list(wanted)}}, {"ehr_patient_id": 1})
        return {wanted[d["_id"]]: d["ehr_patient_id"] async for d in found}

    async def put(
        self, practice_id: str, patient_account_id: str, ehr_patient_id: str, source: str, at: datetime
    ) -> str | None:
        """Enter or correct a mapping; returns the id it held before (None if new)."""
        before = await self._c.find_one_and_update(
            {"_id": _id(practice_id, patient_account_id)},
            {"$set": {"practice_id": practice_id, "patient_account_id": patient_account_id,
                      "ehr_patient_id": ehr_patient_id, "source": source, "updated_at": at}},
            upsert=True, return_document=ReturnDocument.BEFORE,
        )
        return before["ehr_patient_id"] if before else None
