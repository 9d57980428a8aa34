"""Read side: the Merchant Transfers report, paged newest first, with a stable cursor."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime

import orjson
from pymongo import DESCENDING

from infra.mongo import Collections, Doc

ROW_FIELDS = {"message": 0, "audit": 0, "attempts": 0, "dead_letters": 0}


class BadCursor(ValueError):
    """A cursor that paypost did not hand out."""


@dataclass(frozen=True, slots=True)
class PostingFilter:
    practice_id: str | None = None
    status: str | None = None
    error_code: str | None = None
    merchant_transfer_id: str | None = None
    patient_account_id: str | None = None
    received_from: datetime | None = None
    received_to: datetime | None = None

    def query(self) -> Doc:
        q: Doc = {}
        if self.practice_id is not None:
            q["practice_id"] = self.practice_id
        if self.status is not None:
            q["load_status"] = self.status
        if self.error_code is not None:
            q["load_error.code"] = self.error_code
        if self.merchant_transfer_id is not None:
            q["merchant_transfer_id"] = self.merchant_transfer_id
        if self.patient_account_id is not None:
            q["patient_account_id"] = self.patient_account_id
        if self.received_from is not None or self.received_to is not None:
            span: Doc = {}
            if self.received_from is not None:
                span["$gte"] = self.received_from
            if self.received_to is not None:
                span["$lt"] = self.received_to
            q["received_at"] = span
        return q


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
    def __init__(self, collections: Collections) -> None:
        self._c = collections.postings

    async def page(self, where: PostingFilter, limit: int, cursor: str | None) -> tuple[list[Doc], str | None]:
        query = where.query()
        if cursor:
            at, key = decode_cursor(cursor)
            after: Doc = {"$or": [{"received_at": {"$lt": at}}, {"received_at": at, "_id": {"$lt": key}}]}
            query = {"$and": [query, after]} if query else after
        docs = await self._c.find(query, ROW_FIELDS).sort(
            [("received_at", DESCENDING), ("_id", DESCENDING)]
        ).limit(limit + 1).to_list(None)
        next_cursor = encode_cursor(docs[limit - 1]) if len(docs) > limit else None
        return docs[:limit], next_cursor

    async def one(self, practice_id: str, payment_id: str) -> Doc | None:
        return await self._c.find_one({"_id": f"{practice_id}/{payment_id}"}, {"message": 0, "dead_letters": 0})
