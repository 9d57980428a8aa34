"""Practices, their registered EHR patients, and patient mappings, in MongoDB."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ReturnDocument

from domain.posting import Integration
from infra.mongo import Collections, Doc


def _id(practice_id: str, other: str) -> str:
    return f"{practice_id}/{other}"


class MongoPracticeDirectory:
    """Practices and their ledger integrations."""

    def __init__(self, collections: Collections) -> None:
        self._practices = collections.practices
        self._patients = collections.ehr_patients

    async def integration(self, practice_id: str) -> Integration | None:
        doc = await self._practices.find_one({"_id": practice_id})
        if doc is None:
            return None
        ledger: dict[str, Any] = dict(doc.get("ledger") or {})
        kind = str(ledger.pop("kind", "builtin"))
        return Integration(practice_id=practice_id, kind=kind, enabled=bool(doc.get("enabled")), settings=ledger)

    async def put_practice(self, practice_id: str, name: str, ledger: Doc, enabled: bool, at: datetime) -> Doc:
        doc = await self._practices.find_one_and_update(
            {"_id": practice_id},
            {"$set": {"name": name, "ledger": ledger, "enabled": enabled, "updated_at": at},
             "$setOnInsert": {"created_at": at}},
            upsert=True, return_document=ReturnDocument.AFTER,
        )
        assert doc is not None
        return doc

    async def get_practice(self, practice_id: str) -> Doc | None:
        return await self._practices.find_one({"_id": practice_id})

    async def register_patient(self, practice_id: str, ehr_patient_id: str, at: datetime) -> bool:
        """Register a patient in the built-in ledger; True if new."""
        result = await self._patients.update_one(
            {"_id": _id(practice_id, ehr_patient_id)},
            {"$setOnInsert": {"practice_id": practice_id, "ehr_patient_id": ehr_patient_id, "registered_at": at}},
            upsert=True,
        )
        return result.upserted_id is not None

    async def patient_registered(self, practice_id: str, ehr_patient_id: str) -> bool:
        return await self._patients.count_documents({"_id": _id(practice_id, ehr_patient_id)}, limit=1) == 1


class MongoMappingStore:
    """(practice_id, patient_account_id) → the practice-management patient id."""

    def __init__(self, collections: Collections) -> None:
        self._c = collections.mappings

    async def get(self, practice_id: str, patient_account_id: str) -> str | None:
        doc = await self._c.find_one({"_id": _id(practice_id, patient_account_id)}, {"ehr_patient_id": 1})
        return doc["ehr_patient_id"] if doc else None

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
