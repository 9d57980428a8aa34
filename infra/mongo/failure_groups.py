"""Failure groups in MongoDB (contract section 8), kept current by the writes that change postings.

The write that makes a posting FAILED stores its group (``paypost.domain.triage.failure_group``) on it;
every write that takes it out of FAILED unsets it. Only FAILED postings are in the partial index
on (practice_id, group_id), so the groups are an aggregation over the FAILED postings alone (a
small fraction of a million), read through that index: nothing is counted from every posting.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pymongo import ASCENDING, IndexModel, UpdateOne

from paypost.domain.access import Scope
from paypost.domain.load_errors import LoadError, LoadErrorCode
from paypost.domain.model import LoadStatus
from paypost.domain.overview import PracticeOverview
from paypost.domain.triage import FailureGroup, FailureGroupKey, failure_group, largest_first
from paypost.infra.mongo.database import Collections, Doc

GROUP_INDEX = "failure_groups"
# A posting without a group, asked so that the group index finds it by its keys alone: missing, its
# group is null there, and a bound on the index's first field (every practice id is a string) lets
# the null bound on the second apply. Asked as "$exists: false" alone, every FAILED posting is read.
WITHOUT_A_GROUP: Doc = {"practice_id": {"$gte": ""}, "$and": [{"group_id": None}, {"group_id": {"$exists": False}}]}
# The overview of a key's practices (issue 30) reads the FAILED postings by practice through the same
# partial index as the groups: only FAILED postings are read, never the rest of the collection.
OVERVIEW_INDEX = GROUP_INDEX
# What a posting leaving FAILED drops (an $unset).
LEFT_FAILED: Doc = {"group_id": "", "group_cause": "", "failed_at": ""}


def group_fields(practice_id: str, error: LoadError | None, patient_account_id: str | None,
                 refunded_payment_id: str | None, at: datetime) -> Doc:
    """The fields a FAILED posting carries for its failure group (a $set of the write that fails it)."""
    if error is None:
        return {}
    group = failure_group(practice_id, error, patient_account_id, refunded_payment_id)
    return {"group_id": group.group_id, "group_cause": group.cause, "failed_at": at}


def error_from(doc: Doc | None) -> LoadError | None:
    if not doc:
        return None
    return LoadError(code=LoadErrorCode(doc["code"]), message=doc["message"], fix=doc["fix"])


def group_index() -> IndexModel:
    return IndexModel([("practice_id", ASCENDING), ("group_id", ASCENDING)], name=GROUP_INDEX,
                      partialFilterExpression={"load_status": LoadStatus.FAILED.value})


def overview_pipeline(scope: Scope, limit: int, offset: int, practices: str, outages: str, alerts: str) -> list[Doc]:
    """One aggregation over the FAILED postings (run with ``hint=OVERVIEW_INDEX``) that takes in the
    practices set up, their systems' holds and their open alerts, sorted and paged in the database."""
    in_scope = _practices(None, scope)
    by_id: Doc = {} if scope.practices is None else {"_id": {"$in": sorted(scope.practices)}}
    return [
        {"$match": {**in_scope, "load_status": LoadStatus.FAILED.value}},
        {"$project": {"_id": 0, "practice_id": 1, "failed_at": 1, "amount": 1}},
        {"$group": {"_id": "$practice_id", "failed": {"$sum": 1}, "amount": {"$sum": "$amount"},
                    "oldest": {"$min": "$failed_at"}}},
        {"$unionWith": {"coll": practices, "pipeline": [
            {"$match": by_id}, {"$project": {"name": 1, "enabled": 1}}]}},
        {"$unionWith": {"coll": outages, "pipeline": [{"$match": by_id}, {"$project": {"health": 1}}]}},
        {"$unionWith": {"coll": alerts, "pipeline": [
            {"$match": {**in_scope, "open": True}}, {"$project": {"_id": 0, "practice_id": 1}},
            {"$group": {"_id": "$practice_id", "open_alerts": {"$sum": 1}}}]}},
        {"$group": {"_id": "$_id", "failed": {"$sum": "$failed"}, "amount": {"$sum": "$amount"},
                    "oldest": {"$min": "$oldest"}, "name": {"$max": "$name"}, "enabled": {"$max": "$enabled"},
                    "health": {"$max": "$health"}, "open_alerts": {"$sum": "$open_alerts"}}},
        {"$sort": {"failed": -1, "amount": -1, "_id": 1}},
        {"$facet": {"items": [{"$skip": offset}, {"$limit": limit}], "total": [{"$count": "n"}]}},
    ]


