"""Postings in MongoDB: the Merchant Transfers report rows and their outcomes."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError

from paypost.domain.load_errors import LoadError, LoadErrorCode
from paypost.domain.model import IN_FLIGHT, LoadStatus, PostingKind, sources_of
from paypost.domain.posting import (
    PAYPOST_ACTOR,
    Attempt,
    AuditEntry,
    FirstOutcome,
    KeptMessage,
    LedgerReceipt,
    Posting,
    PostingKey,
)
from paypost.domain.rules import (
    MAPPING_FIXES,
    MAX_REPLAYS,
    PAYMENT_REFUNDABLE,
    REFUND_WAITS_IN,
    RETRYABLE_FROM,
    RETRYABLE_KINDS,
    WAITS_FOR_PAYMENT,
)
from paypost.infra.batching import conditional_updater, finder, insert_all, inserter
from paypost.infra.mongo.database import ACKNOWLEDGED, LEDGER_ENTRY, Collections, Doc
from paypost.infra.mongo.failure_groups import LEFT_FAILED, group_fields

HISTORY_LIMIT = 200  # attempts kept per posting; the audit trail is never trimmed


def becoming(target: LoadStatus) -> Doc:
    """The condition of a write that makes a posting ``target``: it is in a status that may become it
    (``paypost.domain.model.ALLOWED_TRANSITIONS``), so a write that lost a race changes nothing."""
    return statuses(sources_of(target))


def statuses(of: frozenset[LoadStatus]) -> Doc:
    values = sorted(s.value for s in of)
    return {"load_status": values[0] if len(values) == 1 else {"$in": values}}


# Refunds waiting for their payment (``paypost.domain.rules.refund_waits``), and payments they may now go with.
WAITING_REFUNDS: Doc = {**statuses(REFUND_WAITS_IN), "load_error.code": WAITS_FOR_PAYMENT.value}
REFUNDABLE_PAYMENTS: Doc = statuses(frozenset({PAYMENT_REFUNDABLE}))
# The claim of a retry: what ``paypost.domain.rules.may_retry`` allows, as a filter.
RETRYABLE: Doc = {**statuses(RETRYABLE_FROM), "kind": {"$in": sorted(k.value for k in RETRYABLE_KINDS)},
                  "replays": {"$lt": MAX_REPLAYS}}

# The mapping failures of every practice (the self-heal's sweep): FAILED postings only are in the
# index, and its first field is the error's code, so the sweep reads the mapping failures alone; by
# _id next, so that a sweep reads a page and the next sweep the page after it.
MAPPING_FAILURES_INDEX = "mapping_failures"
MAPPING_FAILURES: Doc = {"load_status": LoadStatus.FAILED.value,
                         "load_error.code": {"$in": sorted(c.value for c in MAPPING_FIXES)},
                         "patient_account_id": {"$type": "string"},
                         "kind": RETRYABLE["kind"], "replays": RETRYABLE["replays"]}


def mapping_failures_index() -> IndexModel:
    return IndexModel([("load_error.code", ASCENDING), ("_id", ASCENDING)], name=MAPPING_FAILURES_INDEX,
                      partialFilterExpression={"load_status": LoadStatus.FAILED.value})


def doc_id(key: PostingKey) -> str:
    return f"{key.practice_id}/{key.payment_id}"


def error_doc(error: LoadError | None) -> Doc | None:
    if error is None:
        return None
    return {"code": error.code.value, "message": error.message, "fix": error.fix}


def error_from(doc: Doc | None) -> LoadError | None:
    if not doc:
        return None
    return LoadError(code=LoadErrorCode(doc["code"]), message=doc["message"], fix=doc["fix"])


def audit_doc(entry: AuditEntry) -> Doc:
    # Field by field (dataclasses.asdict deep-copies, which costs more than the write itself).
    return {"at": entry.at, "actor": entry.actor, "action": entry.action, "reason": entry.reason,
            "detail": entry.detail}


def attempt_doc(attempt: Attempt) -> Doc:
    return {"at": attempt.at, "duration_ms": attempt.duration_ms, "outcome": attempt.outcome,
            "load_error": error_doc(attempt.load_error)}


def message_doc(message: KeptMessage) -> Doc:
    """Keep the exact bytes: text when they are UTF-8, else base64."""
    try:
        body: Doc = {"text": message.body.decode("utf-8")}
    except UnicodeDecodeError:
        body = {"base64": base64.b64encode(message.body).decode()}
    headers = {k: v for k, v in message.headers.items() if isinstance(v, (str, int, float, bool)) or v is None}
    return {**body, "routing_key": message.routing_key, "message_id": message.message_id, "headers": headers,
            "size": len(message.body)}


def message_from(doc: Doc) -> KeptMessage:
    body = doc["text"].encode("utf-8") if "text" in doc else base64.b64decode(doc["base64"])
    return KeptMessage(body=body, routing_key=doc["routing_key"], message_id=doc.get("message_id"),
                       headers=dict(doc.get("headers") or {}))


def posting_fields(posting: Posting) -> Doc:
    """The fields a payment message determines (set on insert and on an upstream correction)."""
    return {
        "practice_id": posting.key.practice_id,
        "payment_id": posting.key.payment_id,
        "kind": posting.kind.value,
        "patient_account_id": posting.patient_account_id,
        "event_ehr_patient_id": posting.event_ehr_patient_id,
        "amount": posting.amount,
        "currency": posting.currency,
        "method": posting.method,
        "merchant_transfer_id": posting.merchant_transfer_id,
        "event_id": posting.event_id,
        "occurred_at": posting.occurred_at,
        # Only a refund or reversal has the field (what it follows: its payment, or a won dispute's
        # dispute), so only they are in the index on it.
        **({"refunded_payment_id": posting.refunded_payment_id} if posting.refunded_payment_id else {}),
        **({"return_code": posting.return_code} if posting.return_code else {}),
        **({"fee_amount": posting.fee_amount} if posting.fee_amount is not None else {}),
    }


def posting_from(doc: Doc) -> Posting:
    return Posting(
        key=PostingKey(doc["practice_id"], doc["payment_id"]),
        kind=PostingKind(doc["kind"]),
        load_status=LoadStatus(doc["load_status"]),
        event_id=doc.get("event_id"),
        received_at=doc["received_at"],
        patient_account_id=doc.get("patient_account_id"),
        event_ehr_patient_id=doc.get("event_ehr_patient_id"),
        ehr_patient_id=doc.get("ehr_patient_id"),
        amount=doc.get("amount"),
        currency=doc.get("currency"),
        method=doc.get("method"),
        merchant_transfer_id=doc.get("merchant_transfer_id"),
        refunded_payment_id=doc.get("refunded_payment_id"),
        return_code=doc.get("return_code"),
        fee_amount=doc.get("fee_amount"),
        load_error=error_from(doc.get("load_error")),
        replays=doc.get("replays", 0),
        announcement_owed=doc.get("announcement_owed"),
        sent_at=doc.get("sent_at"),
        occurred_at=doc.get("occurred_at"),
    )


def new_doc(posting: Posting, message: KeptMessage, audit: list[AuditEntry], status: LoadStatus,
            attempts: list[Attempt] | None = None) -> Doc:
    """A posting as first written: received (PENDING), FAILED at once for an unreadable message, or
    with its outcome for the built-in ledger (``Integration.posts_with_its_row``)."""
    attempts = attempts or []
    return {
        "_id": doc_id(posting.key),
        **posting_fields(posting),
        "ehr_patient_id": None,
        "load_status": status.value,
        "load_error": error_doc(posting.load_error),
        "attempts_count": len(attempts),
        "attempts": [attempt_doc(a) for a in attempts],
        "audit": [audit_doc(a) for a in audit],
        "received_at": posting.received_at,
        "updated_at": posting.received_at,
        "message": message_doc(message),
        "replays": 0,
        "dead_letters": [],
    }


ENTRY_FIELDS = ("entry_id", "ehr_patient_id", "payment_id", "refund_id", "kind", "reversal_id", "amount",
                "currency", "posted_at")


def entry_of(row: Doc) -> Doc:
    """The built-in ledger's entry kept in a posting's row, as the ledger stores one on its own (by
    the row's ``_id``): how the ledger reads it, and how a purge keeps it when the row goes."""
    return {"_id": row["_id"], "practice_id": row["practice_id"],
            **{k: row[LEDGER_ENTRY].get(k) for k in ENTRY_FIELDS}}


def _loaded_fields(ehr_patient_id: str, entry_id: str, patient_account_id: str | None,
                   ledger_entry: Doc | None = None) -> Doc:
    return {"load_status": LoadStatus.LOADED.value, "load_error": None, "ehr_patient_id": ehr_patient_id,
            "ledger_entry_id": entry_id, **_account(patient_account_id),
            **({LEDGER_ENTRY: ledger_entry} if ledger_entry is not None else {})}


def _loaded_audit(attempt: Attempt, entry_id: str) -> AuditEntry:
    return AuditEntry(at=attempt.at, actor=PAYPOST_ACTOR, action="loaded", detail=f"ledger entry {entry_id}")


def _failed_fields(key: PostingKey, attempt: Attempt, error: LoadError, ehr_patient_id: str | None,
                   patient_account_id: str | None, refunded_payment_id: str | None) -> Doc:
    return {"load_status": LoadStatus.FAILED.value, "load_error": error_doc(error), "ehr_patient_id": ehr_patient_id,
            **_account(patient_account_id),
            **group_fields(key.practice_id, error, patient_account_id, refunded_payment_id, attempt.at)}


def _failed_audit(attempt: Attempt, error: LoadError) -> AuditEntry:
    return AuditEntry(at=attempt.at, actor=PAYPOST_ACTOR, action="failed", detail=error.code.value)


def _finished_doc(outcome: FirstOutcome) -> Doc:
    """A posting's row as first written, with its outcome (``Integration.posts_with_its_row``)."""
    posting, attempt, receipt = outcome.posting, outcome.attempt, outcome.receipt
    if posting.load_status is LoadStatus.LOADED:
        assert posting.ehr_patient_id is not None and receipt is not None  # a loaded posting has both
        fields = _loaded_fields(posting.ehr_patient_id, receipt.entry_id, posting.patient_account_id, receipt.entry)
        audit = _loaded_audit(attempt, receipt.entry_id)
    else:
        assert posting.load_status is LoadStatus.FAILED and posting.load_error is not None
        fields = _failed_fields(posting.key, attempt, posting.load_error, posting.ehr_patient_id,
                                posting.patient_account_id, posting.refunded_payment_id)
        audit = _failed_audit(attempt, posting.load_error)
    return {**new_doc(posting, outcome.message, [outcome.received, audit], posting.load_status, attempts=[attempt]),
            **fields, "updated_at": datetime.now(UTC)}


def _account(patient_account_id: str | None) -> Doc:
    # A refund learns its patient account from the payment it refunds.
    return {"patient_account_id": patient_account_id} if patient_account_id else {}


class MongoPostingStore:
    """The PostingStore port on MongoDB. Every status change is one conditional write."""

    def __init__(self, collections: Collections) -> None:
        self._c = collections.postings
        # The PENDING row: its outcome, written next, is what waits for the journal (see ACKNOWLEDGED).
        self._inserts = inserter(self._c.with_options(write_concern=ACKNOWLEDGED))
        self._finishes = conditional_updater(self._c)
        # A posting written once, with its outcome: that write is the one that waits for the journal.
        self._finished_inserts = inserter(self._c)
        self._gets = finder(self._c, {"message": 0, "audit": 0, "attempts": 0})
        # The note that an entry is about to be sent waits for the journal: if it were lost with an
        # entry the system committed, the next call would post without looking the entry up first.
        self._sends = conditional_updater(self._c)

    async def insert_received(self, posting: Posting, message: KeptMessage, audit: AuditEntry) -> bool:
        doc = new_doc(posting, message, [audit], LoadStatus.PENDING)
        try:
            await self._inserts.submit(doc)
        except DuplicateKeyError:
            return False
        return True

    async def get(self, key: PostingKey) -> Posting | None:
        doc = await self._gets.submit(doc_id(key))
        return posting_from(doc) if doc else None

    async def get_doc(self, key: PostingKey) -> Doc | None:
        return await self._c.find_one({"_id": doc_id(key)})

    async def claim_for_replay(self, posting: Posting, message: KeptMessage, audit: AuditEntry) -> bool:
        result = await self._c.update_one(
            {"_id": doc_id(posting.key), **becoming(LoadStatus.RETRYING)},
            {"$set": {**posting_fields(posting), "load_status": LoadStatus.RETRYING.value,
                      "load_error": None, "message": message_doc(message), "updated_at": audit.at},
             "$unset": LEFT_FAILED,
             "$push": {"audit": audit_doc(audit)}},
        )
        return result.modified_count == 1

    async def _finish(self, key: PostingKey, attempt: Attempt, fields: Doc, audit: AuditEntry) -> bool:
        outcome = LoadStatus(fields["load_status"])
        written: bool = await self._finishes.submit((
            {"_id": doc_id(key), **becoming(outcome)},
            {"$set": {**fields, "updated_at": datetime.now(UTC)},
             "$inc": {"attempts_count": 1},
             # A new outcome supersedes what the last one still owed: its own announcement follows.
             # An outcome ends a wait for the practice's system.
             "$unset": {"announcement_owed": "", "parked_at": "",
                        **({} if outcome is LoadStatus.FAILED else LEFT_FAILED)},
             "$push": {"attempts": {"$each": [attempt_doc(attempt)], "$slice": -HISTORY_LIMIT},
                       "audit": audit_doc(audit)}},
        ))
        return written

    async def record_loaded(self, key: PostingKey, attempt: Attempt, ehr_patient_id: str, entry_id: str,
                            patient_account_id: str | None, settled: tuple[Decimal, str] | None = None,
                            ledger_entry: Doc | None = None) -> bool:
        fields = _loaded_fields(ehr_patient_id, entry_id, patient_account_id, ledger_entry)
        if settled is not None:  # a void's or won dispute's amount, learnt as it loaded
            fields.update(amount=settled[0], currency=settled[1])
        return await self._finish(key, attempt, fields, _loaded_audit(attempt, entry_id))

    async def retryable_payments(self, keys: Sequence[PostingKey], token: str) -> list[Posting]:
        docs = self._c.find({"_id": {"$in": [doc_id(k) for k in keys]}, **RETRYABLE,
                             "kind": PostingKind.PAYMENT.value, "retry_token": {"$ne": token}},
                            {"message": 0, "audit": 0, "attempts": 0, "dead_letters": 0}, hint=[("_id", 1)])
        return [posting_from(d) async for d in docs]

    async def retried_and_loaded(self, key: PostingKey, token: str, retry: AuditEntry, attempt: Attempt,
                                 ehr_patient_id: str, entry_id: str, patient_account_id: str | None,
                                 ledger_entry: Doc | None) -> bool:
        fields = _loaded_fields(ehr_patient_id, entry_id, patient_account_id, ledger_entry)
        written: bool = await self._finishes.submit((
            # What claim_for_retry's claim asks, as one condition with the outcome's write.
            {"_id": doc_id(key), **RETRYABLE, "retry_token": {"$ne": token}},
            {"$set": {**fields, "retry_token": token, "updated_at": datetime.now(UTC)},
             "$inc": {"attempts_count": 1, "replays": 1},
             "$unset": {"announcement_owed": "", "parked_at": "", **LEFT_FAILED},
             "$push": {"attempts": {"$each": [attempt_doc(attempt)], "$slice": -HISTORY_LIMIT},
                       "audit": {"$each": [audit_doc(retry), audit_doc(_loaded_audit(attempt, entry_id))]}}},
        ))
        return written

    async def record_failed(
        self, key: PostingKey, attempt: Attempt, error: LoadError, ehr_patient_id: str | None,
        patient_account_id: str | None, refunded_payment_id: str | None = None,
    ) -> bool:
        return await self._finish(
            key, attempt, _failed_fields(key, attempt, error, ehr_patient_id, patient_account_id, refunded_payment_id),
            _failed_audit(attempt, error))

    async def mark_sent(self, key: PostingKey, at: datetime) -> bool:
        # Set once and never unset: whatever the system answered later, a call that follows looks first.
        noted: bool = await self._sends.submit(({"_id": doc_id(key), "sent_at": {"$exists": False}},
                                                {"$set": {"sent_at": at}}))
        return noted

    async def insert_finished(self, posting: Posting, message: KeptMessage, received: AuditEntry,
                              attempt: Attempt, entry_id: str | None, ledger_entry: Doc | None = None) -> bool:
        try:
            receipt = LedgerReceipt(entry_id, entry=ledger_entry) if entry_id is not None else None
            await self._finished_inserts.submit(_finished_doc(FirstOutcome(posting, message, received, attempt,
                                                                            receipt)))
        except DuplicateKeyError:
            return False
        return True

    async def insert_finished_many(self, outcomes: Sequence[FirstOutcome]) -> list[bool | Exception]:
        """``insert_finished`` for each of ``outcomes``, in one insert: True, False where the row was
        there already, or the error that stopped that row (the insert's own, for every row, if it failed)."""
        try:
            written = await insert_all(self._c, [_finished_doc(o) for o in outcomes])
        except Exception as exc:  # noqa: BLE001 - each row gets the error: its delivery is handled again
            return [exc] * len(outcomes)
        return [False if isinstance(w, DuplicateKeyError) else w if isinstance(w, Exception) else True
                for w in written]

    async def insert_unreadable(
        self, posting: Posting, message: KeptMessage, audit: AuditEntry
    ) -> tuple[PostingKey, bool]:
        key = posting.key
        # The row's id is the message's id; if a payment already holds that id, the row takes
        # another, so an unreadable message never changes the row of a payment it names.
        candidates = (key, PostingKey(key.practice_id, f"{key.payment_id}~unreadable"),
                      PostingKey(key.practice_id, f"{key.payment_id}~{uuid.uuid4().hex[:12]}"))
        for candidate in candidates:
            received = AuditEntry(audit.at, PAYPOST_ACTOR, "received",
                                  detail=f"message via {message.routing_key[:100]}")
            doc = new_doc(replace(posting, key=candidate), message, [received, audit], LoadStatus.FAILED,
                          attempts=[Attempt(audit.at, 0.0, "failed", posting.load_error)])
            doc.update(group_fields(candidate.practice_id, posting.load_error, None, None, audit.at))
            try:
                await self._c.insert_one(doc)
                return candidate, True
            except DuplicateKeyError:
                existing = await self._c.find_one({"_id": doc_id(candidate)}, {"kind": 1})
                if existing and existing.get("kind") == PostingKind.UNREADABLE.value:
                    return candidate, False  # the same message again: its row exists
        raise RuntimeError("unreachable: the last candidate id is unique")

    async def mark_dead_lettered(self, key: PostingKey, death: str, audit: AuditEntry) -> bool:
        result = await self._c.update_one(
            {"_id": doc_id(key), "dead_letters": {"$ne": death}},
            {"$push": {"audit": audit_doc(audit), "dead_letters": {"$each": [death], "$slice": -HISTORY_LIMIT}},
             "$set": {"dead_lettered_at": audit.at}},
        )
        return result.modified_count == 1


    async def park(self, key: PostingKey, held: bool, audit: AuditEntry) -> Posting | None:
        in_flight = statuses(IN_FLIGHT)
        if not held:
            await self._c.update_one({"_id": doc_id(key), **in_flight, "parked_at": {"$exists": False}},
                                     {"$set": {"parked_at": audit.at}})
            return None
        doc = await self._c.find_one_and_update(
            {"_id": doc_id(key), **becoming(LoadStatus.HELD)},
            [{"$set": {"load_status": LoadStatus.HELD.value, "parked_at": {"$ifNull": ["$parked_at", audit.at]},
                       "updated_at": audit.at,
                       "audit": {"$concatArrays": ["$audit", {"$literal": [audit_doc(audit)]}]}}}],
            projection={"audit": 0, "attempts": 0, "message": 0, "dead_letters": 0},
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:  # HELD already, or no longer in flight: parked all the same if in flight
            await self._c.update_one({"_id": doc_id(key), **in_flight, "parked_at": {"$exists": False}},
                                     {"$set": {"parked_at": audit.at}})
            return None
        return posting_from(doc)

    async def parked(self, practice_id: str, limit: int) -> list[tuple[Posting, KeptMessage]]:
        docs = self._c.find({"practice_id": practice_id, "parked_at": {"$exists": True}},
                            {"audit": 0, "attempts": 0, "dead_letters": 0},
                            sort=[("received_at", 1), ("_id", 1)], limit=limit, hint="parked")
        return [(posting_from(d), message_from(d["message"])) async for d in docs]

    async def parked_count(self, practice_id: str) -> int:
        return await self._c.count_documents({"practice_id": practice_id, "parked_at": {"$exists": True}},
                                             hint="parked")

    async def parked_practices(self) -> list[str]:
        """The practices with a posting waiting for their system, one seek of the parked index each.

        ``distinct`` walked every posting (no hint for it before MongoDB 7.1), and the outage worker
        asks every round: each step here reads one key of the index, the first after the practice
        found before, so a round costs a read per waiting practice however many postings wait."""
        found: list[str] = []
        while True:
            after = {"practice_id": {"$gt": found[-1]}} if found else {}
            doc = await self._c.find_one({"parked_at": {"$exists": True}, **after}, {"practice_id": 1, "_id": 0},
                                         sort=[("practice_id", ASCENDING)], hint="parked")
            if doc is None:
                return found
            found.append(doc["practice_id"])

    async def owe_announcement(self, key: PostingKey, owed: str) -> None:
        await self._c.update_one({"_id": doc_id(key)}, {"$set": {"announcement_owed": owed}})

    async def announced(self, key: PostingKey) -> None:
        await self._c.update_one({"_id": doc_id(key)}, {"$unset": {"announcement_owed": ""}})
