"""Alerts in MongoDB: an office task per failed posting, a patient flag per account with open failures."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError, OperationFailure

from paypost.domain.access import EVERY, Scope
from paypost.domain.alerts import (
    ESCALATES_FROM,
    OPEN_STATES,
    OUTAGE_TITLE,
    Alert,
    AlertKind,
    AlertState,
    Delivery,
    OutboxItem,
    alert_sources_of,
    flag_text,
    task_id,
    task_text,
)
from paypost.domain.model import STILL_FAILING
from paypost.domain.posting import Posting, PostingKey
from paypost.infra.batching import Coalescer, conditional_updater, inserter
from paypost.infra.mongo.database import Collections, Doc

_OPEN = sorted(s.value for s in OPEN_STATES)
# A failure's flag, not a reversal's (contract section 10): a later load never resolves a reversal's.
FAILURE_FLAG: Doc = {"reversal_id": None}


def alert_from(doc: Doc) -> Alert:
    return Alert(alert_id=doc["alert_id"], kind=AlertKind(doc["kind"]), practice_id=doc["practice_id"],
                 patient_account_id=doc.get("patient_account_id"), payment_id=doc.get("payment_id"),
                 state=AlertState(doc["state"]), opened_at=doc["opened_at"], resolved_at=doc.get("resolved_at"),
                 escalated_at=doc.get("escalated_at"), title=doc.get("title"), detail=doc.get("detail"),
                 delivery=Delivery(doc["pms_state"]) if doc.get("pms_state") else None,
                 delivery_error=doc.get("pms_error"), snoozed_until=doc.get("snoozed_until"),
                 snooze_reason=doc.get("snooze_reason"), snoozed_by=doc.get("snoozed_by"),
                 ehr_patient_id=doc.get("ehr_patient_id"))


def in_states(of: frozenset[AlertState]) -> Doc:
    """Alerts in one of ``of``. The stored ``open`` field mirrors ``OPEN_STATES`` (the indexes, and
    the unique one flag per account, are on it), so a filter uses it wherever it says enough."""
    if of == OPEN_STATES:
        return {"open": True}
    values = sorted(s.value for s in of)
    condition: Doc = {"state": values[0] if len(values) == 1 else {"$in": values}}
    return {"open": True, **condition} if of <= OPEN_STATES else condition


def becoming(target: AlertState) -> Doc:
    """The condition of a write that makes an alert ``target``: it is in a state that may become it
    (``paypost.domain.alerts.ALERT_TRANSITIONS``), so a write that lost a race changes nothing."""
    return in_states(alert_sources_of(target))


def state_fields(state: AlertState) -> Doc:
    """An alert's state as stored: its value, and whether it is among ``OPEN_STATES``."""
    return {"state": state.value, "open": state in OPEN_STATES}


def not_snoozed(now: datetime) -> Doc:
    """An alert not snoozed past ``now`` (``paypost.domain.alerts.snoozed_past``): never snoozed, or over."""
    return {"$or": [{"snoozed_until": None}, {"snoozed_until": {"$lte": now}}]}


def escalation_due(before: datetime, now: datetime | None) -> Doc:
    """What ``paypost.domain.alerts.may_escalate`` allows, as a filter (no snooze looked at without ``now``)."""
    return {**in_states(ESCALATES_FROM), "opened_at": {"$lte": before}, **(not_snoozed(now) if now is not None else {})}


def resolved_at(at: datetime) -> Doc:
    return {"$set": {**state_fields(AlertState.RESOLVED), "resolved_at": at}}


def outbox_fields(at: datetime, sent: bool = True) -> Doc:
    """A new alert's outbox entry: due to go to the practice's system now (version 1); or, where
    the practice has no system to send it to (``sent`` False), delivered already as "not sent"."""
    if not sent:
        return {"pms_version": 1, "pms_sent": 1, "pms_due": False, "pms_next_at": at,
                "pms_state": Delivery.NOT_SENT.value, "pms_put": False, "pms_patient_id": None, "pms_attempts": 0,
                "pms_error": None}
    return {"pms_version": 1, "pms_sent": 0, "pms_due": True, "pms_next_at": at, "pms_state": Delivery.PENDING.value,
            "pms_put": False, "pms_patient_id": None, "pms_attempts": 0, "pms_error": None}


def changed(update: Doc, at: datetime, sent: bool = True) -> Doc:
    """An alert's change, with its outbox entry in the same write: due to go to the system again;
    or, where the practice has no system (``sent`` False), delivered as "not sent" by this write (a
    version still due from before stays due: the delivery round sends the newest)."""
    if not sent:
        return {**update, "$set": {**update.get("$set", {}), "pms_state": Delivery.NOT_SENT.value},
                "$inc": {"pms_version": 1, "pms_sent": 1}}
    return {**update, "$set": {**update.get("$set", {}), "pms_due": True, "pms_next_at": at,
                               "pms_state": Delivery.PENDING.value},
            "$inc": {"pms_version": 1}}


