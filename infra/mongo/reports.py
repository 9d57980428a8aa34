"""Read side: the Merchant Transfers report, paged newest first, with a stable cursor."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from decimal import Decimal

import orjson
from pymongo import DESCENDING

from paypost.domain.errors import BadCursor
from paypost.domain.model import LoadStatus
from paypost.domain.ports.postings import PostingFilter, StatusTotal
from paypost.domain.posting import PostingKey
from paypost.infra.mongo.database import Collections, Doc
from paypost.infra.mongo.postings import doc_id

ROW_FIELDS = {"message": 0, "audit": 0, "attempts": 0, "dead_letters": 0}


def _practices(where: PostingFilter) -> Doc:
    """The practice filter within the caller's scope (out of scope: nothing, whatever else is asked)."""
    scope = where.scope
    if where.practice_id is not None:
        return {"practice_id": where.practice_id if scope.covers(where.practice_id) else {"$in": []}}
    return {} if scope.practices is None else {"practice_id": {"$in": sorted(scope.practices)}}


def query_of(where: PostingFilter) -> Doc:
    """The report's filters as a MongoDB query (each is an equality or a range the indexes serve)."""
    q: Doc = _practices(where)
    if where.status is not None:
        q["load_status"] = where.status.value
    if where.error_code is not None:
        q["load_error.code"] = where.error_code.value
    if where.merchant_transfer_id is not None:
        q["merchant_transfer_id"] = where.merchant_transfer_id
    if where.patient_account_id is not None:
        q["patient_account_id"] = where.patient_account_id
    if where.received_from is not None or where.received_to is not None:
        span: Doc = {}
        if where.received_from is not None:
            span["$gte"] = where.received_from
        if where.received_to is not None:
            span["$lt"] = where.received_to
        q["received_at"] = span
    return q


def summary_pipeline(where: PostingFilter) -> list[Doc]:
    """Count and amount per Load Status: the match is the report's (served by the practice and
    received-at index), and only the two fields summed are read from each posting."""
    return [
        {"$match": query_of(where)},
        {"$group": {"_id": "$load_status", "count": {"$sum": 1}, "amount": {"$sum": "$amount"}}},
    ]


def encode_cursor(doc: Doc) -> str:
    raw = orjson.dumps([doc["received_at"].isoformat(), doc["_id"]])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, key = orjson.loads(raw)
        return datetime.fromisoformat(at), str(key)
    except (ValueError, TypeError, orjson.JSONDecodeError) as exc:
        raise BadCursor("cursor is not one paypost handed out") from exc


class PostingReport:
    """The PostingReader port on MongoDB."""

    def __init__(self, collections: Collections) -> None:
        self._c = collections.postings

    async def page(self, where: PostingFilter, limit: int, cursor: str | None) -> tuple[list[Doc], str | None]:
        query = query_of(where)
        if cursor:
            at, key = decode_cursor(cursor)
            after: Doc = {"$or": [{"received_at": {"$lt": at}}, {"received_at": at, "_id": {"$lt": key}}]}
            query = {"$and": [query, after]} if query else after
        docs = await self._c.find(query, ROW_FIELDS).sort(
            [("received_at", DESCENDING), ("_id", DESCENDING)]
        ).limit(limit + 1).to_list(None)
        next_cursor = encode_cursor(docs[limit - 1]) if len(docs) > limit else None
        return docs[:limit], next_cursor

    async def every_row(self, where: PostingFilter, batch: int = 1000) -> AsyncIterator[Doc]:
        """Every row the filter selects, newest first, ``batch`` documents per round trip (never all at once)."""
        cursor = self._c.find(query_of(where), ROW_FIELDS).sort(
            [("received_at", DESCENDING), ("_id", DESCENDING)]).batch_size(batch)
        try:
            async for doc in cursor:
                yield doc
        finally:
            await cursor.close()

    async def one(self, key: PostingKey) -> Doc | None:
        doc = await self._c.find_one({"_id": doc_id(key)}, {"message": 0, "dead_letters": 0})
        if doc is not None and doc.get("kind") == "payment":  # (1.2) what took money back from it
            doc["taken_back"] = await self._following(key.practice_id, [key.payment_id])
            disputes = [d["payment_id"] for d in doc["taken_back"] if d["kind"] == "chargeback"]
            if disputes:
                doc["taken_back"] += await self._following(key.practice_id, disputes)
        return doc

    async def _following(self, practice_id: str, ids: list[str]) -> list[Doc]:
        """The refunds and reversals that follow these postings (a won dispute follows its chargeback)."""
        return await self._c.find(
            {"practice_id": practice_id, "refunded_payment_id": {"$in": ids}},
            {"payment_id": 1, "kind": 1, "amount": 1, "currency": 1, "load_status": 1, "received_at": 1},
            sort=[("received_at", 1), ("_id", 1)], hint="refunds_by_payment").to_list(None)

    async def rows(self, practice_id: str, payment_ids: Sequence[str]) -> list[Doc]:
        return await self._c.find({"_id": {"$in": [doc_id(PostingKey(practice_id, p)) for p in payment_ids]}},
                                  ROW_FIELDS).to_list(None)

    async def summary(self, where: PostingFilter) -> list[StatusTotal]:
        cursor = await self._c.aggregate(summary_pipeline(where))
        totals = []
        async for g in cursor:
            amount = g["amount"]
            totals.append(StatusTotal(LoadStatus(g["_id"]), g["count"],
                                      amount if isinstance(amount, Decimal) else Decimal(amount or 0)))
        return sorted(totals, key=lambda t: list(LoadStatus).index(t.status))
