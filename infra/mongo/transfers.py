"""Settled merchant transfers and their reconciliation."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from pymongo import ASCENDING, DESCENDING, IndexModel

from paypost.domain.model import LoadStatus
from paypost.domain.reconciliation import Item, Reconciliation, expected_items, reconcile
from paypost.domain.transfers import SettledTransfer
from paypost.infra.mongo.database import Collections, Doc


def transfer_id(practice_id: str, merchant_transfer_id: str) -> str:
    return f"{practice_id}/{merchant_transfer_id}"


def transfer_from(doc: Doc) -> SettledTransfer:
    return SettledTransfer(
        practice_id=doc["practice_id"], merchant_transfer_id=doc["merchant_transfer_id"],
        payment_ids=tuple(doc["payment_ids"]), refund_ids=tuple(doc["refund_ids"]),
        gross_amount=doc["gross_amount"], fees_amount=doc["fees_amount"], net_amount=doc["net_amount"],
        currency=doc["currency"], settled_at=doc["settled_at"], event_id=doc["event_id"],
        reconciled_at=doc.get("reconciled_at"), reversal_ids=tuple(doc.get("reversal_ids") or ()),
    )


class MongoTransferStore:
    def __init__(self, collections: Collections) -> None:
        self._c = collections.transfers
        self._postings = collections.postings

    async def ensure_indexes(self) -> None:
        await self._c.create_indexes([
            IndexModel([("practice_id", ASCENDING), ("payment_ids", ASCENDING)]),
            IndexModel([("practice_id", ASCENDING), ("refund_ids", ASCENDING)]),
            IndexModel([("practice_id", ASCENDING), ("reversal_ids", ASCENDING)]),
            # The sweep's transfers not yet reconciled, newest first: read from the index, not by
            # walking and sorting every transfer the platform ever settled.
            IndexModel([("reconciled_at", ASCENDING), ("updated_at", DESCENDING)], name="unreconciled"),
        ])

    async def settled(self, transfer: SettledTransfer) -> None:
        """Keep a settled transfer; a later settlement of the same transfer replaces it."""
        await self._c.update_one(
            {"_id": transfer_id(transfer.practice_id, transfer.merchant_transfer_id)},
            {"$set": {
                "practice_id": transfer.practice_id,
                "merchant_transfer_id": transfer.merchant_transfer_id,
                "payment_ids": list(transfer.payment_ids),
                "refund_ids": list(transfer.refund_ids),
                "reversal_ids": list(transfer.reversal_ids),
                "gross_amount": transfer.gross_amount,
                "fees_amount": transfer.fees_amount,
                "net_amount": transfer.net_amount,
                "currency": transfer.currency,
                "settled_at": transfer.settled_at,
                "event_id": transfer.event_id,
                "updated_at": datetime.now(UTC),
            }, "$setOnInsert": {"reconciled_at": None}},
            upsert=True,
        )

    async def get(self, practice_id: str, merchant_transfer_id: str) -> SettledTransfer | None:
        doc = await self._c.find_one({"_id": transfer_id(practice_id, merchant_transfer_id)})
        return transfer_from(doc) if doc else None

    async def reconcile(self, transfer: SettledTransfer) -> Reconciliation:
        wanted = expected_items(transfer.payment_ids, transfer.refund_ids, transfer.reversal_ids)
        ids = [f"{transfer.practice_id}/{pid}" for pid, _ in wanted]
        found = {d["payment_id"]: d async for d in self._postings.find(
            {"_id": {"$in": ids}}, {"payment_id": 1, "load_status": 1, "amount": 1, "cleared.verified": 1})}
        items = [
            Item(pid, is_refund, LoadStatus(found[pid]["load_status"]) if pid in found else None,
                 found[pid].get("amount") if pid in found else None,
                 (found[pid].get("cleared") or {}).get("verified") if pid in found else None)
            for pid, is_refund in wanted
        ]
        return reconcile(items, transfer.gross_amount, transfer.fees_amount, transfer.net_amount)

    async def unreconciled_with_any(self, practice_id: str, posting_ids: Sequence[str]) -> list[SettledTransfer]:
        ids = list(posting_ids)
        docs = self._c.find({"practice_id": practice_id, "reconciled_at": None,
                             "$or": [{"payment_ids": {"$in": ids}}, {"refund_ids": {"$in": ids}},
                                     {"reversal_ids": {"$in": ids}}]})
        return [transfer_from(d) async for d in docs]

    async def unreconciled(self, limit: int) -> list[SettledTransfer]:
        docs = self._c.find({"reconciled_at": None}, sort=[("updated_at", DESCENDING)], limit=limit,
                            hint="unreconciled")
        return [transfer_from(d) async for d in docs]

    async def mark_reconciled(self, transfer: SettledTransfer, at: datetime) -> bool:
        result = await self._c.update_one(
            {"_id": transfer_id(transfer.practice_id, transfer.merchant_transfer_id), "reconciled_at": None},
            {"$set": {"reconciled_at": at}})
        return result.modified_count == 1
