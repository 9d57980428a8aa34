"""Notes and the assignee of a posting (contract section 8): entries of its audit trail.

Each is appended to the trail in the same write that changes the posting, marked for the sealer
(``infra/mongo/audit_seals.py``) as every other entry is, so notes join the sealed chain.
"""

from __future__ import annotations

from pymongo import ReturnDocument

from paypost.domain.posting import AuditEntry, PostingKey
from paypost.infra.mongo.database import Collections
from paypost.infra.mongo.postings import audit_doc, doc_id


class MongoPostingNotes:
    """The PostingNotes port on MongoDB."""

    def __init__(self, collections: Collections) -> None:
        self._c = collections.postings

    async def add_note(self, key: PostingKey, entry: AuditEntry) -> int | None:
        doc = await self._c.find_one_and_update(
            {"_id": doc_id(key)},
            {"$push": {"audit": audit_doc(entry)}, "$inc": {"notes_count": 1}},
            projection={"notes_count": 1}, return_document=ReturnDocument.AFTER)
        return int(doc["notes_count"]) if doc else None

    async def assign(self, key: PostingKey, assignee: str | None, entry: AuditEntry) -> bool:
        result = await self._c.update_one(
            {"_id": doc_id(key)},
            {"$push": {"audit": audit_doc(entry)}, "$set": {"assignee": assignee}})
        return result.matched_count == 1
