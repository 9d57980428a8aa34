"""Save Changes operations: the selection, and each item's result as commands are applied."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from pymongo import ASCENDING, IndexModel, UpdateOne

from paypost.domain.operations import CLAIMED, Canary, CanaryPhase, CanaryPlan, ClearOrder, OperationItem
from paypost.domain.rules import ItemResult
from paypost.infra.mongo.database import Collections, Doc


def plan_doc(plan: CanaryPlan) -> Doc:
    return {"size": plan.size, "payment_ids": list(plan.payment_ids), "rest_retry": list(plan.rest_retry),
            "rest_clear": [{"payment_id": c.payment_id, "reason": c.reason, "manual_reference": c.manual_reference}
                           for c in plan.rest_clear],
            "deadline": plan.deadline}


def canary_from(op: Doc) -> Canary:
    canary = op["canary"]
    plan = CanaryPlan(payment_ids=tuple(canary["payment_ids"]), rest_retry=tuple(canary["rest_retry"]),
                      rest_clear=tuple(ClearOrder(c["payment_id"], c.get("reason", ""), c.get("manual_reference"))
                                       for c in canary["rest_clear"]),
                      deadline=canary["deadline"])
    return Canary(operation_id=op["_id"], practice_id=op["practice_id"], actor=op["actor"], plan=plan,
                  phase=CanaryPhase(canary["phase"]), message=canary.get("message"))


class MongoOperationStore:
    """The OperationStore port on MongoDB: an operation's items, and one result document per item."""

    def __init__(self, collections: Collections) -> None:
        self._ops = collections.operations
        self._results = collections.db.get_collection("operation_results",
                                                      codec_options=collections.postings.codec_options)

    async def create(self, operation_id: str, practice_id: str, actor: str, items: Sequence[OperationItem],
                     at: datetime, canary: CanaryPlan | None = None) -> None:
        doc: Doc = {"_id": operation_id, "practice_id": practice_id, "actor": actor,
                    "items": [{"payment_id": i.payment_id, "action": i.action} for i in items],
                    "total": len(items), "created_at": at}
        if canary is not None:
            doc["canary"] = {**plan_doc(canary), "phase": CanaryPhase.WAITING.value}
            doc["canary_undecided"] = True
        await self._ops.insert_one(doc)

    async def canaries_to_advance(self, now: datetime, stale_after: float, limit: int = 100) -> list[Canary]:
        """Canaries waiting for a verdict, or whose verdict's claim went stale (its process stopped
        before carrying it out)."""
        stale = now - timedelta(seconds=stale_after)
        docs = await self._ops.find(
            {"canary_undecided": True,
             "$or": [{"canary.phase": CanaryPhase.WAITING.value},
                     {"canary.phase": {"$in": sorted(p.value for p in CLAIMED)}, "canary.claimed_at": {"$lt": stale}}]},
            {"items": 0}).limit(limit).to_list(None)
        return [canary_from(d) for d in docs]

    async def claim_canary(self, operation_id: str, phase: CanaryPhase, to: CanaryPhase, message: str | None,
                           at: datetime, claimed_before: datetime | None = None) -> bool:
        """Move a canary from ``phase`` to ``to`` (a stale claim: only if it was claimed before
        ``claimed_before``); True for the one call that moved it."""
        stale = {} if claimed_before is None else {"canary.claimed_at": {"$lt": claimed_before}}
        result = await self._ops.update_one(
            {"_id": operation_id, "canary.phase": phase.value, **stale},
            {"$set": {"canary.phase": to.value, "canary.claimed_at": at,
                      **({"canary.message": message} if message is not None else {})}})
        return result.modified_count == 1

    async def recorded(self, operation_id: str, action: str, payment_ids: Sequence[str]) -> set[str]:
        """Which of these items have their result kept (by _id: the canary's few, not the whole operation)."""
        ids = [f"{operation_id}\x00{action}\x00{p}" for p in payment_ids]
        return {d["payment_id"] async for d in self._results.find({"_id": {"$in": ids}}, {"payment_id": 1})}

    async def finish_canary(self, operation_id: str, phase: CanaryPhase, to: CanaryPhase) -> None:
        """The verdict is carried out: the canary leaves the ones to advance."""
        await self._ops.update_one({"_id": operation_id, "canary.phase": phase.value},
                                   {"$set": {"canary.phase": to.value}, "$unset": {"canary_undecided": ""}})

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

    async def cancel(self, operation_id: str, by: str, at: datetime) -> bool:
        """Mark the operation cancelled, once: every API process and worker reads it here."""
        result = await self._ops.update_one({"_id": operation_id, "cancelled_at": {"$exists": False}},
                                            {"$set": {"cancelled_at": at, "cancelled_by": by}})
        return result.modified_count == 1

    async def cancelled(self, operation_id: str) -> bool:
        return await self._ops.count_documents({"_id": operation_id, "cancelled_at": {"$exists": True}}, limit=1) > 0

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
        if op.get("cancelled_at") is not None and done >= total:
            status = "cancelled"  # the worker stopped: what it had not replayed is recorded as such
        canary = op.get("canary")
        return {"operation_id": operation_id, "practice_id": op["practice_id"], "actor": op["actor"],
                "status": status, "total": total, "done": done, "items": items,
                "cancelled": sum(1 for i in items if i["result"] == "cancelled"),
                "cancelled_at": op.get("cancelled_at"), "cancelled_by": op.get("cancelled_by"),
                "created_at": op["created_at"], "canary": canary,
                "message": canary.get("message") if canary else None}

    async def ensure_indexes(self) -> None:
        await self._results.create_index("operation_id")
        # Only the operations with a canary still to decide are in it.
        await self._ops.create_indexes([IndexModel(
            [("canary_undecided", ASCENDING)], name="canaries_undecided",
            partialFilterExpression={"canary_undecided": True})])
