"""Commands on postings in MongoDB: the retry claim, the failed keys of a Save Changes, a clear, the
waiting refunds and reversals, and the mapping failures a self-heal sweeps."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from pymongo import ASCENDING, ReturnDocument

from paypost.domain.model import LoadStatus, PostingKind
from paypost.domain.ports.postings import FailedSelection
from paypost.domain.ports.practices import MappingFailure
from paypost.domain.posting import AuditEntry, KeptMessage, Posting, PostingKey
from paypost.domain.rules import (
    PostingState,
)
from paypost.infra.mongo.database import Collections, Doc
from paypost.infra.mongo.failure_groups import LEFT_FAILED
from paypost.infra.mongo.postings import (
    MAPPING_FAILURES,
    MAPPING_FAILURES_INDEX,
    REFUNDABLE_PAYMENTS,
    RETRYABLE,
    WAITING_REFUNDS,
    audit_doc,
    becoming,
    doc_id,
    mapping_failures_index,
    message_from,
    posting_from,
    statuses,
)


class MongoPostingCommands:
    """Operator and self-healing changes to postings: retry claims and clears, each a conditional write."""

    def __init__(self, collections: Collections) -> None:
        self._c = collections.postings

    async def ensure_indexes(self) -> None:
        await self._c.create_indexes([mapping_failures_index()])

    async def mapping_failures(self, limit: int, after: PostingKey | None = None) -> list[MappingFailure]:
        """Retryable FAILED postings that failed for want of a (correct) mapping: a page of at most
        ``limit``, in the order of their keys, from the first after ``after``."""
        query = MAPPING_FAILURES if after is None else {**MAPPING_FAILURES, "_id": {"$gt": doc_id(after)}}
        docs = self._c.find(query, {"practice_id": 1, "payment_id": 1, "patient_account_id": 1, "ehr_patient_id": 1},
                            sort=[("_id", ASCENDING)], hint=MAPPING_FAILURES_INDEX, limit=limit)
        return [MappingFailure(PostingKey(d["practice_id"], d["payment_id"]), d["patient_account_id"],
                               d.get("ehr_patient_id")) async for d in docs]

    async def claim_for_retry(self, keys: Sequence[PostingKey], token: str,
                              audit: AuditEntry) -> list[tuple[Posting, KeptMessage]]:
        """FAILED → RETRYING for every key still retryable; returns what was claimed.

        One ``update_many`` marks the batch with ``token``; reading the token back gives exactly the
        postings this call claimed, whatever raced it.
        """
        if not keys:
            return []
        await self._c.update_many(
            {"_id": {"$in": [doc_id(k) for k in keys]}, **RETRYABLE,
             # A command delivered again never re-claims what it claimed the first time.
             "retry_token": {"$ne": token}},
            {"$set": {"load_status": LoadStatus.RETRYING.value, "retry_token": token, "updated_at": audit.at,
                      "load_error": None},
             "$unset": LEFT_FAILED,
             "$inc": {"replays": 1},
             "$push": {"audit": audit_doc(audit)}},
            # By _id: left to itself the planner may walk every FAILED posting of the status index.
            hint=[("_id", 1)],
        )
        return await self.claimed(token, keys)

    async def claimed(self, token: str, keys: Sequence[PostingKey]) -> list[tuple[Posting, KeptMessage]]:
        # Only these keys (a bulk retry claims chunk after chunk with one token, and the chunks
        # before this one are replayed already), and only what is still RETRYING: a claim whose
        # replay already loaded or failed is not replayed again.
        docs = self._c.find({"_id": {"$in": [doc_id(k) for k in keys]}, "retry_token": token,
                             "load_status": LoadStatus.RETRYING.value},
                            {"audit": 0, "attempts": 0, "dead_letters": 0})
        return [(posting_from(d), message_from(d["message"])) async for d in docs]

    async def failed_keys(self, selection: FailedSelection, limit: int | None = None) -> list[PostingKey]:
        query: Doc = {"practice_id": selection.practice_id, "load_status": LoadStatus.FAILED.value}
        if selection.error_codes is not None:
            query["load_error.code"] = {"$in": sorted(c.value for c in selection.error_codes)}
        if selection.patient_account_id is not None:
            query["patient_account_id"] = selection.patient_account_id
        if selection.merchant_transfer_id is not None:
            query["merchant_transfer_id"] = selection.merchant_transfer_id
        if selection.group_id is not None:
            query["group_id"] = selection.group_id
        cursor = self._c.find(query, {"practice_id": 1, "payment_id": 1})
        if limit:
            cursor = cursor.limit(limit)
        return [PostingKey(d["practice_id"], d["payment_id"]) async for d in cursor]

    async def failed_refunds_by_payment(self, practice_id: str,
                                        payment_ids: Sequence[str]) -> dict[str, list[PostingKey]]:
        """FAILED refunds waiting for these payments, by refunded payment."""
        found: dict[str, list[PostingKey]] = {}
        async for d in self._c.find({"practice_id": practice_id, "refunded_payment_id": {"$in": list(payment_ids)},
                                     **WAITING_REFUNDS},
                                    {"payment_id": 1, "refunded_payment_id": 1}):
            found.setdefault(d["refunded_payment_id"], []).append(PostingKey(practice_id, d["payment_id"]))
        return found

    async def refunds_waiting_on_loaded(self, limit: int = 1000) -> dict[str, list[PostingKey]]:
        """FAILED refunds waiting for a payment that has loaded since, by practice."""
        refunds = await self._c.find(
            WAITING_REFUNDS,
            {"practice_id": 1, "payment_id": 1, "refunded_payment_id": 1}).limit(limit).to_list(None)
        if not refunds:
            return {}
        originals = {f"{r['practice_id']}/{r['refunded_payment_id']}" for r in refunds}
        loaded = {d["_id"] async for d in self._c.find(
            {"_id": {"$in": list(originals)}, **REFUNDABLE_PAYMENTS}, {"_id": 1})}
        waiting: dict[str, list[PostingKey]] = {}
        for r in refunds:
            if f"{r['practice_id']}/{r['refunded_payment_id']}" in loaded:
                waiting.setdefault(r["practice_id"], []).append(PostingKey(r["practice_id"], r["payment_id"]))
        return waiting

    async def stale_retrying(self, older_than_seconds: float, limit: int = 1000) -> list[tuple[Posting, KeptMessage]]:
        """RETRYING postings untouched for a while; each is touched so the next sweep leaves it be."""
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_seconds)
        docs = await self._c.find({**statuses(frozenset({LoadStatus.RETRYING})), "updated_at": {"$lt": cutoff},
                                   "parked_at": {"$exists": False}},  # waiting for its system, not lost
                                  {"audit": 0, "attempts": 0, "dead_letters": 0}).limit(limit).to_list(None)
        found = []
        for d in docs:
            touched = await self._c.update_one(
                {"_id": d["_id"], "load_status": LoadStatus.RETRYING.value, "updated_at": d["updated_at"]},
                {"$set": {"updated_at": datetime.now(UTC)}})
            if touched.modified_count:
                found.append((posting_from(d), message_from(d["message"])))
        return found

    async def states(self, keys: Sequence[PostingKey]) -> dict[PostingKey, PostingState]:
        docs = self._c.find({"_id": {"$in": [doc_id(k) for k in keys]}},
                            {"practice_id": 1, "payment_id": 1, "kind": 1, "load_status": 1, "retry_token": 1,
                             "clear_command": 1, "replays": 1})
        found = {}
        async for d in docs:
            key = PostingKey(d["practice_id"], d["payment_id"])
            found[key] = PostingState(key, PostingKind(d["kind"]), LoadStatus(d["load_status"]),
                                      replays=d.get("replays", 0), retry_token=d.get("retry_token"),
                                      clear_command=d.get("clear_command"))
        return found

    async def clear(self, key: PostingKey, command_id: str, audit: AuditEntry,
                    manual_reference: str | None) -> Posting | None:
        """FAILED → CLEARED; the cleared posting, or None if it was not FAILED."""
        doc = await self._c.find_one_and_update(
            {"_id": doc_id(key), **becoming(LoadStatus.CLEARED)},
            {"$set": {"load_status": LoadStatus.CLEARED.value, "clear_command": command_id,
                      "cleared": {"at": audit.at, "by": audit.actor, "reason": audit.reason,
                                  "manual_reference": manual_reference},
                      "updated_at": audit.at},
             "$unset": {"announcement_owed": "", **LEFT_FAILED},
             "$push": {"audit": audit_doc(audit)}},
            projection={"audit": 0, "attempts": 0, "message": 0, "dead_letters": 0},
            return_document=ReturnDocument.AFTER,
        )
        return posting_from(doc) if doc else None

    async def record_clear_verified(self, key: PostingKey, verified: bool | None) -> None:
        await self._c.update_one({"_id": doc_id(key), "load_status": LoadStatus.CLEARED.value},
                                 {"$set": {"cleared.verified": verified}})
