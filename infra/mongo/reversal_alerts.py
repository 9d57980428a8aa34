"""The alerts of money that moves back (contract section 10), beside the failure alerts.

A loaded return or chargeback opens an office task and a patient flag, a void a task, each once
(its id is the reversal's). They carry ``reversal_id``, so a later load never resolves them
(``FAILURE_FLAG`` in ``infra/mongo/alerts.py`` keeps the failure flags' rules to themselves): the
office resolves them by hand, or a won dispute resolves its chargeback's. Each change goes to the
practice's system through the same outbox as every alert.
"""

from __future__ import annotations

from datetime import datetime

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from paypost.domain.alerts import Alert, AlertKind, AlertState
from paypost.domain.posting import AuditEntry, Posting
from paypost.infra.mongo.alerts import alert_from, becoming, changed, outbox_fields, resolved_at, state_fields
from paypost.infra.mongo.database import Collections
from paypost.infra.mongo.postings import audit_doc


def reversal_alert_id(kind: AlertKind, posting: Posting) -> str:
    """One task and one flag per reversal, ever (``task:`` and ``patient:`` name the practice next)."""
    return f"{kind.value}:{posting.key.practice_id}:{posting.key.payment_id}:reversed"


class MongoReversalAlerts:
    """The ReversalAlertStore port on the alerts collection."""

    def __init__(self, collections: Collections) -> None:
        self._c = collections.alerts
        self._postings = collections.postings

    async def open(self, kind: AlertKind, posting: Posting, title: str, detail: str, at: datetime) -> Alert | None:
        alert_id = reversal_alert_id(kind, posting)
        doc = {"_id": alert_id, "alert_id": alert_id, "kind": kind.value, "practice_id": posting.key.practice_id,
               "patient_account_id": posting.patient_account_id, "payment_id": posting.key.payment_id,
               "reversal_id": posting.key.payment_id, "reversed_payment_id": posting.refunded_payment_id,
               "ehr_patient_id": posting.ehr_patient_id,
               **state_fields(AlertState.OPEN), "opened_at": at, "resolved_at": None, "escalated_at": None,
               "title": title, "detail": detail, **outbox_fields(at)}
        try:
            await self._c.insert_one(doc)
        except DuplicateKeyError:
            return None  # opened before (the same load announced again)
        return alert_from(doc)

    async def resolve_of(self, practice_id: str, reversal_id: str, at: datetime, reason: str) -> list[Alert]:
        resolved = []
        for kind in (AlertKind.TASK, AlertKind.PATIENT):
            doc = await self._c.find_one_and_update(
                {"_id": f"{kind.value}:{practice_id}:{reversal_id}:reversed", **becoming(AlertState.RESOLVED)},
                changed({"$set": {**resolved_at(at)["$set"], "resolved_by": "paypost", "resolve_reason": reason}}, at),
                return_document=ReturnDocument.AFTER)
            if doc is not None:
                resolved.append(alert_from(doc))
        return resolved

    async def resolve_by_hand(self, alert_id: str, reason: str, by: str, at: datetime) -> Alert | None:
        doc = await self._c.find_one_and_update(
            {"_id": alert_id, **becoming(AlertState.RESOLVED)},
            changed({"$set": {**resolved_at(at)["$set"], "resolved_by": by, "resolve_reason": reason}}, at),
            return_document=ReturnDocument.AFTER)
        if doc is None:
            return None
        alert = alert_from(doc)
        if alert.payment_id is not None:  # in its posting's audit trail too, once
            entry = AuditEntry(at=at, actor=by, action="alert_resolved", reason=reason, detail=f"alert {alert_id}")
            await self._postings.update_one(
                {"_id": f"{alert.practice_id}/{alert.payment_id}", "audit.detail": {"$ne": entry.detail}},
                {"$push": {"audit": audit_doc(entry)}, "$set": {"updated_at": at}})
        return alert
