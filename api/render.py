"""Stored documents as the contract's JSON shapes."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from paypost.domain.alerts import Alert
from paypost.domain.integrations import Practice, shown
from paypost.domain.load_errors import load_error
from paypost.domain.model import LoadStatus
from paypost.domain.money import format_money
from paypost.domain.outages import PracticeOutage
from paypost.domain.ports import Record as Doc
from paypost.domain.ports.postings import StatusTotal
from paypost.domain.posting import AuditEntry
from paypost.domain.reconciliation import Bucket, Reconciliation
from paypost.domain.transfers import SettledTransfer
from paypost.domain.triage import FailureGroup
from paypost.handlers.practices import PracticeStatus


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def money(value: Decimal | None) -> str | None:
    return format_money(value) if value is not None else None


def follows(doc: Doc) -> dict[str, Any]:
    """What a refund or reversal is against (contract sections 3 and 10): a refund's payment in
    ``refunded_payment_id``, a void's, return's or chargeback's in ``reversed_payment_id``, a won
    dispute's chargeback in ``dispute_id``; a return's code and fee."""
    kind, followed = doc["kind"], doc.get("refunded_payment_id")
    return {
        "refunded_payment_id": followed if kind == "refund" else None,
        "reversed_payment_id": followed if kind in ("void", "return", "chargeback") else None,
        "dispute_id": followed if kind == "dispute_won" else None,
        "return_code": doc.get("return_code"),
        "fee_amount": money(doc.get("fee_amount")),
    }


def row(doc: Doc) -> dict[str, Any]:
    return {
        "practice_id": doc["practice_id"],
        "payment_id": doc["payment_id"],
        "kind": doc["kind"],
        "patient_account_id": doc.get("patient_account_id"),
        "ehr_patient_id": doc.get("ehr_patient_id"),
        "amount": money(doc.get("amount")),
        "currency": doc.get("currency"),
        "method": doc.get("method"),
        "merchant_transfer_id": doc.get("merchant_transfer_id"),
        **follows(doc),
        "load_status": doc["load_status"],
        "load_error": doc.get("load_error"),
        "attempts_count": doc.get("attempts_count", 0),
        "clear_verified": (doc.get("cleared") or {}).get("verified"),
        "assignee": doc.get("assignee"),
        "notes_count": doc.get("notes_count", 0),
        "late_for_closed_period": bool(doc.get("late_for_closed_period")),  # (section 11)
        "received_at": iso(doc["received_at"]),
        "updated_at": iso(doc["updated_at"]),
    }


def detail(doc: Doc) -> dict[str, Any]:
    attempts = [
        {"at": iso(a["at"]), "duration_ms": a["duration_ms"], "outcome": a["outcome"],
         "load_error": a.get("load_error")}
        for a in doc.get("attempts", [])
    ]
    audit = [
        {"at": iso(a["at"]), "actor": a["actor"], "action": a["action"], "reason": a.get("reason"),
         "detail": a.get("detail")}
        for a in doc.get("audit", [])
    ]
    history = [a["load_error"] for a in attempts if a["load_error"]]
    return {**row(doc), "attempts": attempts, "audit": audit, "load_error_history": history, **taken_back(doc)}


def taken_back(doc: Doc) -> dict[str, Any]:
    """(1.2) A payment's refunds and reversals, and what is left of it once they are counted."""
    if doc["kind"] != "payment":
        return {}
    amount = doc.get("amount")
    left = amount - doc.get("reversed_total", Decimal(0)) if amount is not None else None
    return {"taken_back": [{"payment_id": d["payment_id"], "kind": d["kind"], "amount": money(d.get("amount")),
                            "currency": d.get("currency"), "load_status": d["load_status"]}
                           for d in doc.get("taken_back", [])],
            "left": money(left) if doc["load_status"] == "LOADED" else None}


def ledger_entry(doc: Doc) -> dict[str, Any]:
    return {
        "entry_id": doc["entry_id"],
        "payment_id": doc["payment_id"],
        "refund_id": doc.get("refund_id"),
        "kind": doc.get("kind") or ("refund" if doc.get("refund_id") else "payment"),
        "reversal_id": doc.get("reversal_id"),
        "amount": format_money(doc["amount"]),
        "currency": doc["currency"],
        "posted_at": iso(doc["posted_at"]),
    }


