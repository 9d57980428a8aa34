"""Settled merchant transfers, kept as published (reconciliation reads them)."""

from __future__ import annotations

from datetime import UTC, datetime

from infra.mongo import Collections
from schemas.messages import TransferSettled


class MongoTransferStore:
    def __init__(self, collections: Collections) -> None:
        self._c = collections.transfers

    async def settled(self, message: TransferSettled) -> None:
        """Keep a ``transfer.settled`` message; a later one for the same transfer replaces it."""
        await self._c.update_one(
            {"_id": f"{message.practice_id}/{message.merchant_transfer_id}"},
            {"$set": {
                "practice_id": message.practice_id,
                "merchant_transfer_id": message.merchant_transfer_id,
                "payment_ids": message.payment_ids,
                "refund_ids": message.refund_ids,
                "gross_amount": message.gross_amount,
                "fees_amount": message.fees_amount,
                "net_amount": message.net_amount,
                "currency": message.currency,
                "settled_at": message.settled_at,
                "event_id": message.event_id,
                "updated_at": datetime.now(UTC),
            }},
            upsert=True,
        )