def _alert(doc: Doc | None) -> Alert | None:
    return alert_from(doc) if doc is not None else None


async def _once_per_account(requests: Sequence[tuple[Any, ...]],
                            act: Callable[..., Awaitable[Doc | None]]) -> list[Doc | None]:
    """Act once per (practice, account) of a batch of requests, all accounts at once; the first
    request of each account gets the answer, the rest None (the flag is one per account)."""
    first: dict[tuple[str, str], int] = {}
    for index, request in enumerate(requests):
        first.setdefault((request[0], request[1]), index)
    answers = await asyncio.gather(*(act(*requests[index]) for index in first.values()))
    results: list[Doc | None] = [None] * len(requests)
    for index, answer in zip(first.values(), answers, strict=True):
        results[index] = answer
    return results


class MongoAlertStore:
    """Opening and resolving alerts happens for every failure and every load after one, so the
    calls made together (a batch of postings) share round trips: tasks are inserted and resolved
    in bulk, and a patient's flag is looked at once per batch however many of its payments it holds.
    """

    def __init__(self, collections: Collections) -> None:
        self._c = collections.alerts
        self._postings = collections.postings
        self._task_inserts = inserter(self._c)
        self._resolves = conditional_updater(self._c, returning=True)
        self._flag_opens: Coalescer[tuple[str, str, str, datetime, str, str, bool], Doc | None] = Coalescer(
            lambda requests: _once_per_account(requests, self._open_flag))
        self._flag_resolves: Coalescer[tuple[str, str, datetime, bool], Doc | None] = Coalescer(
            lambda requests: _once_per_account(requests, self._resolve_flag_if_clear))

    async def ensure_indexes(self) -> None:
        # Before 1.2 the one-open-flag index had no reversal_id: a reversal's flag (one each,
        # infra/mongo/reversal_alerts.py) stands beside the account's failure flag.
        with contextlib.suppress(OperationFailure):
            await self._c.drop_index("kind_1_practice_id_1_patient_account_id_1")
        await self._c.create_indexes([
            # One open failure flag per patient account: concurrent failures open it once (a reversal's
            # flag has its reversal_id; a failure flag has none).
            IndexModel([("kind", ASCENDING), ("practice_id", ASCENDING), ("patient_account_id", ASCENDING),
                        ("reversal_id", ASCENDING)],
                       unique=True, partialFilterExpression={"open": True, "kind": "patient"}),
            IndexModel([("open", ASCENDING), ("opened_at", ASCENDING)]),
            # The escalation sweep's: only alerts not yet escalated, so its cost is what may escalate,
            # not every alert an office leaves open (escalated ones stay open for weeks).
            IndexModel([("opened_at", ASCENDING)], name="escalation_due",
                       partialFilterExpression={"state": AlertState.OPEN.value}),
            IndexModel([("practice_id", ASCENDING), ("state", ASCENDING), ("opened_at", ASCENDING)]),
            # The outbox: what the practices' systems have not got yet.
            IndexModel([("pms_next_at", ASCENDING)], name="outbox", partialFilterExpression={"pms_due": True}),
        ])

    async def open_task(self, posting: Posting, at: datetime, sent: bool = True) -> Alert | None:
        """Open the task of a failed posting; None if it is open already (a posting has one task, ever)."""
        alert_id = task_id(posting.key)
        title, detail = task_text(posting)
        doc = {"_id": alert_id, "alert_id": alert_id, "kind": AlertKind.TASK.value,
               "practice_id": posting.key.practice_id, "patient_account_id": posting.patient_account_id,
               "payment_id": posting.key.payment_id, **state_fields(AlertState.OPEN),
               "opened_at": at, "resolved_at": None, "escalated_at": None, "title": title, "detail": detail,
               **outbox_fields(at, sent)}
        try:
            await self._task_inserts.submit(doc)
        except DuplicateKeyError:
            return None
        return alert_from(doc)

    async def open_flag(self, posting: Posting, at: datetime, sent: bool = True) -> Alert | None:
        """Open the patient's flag unless one is open; returns it only when this call opened it."""
        assert posting.patient_account_id is not None  # paypost.domain.alerts.flag_opens
        return _alert(await self._flag_opens.submit(
            (posting.key.practice_id, posting.patient_account_id, posting.key.payment_id, at, *flag_text(posting),
             sent)))

    async def _open_flag(self, practice_id: str, account: str, payment_id: str, at: datetime, title: str,
                         detail: str, sent: bool) -> Doc | None:
        # The id names the practice (a key's scope check reads it), never the account: an alert's id
        # goes into events, log lines and URLs (contract section 12).
        alert_id = f"patient:{practice_id}:{uuid.uuid4().hex[:16]}"
        try:
            result = await self._c.update_one(
                {"kind": AlertKind.PATIENT.value, "practice_id": practice_id, "patient_account_id": account,
                 **FAILURE_FLAG, **in_states(OPEN_STATES)},
                {"$setOnInsert": {"_id": alert_id, "alert_id": alert_id, "state": AlertState.OPEN.value,
                                  "payment_id": payment_id,
                                  "opened_at": at, "resolved_at": None, "escalated_at": None, "title": title,
                                  "detail": detail, **outbox_fields(at, sent)}},
                upsert=True,
            )
        except DuplicateKeyError:
            return None
        if result.upserted_id is None:
            return None
        return await self._c.find_one({"_id": result.upserted_id})

    async def open_outage_task(self, practice_id: str, task_id: str, detail: str, at: datetime) -> Alert | None:
        doc = {"_id": task_id, "alert_id": task_id, "kind": AlertKind.TASK.value, "outage": True,
               "practice_id": practice_id, "patient_account_id": None, "payment_id": None,
               **state_fields(AlertState.OPEN), "opened_at": at, "resolved_at": None,
               "escalated_at": None, "title": OUTAGE_TITLE, "detail": detail, **outbox_fields(at)}
        try:
            await self._c.insert_one(doc)
        except DuplicateKeyError:
            return None
        return alert_from(doc)

    async def resolve_outage_task(self, practice_id: str, at: datetime) -> Alert | None:
        return _alert(await self._c.find_one_and_update(
            {"practice_id": practice_id, "kind": AlertKind.TASK.value, "outage": True,
             **becoming(AlertState.RESOLVED)},
            changed(resolved_at(at), at),
            return_document=ReturnDocument.AFTER,
        ))

    async def resolve_task(self, key: PostingKey, at: datetime, sent: bool = True) -> Alert | None:
        """Resolve the task of a posting; the task only for the call that resolved it, else None."""
        return _alert(await self._resolves.submit((
            {"_id": task_id(key), **becoming(AlertState.RESOLVED)},
            changed(resolved_at(at), at, sent),
        )))

    async def resolve_flag_if_clear(self, practice_id: str, patient_account_id: str, at: datetime,
                                    sent: bool = True) -> Alert | None:
        """Resolve the account's flag once none of its postings is still failing."""
        return _alert(await self._flag_resolves.submit((practice_id, patient_account_id, at, sent)))

    async def _resolve_flag_if_clear(self, practice_id: str, account: str, at: datetime, sent: bool) -> Doc | None:
        still_failing = await self._postings.count_documents(
            {"practice_id": practice_id, "patient_account_id": account,
             "load_status": {"$in": sorted(s.value for s in STILL_FAILING)}},
            limit=1)
        if still_failing:
            return None
        return await self._c.find_one_and_update(
            {"kind": AlertKind.PATIENT.value, "practice_id": practice_id, "patient_account_id": account,
             **FAILURE_FLAG, **becoming(AlertState.RESOLVED)},
            changed(resolved_at(at), at, sent),
            return_document=ReturnDocument.AFTER,
        )

    async def due_for_escalation(self, before: datetime, limit: int = 500,
                                 now: datetime | None = None) -> list[Alert]:
        return [alert_from(d) async for d in self._c.find(escalation_due(before, now)).limit(limit)]

    async def escalate(self, alert_id: str, at: datetime, sent: bool = True) -> Alert | None:
        # Not snoozed past now: a snooze that came after the alert was found due still holds.
        return _alert(await self._c.find_one_and_update(
            {"_id": alert_id, **becoming(AlertState.ESCALATED), **not_snoozed(at)},
            changed({"$set": {**state_fields(AlertState.ESCALATED), "escalated_at": at}}, at, sent),
            return_document=ReturnDocument.AFTER,
        ))

    async def get(self, alert_id: str) -> Alert | None:
        return _alert(await self._c.find_one({"_id": alert_id}))

    async def snooze(self, alert_id: str, until: datetime, reason: str, by: str, at: datetime) -> Alert | None:
        return _alert(await self._c.find_one_and_update(
            {"_id": alert_id, **in_states(OPEN_STATES)},  # a resolved alert escalates no more
            {"$set": {"snoozed_until": until, "snooze_reason": reason, "snoozed_by": by, "snoozed_at": at}},
            return_document=ReturnDocument.AFTER))

    async def list(self, practice_id: str | None, state: AlertState | None, limit: int = 500,
                   scope: Scope = EVERY) -> list[Alert]:
        query: dict[str, Any] = {}
        if practice_id:
            query["practice_id"] = practice_id if scope.covers(practice_id) else {"$in": []}
        elif scope.practices is not None:
            query["practice_id"] = {"$in": sorted(scope.practices)}
        if state is AlertState.OPEN:
            query["state"] = {"$in": _OPEN}
        elif state:
            query["state"] = state.value
        docs = self._c.find(query).sort([("opened_at", -1), ("_id", -1)]).limit(limit)
        return [alert_from(d) async for d in docs]