def bucket(b: Bucket) -> dict[str, Any]:
    return {"count": b.count, "amount": format_money(b.amount)}


def transfer(t: SettledTransfer, r: Reconciliation) -> dict[str, Any]:
    return {
        "practice_id": t.practice_id,
        "merchant_transfer_id": t.merchant_transfer_id,
        "currency": t.currency,
        "expected": bucket(r.expected),
        "loaded": bucket(r.loaded),
        "cleared": bucket(r.cleared),
        "failed": bucket(r.failed),
        "pending": bucket(r.pending),
        "fees_amount": format_money(r.fees_amount),
        "net_amount": format_money(r.net_amount),
        "variance": format_money(r.variance),
        "balanced": r.balanced,
        "not_received": r.missing,
        "unverified_clears": r.unverified_clears,
        "settled_at": iso(t.settled_at),
        "reconciled_at": iso(t.reconciled_at),
    }


def alert(a: Alert) -> dict[str, Any]:
    return {
        "alert_id": a.alert_id, "kind": a.kind.value, "practice_id": a.practice_id,
        "patient_account_id": a.patient_account_id, "payment_id": a.payment_id,
        "state": a.state.value, "opened_at": iso(a.opened_at), "resolved_at": iso(a.resolved_at),
        "escalated_at": iso(a.escalated_at), "title": a.title, "detail": a.detail,
        "delivery": a.delivery.value if a.delivery else None, "delivery_error": a.delivery_error,
        "snoozed_until": iso(a.snoozed_until), "snooze_reason": a.snooze_reason, "snoozed_by": a.snoozed_by,
    }


def audit_entry(e: AuditEntry) -> dict[str, Any]:
    return {"at": iso(e.at), "actor": e.actor, "action": e.action, "reason": e.reason, "detail": e.detail}


def failure_group(g: FailureGroup) -> dict[str, Any]:
    said = load_error(g.key.error_code)  # the words and the fix of the code: said once for the group
    return {"group_id": g.key.group_id, "practice_id": g.key.practice_id, "error_code": g.key.error_code.value,
            "cause": g.key.cause, "message": said.message, "fix": said.fix, "count": g.count,
            "amount": format_money(g.amount), "first_failed_at": iso(g.first_failed_at),
            "last_failed_at": iso(g.last_failed_at)}


def summary(totals: list[StatusTotal]) -> dict[str, Any]:
    """Every Load Status with its count and amount (zero where none), and the whole."""
    found = {t.status: t for t in totals}
    statuses = {s.value: {"count": found[s].count if s in found else 0,
                          "amount": format_money(found[s].amount if s in found else Decimal(0))}
                for s in LoadStatus}
    whole = {"count": sum(t.count for t in totals), "amount": format_money(sum((t.amount for t in totals), Decimal(0)))}
    return {"statuses": statuses, "total": whole}


CANARY_STATES = {"waiting": "waiting", "proceeding": "passed", "proceeded": "passed", "stopping": "stopped",
                 "stopped": "stopped"}


def operation(op: Doc) -> dict[str, Any]:
    canary = op.get("canary")
    shown = {"size": canary["size"], "state": CANARY_STATES[canary["phase"]],
             "payment_ids": canary["payment_ids"]} if canary else None
    return {**op, "created_at": iso(op["created_at"]), "canary": shown}


def practice(p: Practice | PracticeStatus) -> dict[str, Any]:
    """A practice as answers show it: its integration's secrets left out (they are write-only)."""
    status = p if isinstance(p, PracticeStatus) else PracticeStatus(p)
    found = status.practice
    return {"practice_id": found.practice_id, "name": found.name, "ledger": shown(dict(found.ledger)),
            "enabled": found.enabled, "hold": hold(status.hold, status.waiting)}


def practice_listed(p: Practice) -> dict[str, Any]:
    """A practice in the list the console offers: its id, name, and whether its payments load."""
    return {"practice_id": p.practice_id, "name": p.name, "enabled": p.enabled}


def hold(outage: PracticeOutage | None, waiting: int) -> dict[str, Any] | None:
    if outage is None:
        return None
    since = outage.failing_since or outage.held_since
    return {"health": outage.health.value, "since": iso(since), "held_since": iso(outage.held_since),
            "reason": outage.reason, "held_by": outage.held_by, "last_error": outage.last_error,
            "next_try_at": None if outage.by_hand else iso(outage.probe_at), "waiting": waiting}
