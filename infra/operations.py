"""Save Changes operations: the selection, and each item's result as commands are applied."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pymongo import UpdateOne

from domain.rules import ItemResult
from infra.mongo import Collections, Doc


class MongoOperationStore:
    """The OperationStore port on MongoDB: an operation's items, and one result document per item."""

    def __init__(self, collections: Collections) -> None:
        self._ops = collections.operations
        self._results = collections.db.get_collection("operation_results",
                                                      codec_options=collections.postings.codec_options)

    async def create(self, operation_id: str, practice_id: str, actor: str, items: list[dict[str, str]],
                     at: datetime) -> None:
        await self._ops.insert_one({"_id": operation_id, "practice_id": practice_id, "actor": actor,
                                    "items": items, "total": len(items), "created_at": at})

    async def discard(self, operation_id: str) -> None:
        await self._ops.delete_one({"_id": operation_id})

    async def record(self, operation_id: str, results: Sequence[ItemResult], at: datetime) -> None:
        """Keep each item's result; writing the same result again changes nothing."""
        if not results:
            return
        await self._results.bulk_write([
            UpdateOne(
                {"_id": f"{operation_id}\x00{r.action}\x00{r.payment_id}"},
                {"$setOnInsert": {"operation_id": operation_id, "payment_id": r.payment_id, "action": r.action,
                                  "result": r.result, "message": r.message, "at": at}},
                upsert=True,
            )
            for r in results
        ], ordered=False)

    async def get(self, operation_id: str) -> Doc | None:
        op = await self._ops.find_one({"_id": operation_id})
        if op is None:
            return None
        results = {(d["action"], d["payment_id"]): d
                   async for d in self._results.find({"operation_id": operation_id})}
        items = []
        for item in op["items"]:
            found = results.get((item["action"], item["payment_id"]))
            items.append({"payment_id": item["payment_id"], "action": item["action"],
                          "result": found["result"] if found else None,
                          "message": found["message"] if found else None})
        done = sum(1 for i in items if i["result"] is not None)
        total = op["total"]
        status = "completed" if done >= total else ("running" if done else "pending")
        return {"operation_id": operation_id, "practice_id": op["practice_id"], "actor": op["actor"],
                "status": status, "total": total, "done": done, "items": items,
                "created_at": op["created_at"]}

    async def ensure_indexes(self) -> None:
        await self._results.create_index("operation_id")