class MongoAlertOutbox:
    """The outbox of the alerts: fields of each alert's own document, written with its every change
    (``outbox_fields``, ``changed``), so a change and its entry are one write and neither is lost."""

    def __init__(self, collections: Collections) -> None:
        self._c = collections.alerts
        # A round's deliveries end together (gathered): their writes share round trips.
        self._deliveries = conditional_updater(self._c)

    async def claim(self, now: datetime, limit: int, lease_seconds: float) -> list[OutboxItem]:
        """One conditional write claims the round's due alerts, marked with a token of its own;
        reading the token back gives exactly those this call claimed, whatever another process
        claimed meanwhile (one write and two reads a round, not a write per alert)."""
        due = [d["_id"] async for d in self._c.find({"pms_due": True, "pms_next_at": {"$lte": now}}, {"_id": 1},
                                                    sort=[("pms_next_at", ASCENDING)], limit=limit, hint="outbox")]
        if not due:
            return []
        token = uuid.uuid4().hex
        await self._c.update_many(
            {"_id": {"$in": due}, "pms_due": True, "pms_next_at": {"$lte": now}},
            {"$set": {"pms_next_at": now + timedelta(seconds=lease_seconds), "pms_claim": token}})
        claimed = {doc["_id"]: doc async for doc in self._c.find({"_id": {"$in": due}, "pms_claim": token})}
        return [OutboxItem(alert=alert_from(doc), version=doc["pms_version"], put=bool(doc.get("pms_put")),
                           put_patient_id=doc.get("pms_patient_id"), attempts=doc.get("pms_attempts", 0))
                for alert_id in due if (doc := claimed.get(alert_id)) is not None]  # in the order due

    async def next_due(self) -> datetime | None:
        first = await self._c.find_one({"pms_due": True}, {"pms_next_at": 1}, sort=[("pms_next_at", ASCENDING)],
                                        hint="outbox")
        return None if first is None else first["pms_next_at"]

    async def delivered(self, item: OutboxItem, state: Delivery, put: bool, patient_id: str | None) -> None:
        done = await self._deliveries.submit((
            {"_id": item.alert.alert_id, "pms_version": item.version},
            {"$set": {"pms_sent": item.version, "pms_due": False, "pms_state": state.value, "pms_put": put,
                      "pms_patient_id": patient_id, "pms_error": None, "pms_attempts": 0}}))
        if not done:  # it changed while this version was sent: the change goes next
            await self._c.update_one({"_id": item.alert.alert_id},
                                     {"$set": {"pms_put": put, "pms_patient_id": patient_id,
                                               "pms_next_at": datetime.now(UTC)}})

    async def later(self, item: OutboxItem, at: datetime, state: Delivery, error: str | None) -> None:
        done = await self._c.update_one(
            {"_id": item.alert.alert_id, "pms_version": item.version},
            {"$set": {"pms_next_at": at, "pms_state": state.value, "pms_error": error}, "$inc": {"pms_attempts": 1},
             "$unset": {"pms_waits_for_system": ""}})
        if done.matched_count == 0:
            await self._c.update_one({"_id": item.alert.alert_id}, {"$set": {"pms_next_at": datetime.now(UTC)}})

    async def wait_for_system(self, item: OutboxItem, at: datetime, reason: str) -> None:
        done = await self._c.update_one(
            {"_id": item.alert.alert_id, "pms_version": item.version},
            {"$set": {"pms_next_at": at, "pms_state": Delivery.PENDING.value, "pms_error": reason,
                      "pms_waits_for_system": True}})
        if done.matched_count == 0:  # it changed meanwhile: the change goes next
            await self._c.update_one({"_id": item.alert.alert_id}, {"$set": {"pms_next_at": datetime.now(UTC)}})

    async def system_answers(self, practice_id: str) -> int:
        result = await self._c.update_many(
            {"pms_due": True, "practice_id": practice_id, "pms_waits_for_system": True},
            {"$set": {"pms_next_at": datetime.now(UTC)}, "$unset": {"pms_waits_for_system": ""}})
        return result.modified_count

    async def nudge(self, practice_id: str, patient_account_id: str) -> int:
        result = await self._c.update_many(
            {"kind": AlertKind.PATIENT.value, "practice_id": practice_id, "patient_account_id": patient_account_id,
             "pms_due": True, "pms_state": Delivery.WAITING_FOR_MAPPING.value},
            {"$set": {"pms_next_at": datetime.now(UTC)}})
        return result.modified_count
