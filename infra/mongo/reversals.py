"""What refunds and reversals took back from each payment, kept on the payment's own posting.

``reversed_total`` and ``reversals: [{id, amount}]`` live on the payment's document and change
together in one conditional write (``paypost.domain.reversals.may_take`` as a filter): two partial
refunds of one payment counted at the same moment, on two workers, are two writes to one document,
and the second is tested against what the first left. A posting counted once is never counted
again (its id is in ``reversals``), so a redelivery after a crash finds its count and goes on.
"""

from __future__ import annotations

from decimal import Decimal

from bson.decimal128 import Decimal128
from pymongo import ReturnDocument

from paypost.domain.model import LoadStatus
from paypost.domain.posting import PostingKey
from paypost.infra.mongo.database import Collections, Doc
from paypost.infra.mongo.postings import doc_id

_ZERO = Decimal128("0")
_TOTAL: Doc = {"$ifNull": ["$reversed_total", _ZERO]}


def _counted(doc: Doc | None, posting_id: str) -> Decimal | None:
    for item in (doc or {}).get("reversals") or []:
        if item["id"] == posting_id:
            amount: Decimal = item["amount"]
            return amount
    return None


class MongoPaymentBalances:
    """The PaymentBalances port on the postings collection."""

    def __init__(self, collections: Collections) -> None:
        self._c = collections.postings

    async def take(self, payment: PostingKey, posting_id: str, amount: Decimal | None) -> Decimal | None:
        # A payment's posting is LOADED for ever once it is: only then is anything counted against it.
        mine = {"_id": doc_id(payment), "load_status": LoadStatus.LOADED.value, "reversals.id": {"$ne": posting_id}}
        projection = {"reversals": {"$elemMatch": {"id": posting_id}}}
        if amount is None:  # a void: all that is left, whatever that is when this write runs
            left: Doc = {"$subtract": ["$amount", _TOTAL]}
            doc = await self._c.find_one_and_update(
                {**mine, "$expr": {"$gt": ["$amount", _TOTAL]}},
                [{"$set": {"reversals": {"$concatArrays": [{"$ifNull": ["$reversals", []]},
                                                           [{"id": posting_id, "amount": left}]]},
                           "reversed_total": "$amount"}}],
                projection=projection, return_document=ReturnDocument.AFTER)
        else:
            doc = await self._c.find_one_and_update(
                {**mine, "$expr": {"$lte": [{"$add": [_TOTAL, Decimal128(amount)]}, "$amount"]}},
                {"$inc": {"reversed_total": Decimal128(amount)},
                 "$push": {"reversals": {"id": posting_id, "amount": Decimal128(amount)}}},
                projection=projection, return_document=ReturnDocument.AFTER)
        if doc is None:  # counted before (a redelivery), or it would take back more than is left
            doc = await self._c.find_one({"_id": doc_id(payment)}, projection)
        return _counted(doc, posting_id)

    async def give_back(self, payment: PostingKey, posting_id: str) -> None:
        mine: Doc = {"$filter": {"input": "$reversals", "cond": {"$eq": ["$$this.id", posting_id]}}}
        await self._c.update_one(
            {"_id": doc_id(payment), "reversals.id": posting_id},
            [{"$set": {"reversed_total": {"$subtract": [_TOTAL, {"$sum": {"$map": {"input": mine,
                                                                                  "in": "$$this.amount"}}}]},
                       "reversals": {"$filter": {"input": "$reversals",
                                                 "cond": {"$ne": ["$$this.id", posting_id]}}}}}])

    async def taken(self, payment: PostingKey) -> tuple[Decimal, list[tuple[str, Decimal]]] | None:
        doc = await self._c.find_one({"_id": doc_id(payment)}, {"amount": 1, "reversals": 1})
        if doc is None or doc.get("amount") is None:
            return None
        return doc["amount"], [(r["id"], r["amount"]) for r in doc.get("reversals") or []]
