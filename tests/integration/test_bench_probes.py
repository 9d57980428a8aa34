"""The bench's count of documents written reads a real mongod's ``metrics.document`` counters."""

from __future__ import annotations

import pytest

from paypost.bench.probes import DocumentsWritten
from paypost.infra.mongo.database import Collections

pytestmark = pytest.mark.integration


async def test_documents_written_counts_inserts_updates_and_deletes(collections: Collections) -> None:
    scratch = collections.db.get_collection("bench_probe")
    writes = DocumentsWritten(collections.db.client)
    await writes.start()
    await scratch.insert_many([{"_id": i} for i in range(3)])
    await scratch.update_many({"_id": {"$lt": 2}}, {"$set": {"seen": True}})
    await scratch.update_one({"_id": 2}, {"$set": {"seen": False}})
    await scratch.delete_one({"_id": 0})
    await scratch.update_one({"_id": 99}, {"$set": {"seen": True}})  # matches nothing: writes nothing
    assert await writes.since() == 3 + 3 + 1
