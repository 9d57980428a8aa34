"""Deposits, their matches to merchant transfers, a practice's month settings and closes, in MongoDB.

A transfer held by a deposit carries its ``deposit_id``; a deposit's decision and the claim of its
transfers are written in one transaction, over the revision of the deposit that was read. Two
workers matching the same deposit at once: one transaction commits, the other finds the revision
moved (or meets a write conflict) and writes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import DuplicateKeyError, OperationFailure

from paypost.domain.alerts import Alert, AlertKind, AlertState
from paypost.domain.deposits import (
    Decision,
    Deposit,
    DepositStatus,
    OpenTransfer,
    ReconciliationSettings,
)
from paypost.domain.periods import DEFAULT_TIME_ZONE, MonthFacts, PeriodRow, Total
from paypost.domain.ports import Record
from paypost.domain.posting import AuditEntry
from paypost.infra.batching import SharedRead
from paypost.infra.mongo.alerts import alert_from, outbox_fields, state_fields
from paypost.infra.mongo.database import Collections, Doc
from paypost.infra.mongo.postings import audit_doc

PERIOD_CLOSES = "period_closes"
WAITING = [DepositStatus.UNMATCHED.value, DepositStatus.AMBIGUOUS.value]
REVERSAL_TASK_KINDS = ("return", "chargeback")


def _id(practice_id: str, other: str) -> str:
    return f"{practice_id}/{other}"


def deposit_from(doc: Doc) -> Deposit:
    return Deposit(
        practice_id=doc["practice_id"], deposit_id=doc["deposit_id"], amount=doc["amount"], currency=doc["currency"],
        deposited_at=doc["deposited_at"], named_transfer_ids=tuple(doc.get("named_transfer_ids") or ()),
        bank_reference=doc.get("bank_reference"), status=DepositStatus(doc["status"]),
        merchant_transfer_ids=tuple(doc.get("merchant_transfer_ids") or ()), difference=doc.get("difference"),
        candidates=tuple(tuple(c) for c in doc.get("candidates") or ()),
        search_cut_short=bool(doc.get("search_cut_short")), revision=int(doc.get("revision", 0)),
        unmatched_by_hand=bool(doc.get("unmatched_by_hand")),
    )


def _open(doc: Doc) -> OpenTransfer:
    return OpenTransfer(doc["merchant_transfer_id"], doc["net_amount"], doc["settled_at"])


class _Conflict(Exception):
    """A transfer another deposit holds: the transaction is given up."""


class MongoDeposits:
    """Deposits and the practice's month settings (``PeriodSettings`` and ``DepositStore``)."""

    def __init__(self, collections: Collections, settings_ttl: float = 5.0) -> None:
        self._c = collections._c("deposits")
        self._transfers = collections.transfers
        self._practices = collections.practices
        self._client = collections.db.client
        # Every loaded posting asks for its practice's time zone (handlers/periods.py): kept for a few
        # seconds, as the practice's integration is (a change through this process applies at once).
        self._ttl = settings_ttl
        self._settings: dict[str, tuple[float, tuple[str, ReconciliationSettings]]] = {}
        # When an entry expires, the whole batch in hand asks at once: one read answers them all
        # (each asking for itself was one read a payment, every few seconds, at the burst's rate).
        self._settings_reads = SharedRead(self._read_settings)

    async def ensure_indexes(self) -> None:
        await self._c.create_indexes([
            IndexModel([("practice_id", ASCENDING), ("status", ASCENDING), ("deposited_at", ASCENDING)]),
            IndexModel([("practice_id", ASCENDING), ("deposited_at", ASCENDING)]),
        ])
        await self._transfers.create_indexes([
            IndexModel([("practice_id", ASCENDING), ("deposit_id", ASCENDING), ("settled_at", ASCENDING)],
                       name="open_by_settled"),
        ])

    # The practice's settings.

    async def settings_of(self, practice_id: str) -> tuple[str, ReconciliationSettings]:
        cached = self._settings.get(practice_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        return await self._settings_reads(practice_id)

    async def _read_settings(self, practice_id: str) -> tuple[str, ReconciliationSettings]:
        doc = await self._practices.find_one({"_id": practice_id}, {"time_zone": 1, "reconciliation": 1}) or {}
        rec = doc.get("reconciliation") or {}
        found = (doc.get("time_zone") or DEFAULT_TIME_ZONE,
                 ReconciliationSettings(Decimal(str(rec.get("amount_tolerance", "0.00"))), int(rec.get("days", 3))))
        self._settings[practice_id] = (time.monotonic() + self._ttl, found)
        return found

    async def set_settings(self, practice_id: str, time_zone: str, reconciliation: ReconciliationSettings) -> None:
        await self._practices.update_one({"_id": practice_id}, {"$set": {
            "time_zone": time_zone,
            "reconciliation": {"amount_tolerance": reconciliation.amount_tolerance, "days": reconciliation.days}}})
        self._settings.pop(practice_id, None)

    # Deposits.

    async def received(self, deposit: Deposit, at: datetime) -> bool:
        try:
            await self._c.insert_one({
                "_id": _id(deposit.practice_id, deposit.deposit_id), "practice_id": deposit.practice_id,
                "deposit_id": deposit.deposit_id, "amount": deposit.amount, "currency": deposit.currency,
                "deposited_at": deposit.deposited_at, "named_transfer_ids": list(deposit.named_transfer_ids),
                "bank_reference": deposit.bank_reference, "status": DepositStatus.UNMATCHED.value,
                "merchant_transfer_ids": [], "difference": None, "candidates": [], "revision": 0,
                "received_at": at, "updated_at": at,
                "audit": [audit_doc(AuditEntry(at, "paypost", "received"))],
            })
        except DuplicateKeyError:
            return False
        return True

    async def get(self, practice_id: str, deposit_id: str) -> Deposit | None:
        doc = await self._c.find_one({"_id": _id(practice_id, deposit_id)}, {"audit": 0})
        return deposit_from(doc) if doc else None

    async def audit_of(self, practice_id: str, deposit_id: str) -> list[Record]:
        doc = await self._c.find_one({"_id": _id(practice_id, deposit_id)}, {"audit": 1})
        return list((doc or {}).get("audit") or [])

    async def listed(self, practice_id: str, status: DepositStatus | None, limit: int) -> list[Deposit]:
        query: Doc = {"practice_id": practice_id}
        if status is not None:
            query["status"] = status.value
        docs = self._c.find(query, {"audit": 0}).sort([("deposited_at", -1), ("_id", -1)]).limit(limit)
        return [deposit_from(d) async for d in docs]

    async def open_transfers(self, practice_id: str, settled_from: datetime | None = None,
                             settled_until: datetime | None = None) -> list[OpenTransfer]:
        query: Doc = {"practice_id": practice_id, "deposit_id": None}
        bounds: Doc = {}
        if settled_from is not None:
            bounds["$gte"] = settled_from
        if settled_until is not None:
            bounds["$lte"] = settled_until
        if bounds:
            query["settled_at"] = bounds
        docs = self._transfers.find(query, {"merchant_transfer_id": 1, "net_amount": 1, "settled_at": 1})
        return [_open(d) async for d in docs]

    async def waiting(self, practice_id: str, deposited_from: datetime, deposited_until: datetime) -> list[Deposit]:
        docs = self._c.find({"practice_id": practice_id, "status": {"$in": WAITING},
                             "deposited_at": {"$gte": deposited_from, "$lte": deposited_until}}, {"audit": 0})
        return [deposit_from(d) async for d in docs.sort("deposited_at", 1)]

    async def decide(self, deposit: Deposit, decision: Decision, difference: Decimal | None,
                     audit: AuditEntry | None, at: datetime) -> bool:
        fields: Doc = {
            "status": decision.status.value, "merchant_transfer_ids": list(decision.merchant_transfer_ids),
            "candidates": [list(c) for c in decision.candidates], "search_cut_short": decision.cut_short,
            "difference": difference, "updated_at": at,
        }
        update: Doc = {"$set": fields, "$inc": {"revision": 1}}
        if audit is not None:
            update["$push"] = {"audit": audit_doc(audit)}
        ids = [_id(deposit.practice_id, t) for t in decision.merchant_transfer_ids]

        async def write(session: AsyncClientSession) -> bool:
            result = await self._c.update_one(
                {"_id": _id(deposit.practice_id, deposit.deposit_id), "revision": deposit.revision,
                 "status": deposit.status.value}, update, session=session)
            if result.modified_count != 1:
                return False
            if ids:
                claimed = await self._transfers.update_many(
                    {"_id": {"$in": ids}, "deposit_id": None}, {"$set": {"deposit_id": deposit.deposit_id}},
                    session=session)
                if claimed.modified_count != len(ids):
                    raise _Conflict
            return True

        return await self._transaction(write)

    async def unmatch(self, deposit: Deposit, audit: AuditEntry, at: datetime) -> bool:
        async def write(session: AsyncClientSession) -> bool:
            result = await self._c.update_one(
                {"_id": _id(deposit.practice_id, deposit.deposit_id), "revision": deposit.revision},
                {"$set": {"status": DepositStatus.UNMATCHED.value, "merchant_transfer_ids": [], "candidates": [],
                          "difference": None, "updated_at": at, "unmatched_by_hand": True},
                 "$inc": {"revision": 1}, "$push": {"audit": audit_doc(audit)}}, session=session)
            if result.modified_count != 1:
                return False
            await self._transfers.update_many(
                {"practice_id": deposit.practice_id, "deposit_id": deposit.deposit_id},
                {"$set": {"deposit_id": None}}, session=session)
            return True

        return await self._transaction(write)

    async def _transaction(self, write: Any) -> bool:
        async with self._client.start_session() as session:
            try:
                async with await session.start_transaction():
                    done: bool = await write(session)
                    if not done:
                        await session.abort_transaction()
                    return done
            except _Conflict:
                return False
            except OperationFailure as exc:
                if exc.has_error_label("TransientTransactionError"):
                    return False  # a concurrent write won (a write conflict): the caller reads again
                raise

    async def aging(self, practice_id: str) -> tuple[list[tuple[datetime, Decimal]], list[tuple[datetime, Decimal]]]:
        transfers = [(t.settled_at, t.net_amount) for t in await self.open_transfers(practice_id)]
        deposits = [(d["deposited_at"], d["amount"]) async for d in self._c.find(
            {"practice_id": practice_id, "status": {"$in": WAITING}}, {"deposited_at": 1, "amount": 1})]
        return transfers, deposits


class MongoPeriods:
    """A month's postings, transfers and deposits, and its close (``PeriodStore``)."""

    def __init__(self, collections: Collections) -> None:
        self._postings = collections.postings
        self._transfers = collections.transfers
        self._deposits = collections._c("deposits")
        self._alerts = collections.alerts
        # A close is a record sealed into the audit chain beside the access trail (infra/mongo/audit_seals.py,
        # kind ``period``): written once, never changed, ``sealed: false`` until a seal covers it.
        self._periods = collections._c(PERIOD_CLOSES)

    async def ensure_indexes(self) -> None:
        await self._postings.create_indexes([
            IndexModel([("practice_id", ASCENDING), ("occurred_at", ASCENDING)], name="by_month",
                       partialFilterExpression={"occurred_at": {"$exists": True}}),
        ])
        await self._transfers.create_indexes([
            IndexModel([("practice_id", ASCENDING), ("settled_at", ASCENDING)]),
        ])

    async def rows(self, practice_id: str, start: datetime, end: datetime) -> list[PeriodRow]:
        docs = await self._postings.find(
            {"practice_id": practice_id, "occurred_at": {"$gte": start, "$lt": end}},
            {"payment_id": 1, "kind": 1, "method": 1, "amount": 1, "currency": 1, "occurred_at": 1,
             "load_status": 1, "cleared.verified": 1, "merchant_transfer_id": 1, "late_for_closed_period": 1,
             "refunded_payment_id": 1, "reversed_payment_id": 1},
            hint="by_month").to_list(None)
        # A refund or reversal is counted under its payment's method (it has none of its own).
        originals = {d.get("refunded_payment_id") or d.get("reversed_payment_id") for d in docs if not d.get("method")}
        originals.discard(None)
        methods = {d["payment_id"]: d.get("method") async for d in self._postings.find(
            {"_id": {"$in": [_id(practice_id, str(p)) for p in originals]}}, {"payment_id": 1, "method": 1})} \
            if originals else {}
        return [PeriodRow(
            payment_id=d["payment_id"], kind=d.get("kind") or "payment",
            method=d.get("method") or methods.get(d.get("refunded_payment_id") or d.get("reversed_payment_id")),
            amount=d.get("amount") or Decimal("0.00"), currency=d.get("currency"), occurred_at=d["occurred_at"],
            load_status=d["load_status"], clear_verified=(d.get("cleared") or {}).get("verified"),
            merchant_transfer_id=d.get("merchant_transfer_id"),
            late_for_closed_period=bool(d.get("late_for_closed_period"))) for d in docs]

    async def facts(self, practice_id: str, start: datetime, end: datetime) -> MonthFacts:
        reconciled, unreconciled, matched, unmatched = Total(), Total(), Total(), Total()
        async for t in self._transfers.find({"practice_id": practice_id, "settled_at": {"$gte": start, "$lt": end}},
                                            {"net_amount": 1, "reconciled_at": 1}):
            (reconciled if t.get("reconciled_at") else unreconciled).add(t["net_amount"])
        async for d in self._deposits.find({"practice_id": practice_id, "deposited_at": {"$gte": start, "$lt": end}},
                                           {"amount": 1, "status": 1}):
            (matched if d["status"] == DepositStatus.MATCHED.value else unmatched).add(d["amount"])
        open_tasks = await self._open_reversal_tasks(practice_id, start, end)
        return MonthFacts(reconciled, unreconciled, matched, unmatched, open_tasks)

    async def _open_reversal_tasks(self, practice_id: str, start: datetime, end: datetime) -> dict[str, Total]:
        """Open office tasks of the month's returns and chargebacks (section 10), by kind."""
        reversals = {d["payment_id"]: d async for d in self._postings.find(
            {"practice_id": practice_id, "occurred_at": {"$gte": start, "$lt": end},
             "kind": {"$in": list(REVERSAL_TASK_KINDS)}}, {"payment_id": 1, "kind": 1, "amount": 1})}
        totals: dict[str, Total] = {}
        if not reversals:
            return totals
        async for alert in self._alerts.find({"practice_id": practice_id, "kind": "task", "open": True,
                                              "payment_id": {"$in": list(reversals)}}, {"payment_id": 1}):
            posting = reversals[alert["payment_id"]]
            totals.setdefault(posting["kind"], Total()).add(posting.get("amount") or Decimal("0.00"))
        return totals

    async def closed(self, practice_id: str, month: str) -> Record | None:
        return await self._periods.find_one({"_id": _id(practice_id, month)})

    async def record_close(self, practice_id: str, month: str, record: Record) -> bool:
        try:
            await self._periods.insert_one({"_id": _id(practice_id, month), "practice_id": practice_id,
                                            "month": month, **record, "sealed": False})
        except DuplicateKeyError:
            return False
        return True

    async def closed_months(self, practice_id: str) -> set[str]:
        return {d["month"] async for d in self._periods.find({"practice_id": practice_id}, {"month": 1})}

    async def mark_late(self, practice_id: str, payment_id: str, month: str, audit: AuditEntry) -> bool:
        result = await self._postings.update_one(
            {"_id": _id(practice_id, payment_id), "late_for_closed_period": {"$ne": True}},
            {"$set": {"late_for_closed_period": True, "late_for_month": month},
             "$push": {"audit": audit_doc(audit)}})
        return result.modified_count == 1

    async def late_ids(self, practice_id: str, payment_ids: Sequence[str]) -> set[str]:
        return {d["payment_id"] async for d in self._postings.find(
            {"_id": {"$in": [_id(practice_id, p) for p in payment_ids]}, "late_for_closed_period": True},
            {"payment_id": 1})}


async def open_late_task(collections: Collections, practice_id: str, payment_id: str, month: str,
                         amount: Decimal | None, currency: str | None, at: datetime) -> Alert | None:
    """The office task of a posting that arrived after its month was closed; None if it is open already."""
    alert_id = f"task:{practice_id}:{payment_id}:late"
    shown = f"{amount:.2f} {currency or ''}".strip() if amount is not None else "A"
    doc = {"_id": alert_id, "alert_id": alert_id, "kind": AlertKind.TASK.value, "practice_id": practice_id,
           "patient_account_id": None, "payment_id": payment_id, **state_fields(AlertState.OPEN),
           "opened_at": at, "resolved_at": None, "escalated_at": None, "late_for_closed_period": month,
           "title": f"{payment_id} arrived after {month} was closed",
           "detail": f"{shown} posting {payment_id} belongs to {month}, which was closed before it arrived. It is "
                     "loaded; adjust the closed month's books, then resolve this task.",
           **outbox_fields(at)}
    try:
        await collections.alerts.insert_one(doc)
    except DuplicateKeyError:
        return None
    return alert_from(doc)