def _practices(practice_id: str | None, scope: Scope) -> Doc:
    if practice_id is not None:
        return {"practice_id": practice_id if scope.covers(practice_id) else {"$in": []}}
    return {} if scope.practices is None else {"practice_id": {"$in": sorted(scope.practices)}}


def groups_pipeline(practice_id: str | None, scope: Scope) -> list[Doc]:
    """The aggregation of the groups (run with ``hint=GROUP_INDEX``)."""
    match: Doc = {**_practices(practice_id, scope), "load_status": LoadStatus.FAILED.value}
    return [
        {"$match": match},
        {"$group": {"_id": {"practice_id": "$practice_id", "group_id": "$group_id"},
                    "error_code": {"$first": "$load_error.code"}, "cause": {"$first": "$group_cause"},
                    "count": {"$sum": 1}, "amount": {"$sum": "$amount"},
                    "first": {"$min": "$failed_at"}, "last": {"$max": "$failed_at"}}},
    ]


class MongoFailureGroups:
    """The FailureGroupReader port: the groups of FAILED postings, read through their partial index."""

    def __init__(self, collections: Collections) -> None:
        self._c = collections.postings
        self._collections = collections

    async def ensure_indexes(self) -> None:
        await self._c.create_indexes([group_index()])
        await self.backfill()

    async def backfill(self, batch: int = 1000) -> int:
        """Give its group to each FAILED posting written before groups were kept (once, at start).

        One pass through the FAILED postings' keys in the group index (a posting without a group is
        under null there), fetching only those without one: a start reads no posting already grouped,
        however many an office leaves FAILED (the filter skipped them by reading each before)."""
        done, writes = 0, []
        cursor = self._c.find(
            {"load_status": LoadStatus.FAILED.value, **WITHOUT_A_GROUP},
            {"practice_id": 1, "load_error": 1, "patient_account_id": 1, "refunded_payment_id": 1, "updated_at": 1},
            hint=GROUP_INDEX, batch_size=batch)
        async for d in cursor:
            fields = group_fields(d["practice_id"], error_from(d.get("load_error")), d.get("patient_account_id"),
                                  d.get("refunded_payment_id"), d["updated_at"])
            # A posting without a Load Error is its own group, by code alone.
            writes.append(UpdateOne({"_id": d["_id"], "load_status": LoadStatus.FAILED.value,
                                     "group_id": {"$exists": False}},
                                    {"$set": fields or {"group_id": "", "group_cause": None,
                                                        "failed_at": d["updated_at"]}}))
            if len(writes) == batch:
                await self._c.bulk_write(writes, ordered=False)
                done, writes = done + len(writes), []
        if writes:
            await self._c.bulk_write(writes, ordered=False)
        return done + len(writes)

    async def groups(self, practice_id: str | None, scope: Scope) -> list[FailureGroup]:
        # By the partial index: only FAILED postings are read, never the rest of the collection.
        cursor = await self._c.aggregate(groups_pipeline(practice_id, scope), hint=GROUP_INDEX)
        found = []
        async for g in cursor:
            if g["error_code"] is None:
                continue  # a FAILED posting always has a Load Error; one that has none is not grouped
            amount = g["amount"]
            found.append(FailureGroup(
                key=FailureGroupKey(g["_id"]["practice_id"], LoadErrorCode(g["error_code"]), g["cause"]),
                count=g["count"], amount=amount if isinstance(amount, Decimal) else Decimal(amount or 0),
                first_failed_at=g["first"], last_failed_at=g["last"]))
        return largest_first(found)

    async def overview(self, scope: Scope, limit: int, offset: int) -> tuple[list[PracticeOverview], int]:
        """The PracticeOverviews port: one aggregation, sorted and paged in the database."""
        c = self._collections
        pipeline = overview_pipeline(scope, limit, offset, c.practices.name, c.outages.name, c.alerts.name)
        cursor = await self._c.aggregate(pipeline, hint=OVERVIEW_INDEX)
        [page] = await cursor.to_list(None)
        items = []
        for d in page["items"]:
            amount = d.get("amount")
            items.append(PracticeOverview(
                practice_id=d["_id"], name=d.get("name"), enabled=bool(d.get("enabled")),
                failed_count=int(d.get("failed") or 0),
                failed_amount=amount if isinstance(amount, Decimal) else Decimal(amount or 0),
                oldest_failed_at=d.get("oldest"), hold=d.get("health"), open_alerts=int(d.get("open_alerts") or 0)))
        total = page["total"][0]["n"] if page["total"] else 0
        return items, total
