"""Office tasks and patient flags: when they open, resolve and escalate.

A FAILED posting opens its office task (one per posting, ever) and its patient account's flag
(one open flag per account). A posting that loads or is cleared after failing resolves its task;
the account's flag resolves once none of the account's postings is still failing
(``paypost.domain.model.STILL_FAILING``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from paypost.domain.posting import Posting, PostingKey


class AlertKind(enum.StrEnum):
    TASK = "task"
    PATIENT = "patient"


class AlertState(enum.StrEnum):
    OPEN = "open"
    ESCALATED = "escalated"
    RESOLVED = "resolved"


class Delivery(enum.StrEnum):
    """Where an alert stands in the practice's system (its outbox, contract section 7)."""

    PENDING = "pending"  # to be sent (or sent again: it changed)
    SENT = "sent"  # the system has its latest state
    WAITING_FOR_MAPPING = "waiting_for_mapping"  # a patient flag for an account with no mapping yet
    NOT_SENT = "not_sent"  # the practice has no such system, or its integration says tasks: false


# Which state may follow which: an open alert escalates once (when it stays open too long and is not
# snoozed), and an open or escalated alert resolves; nothing follows a resolved one (a new failure
# opens a new flag, and a posting has one task, ever).
ALERT_TRANSITIONS: Mapping[AlertState, frozenset[AlertState]] = {
    AlertState.OPEN: frozenset({AlertState.ESCALATED, AlertState.RESOLVED}),
    AlertState.ESCALATED: frozenset({AlertState.RESOLVED}),
    AlertState.RESOLVED: frozenset(),
}


def alert_sources_of(target: AlertState) -> frozenset[AlertState]:
    """Every state from which ``target`` may be reached: the condition of the write that makes it."""
    return frozenset(s for s, targets in ALERT_TRANSITIONS.items() if target in targets)


def alert_may_become(current: AlertState, target: AlertState) -> bool:
    return target in ALERT_TRANSITIONS[current]


# ``state=open`` includes escalated alerts (contract section 3): what may still resolve.
MAX_SNOOZE = timedelta(days=90)  # how far ahead an alert may be snoozed (contract section 8)
OPEN_STATES = alert_sources_of(AlertState.RESOLVED)
ESCALATES_FROM = alert_sources_of(AlertState.ESCALATED)


def snoozed_past(snoozed_until: datetime | None, now: datetime) -> bool:
    """A snooze holds until its end: an alert snoozed until ``now`` or before may escalate again."""
    return snoozed_until is not None and snoozed_until > now


def may_escalate(state: AlertState, opened_at: datetime, due_before: datetime, snoozed_until: datetime | None,
                 now: datetime) -> bool:
    """An alert escalates when it is open (not escalated yet), was opened before ``due_before`` (it
    stayed open too long) and is not snoozed past ``now`` (contract section 8)."""
    return state in ESCALATES_FROM and opened_at <= due_before and not snoozed_past(snoozed_until, now)


@dataclass(frozen=True, slots=True)
class Alert:
    """An office task or a patient flag, as dashboards and the office see it."""

    alert_id: str
    kind: AlertKind
    practice_id: str
    patient_account_id: str | None
    payment_id: str | None
    state: AlertState
    opened_at: datetime
    resolved_at: datetime | None = None
    escalated_at: datetime | None = None
    title: str | None = None  # as the office reads it in its practice-management system
    detail: str | None = None
    delivery: Delivery | None = None  # where it stands in the practice's system
    delivery_error: str | None = None  # why the last try to send it there failed
    snoozed_until: datetime | None = None  # not escalated before then (contract section 8)
    snooze_reason: str | None = None
    snoozed_by: str | None = None
    # (1.2) a reversal's flag knows its patient (the one the payment went to): it goes to the
    # practice's system without waiting for a mapping (a mapping held is newer knowledge and wins).
    ehr_patient_id: str | None = None


OUTAGE_TITLE = "The practice-management system is unreachable: payments are held"


def task_id(key: PostingKey) -> str:
    """A posting has one office task, ever: its id is the posting's."""
    return f"task:{key.practice_id}:{key.payment_id}"


def practice_named_by(alert_id: str) -> str | None:
    """The practice an alert's id names (``task:<practice>:...``, ``patient:<practice>:...``), if any:
    practice ids hold no colon, so it is the second part."""
    kind, _, rest = alert_id.partition(":")
    practice, sep, _ = rest.partition(":")
    return practice if kind in (AlertKind.TASK.value, AlertKind.PATIENT.value) and sep and practice else None


def flag_opens(posting: Posting) -> bool:
    """A failure flags its patient when the posting's patient account is known."""
    return posting.patient_account_id is not None



def task_text(posting: Posting) -> tuple[str, str]:
    """A failed posting's office task as the office reads it in its practice-management system:
    ids, the amount and the Load Error, never patient detail beyond the ids (contract section 7)."""
    code = posting.load_error.code.value if posting.load_error else "FAILED"
    what = "Refund" if posting.refunded_payment_id else "Payment"
    title = f"{what} {posting.key.payment_id} did not load: {code}"
    parts = [f"{_amount(posting)} {what.lower()} {posting.key.payment_id}"]
    if posting.patient_account_id:
        parts.append(f"for patient account {posting.patient_account_id}")
    detail = " ".join(parts) + "."
    if posting.load_error:
        detail += f" {posting.load_error.message} What fixes it: {posting.load_error.fix}"
    return title, detail


def flag_text(posting: Posting) -> tuple[str, str]:
    """A patient's flag: a payment of theirs did not load (the first; the flag is one per account)."""
    code = posting.load_error.code.value if posting.load_error else "FAILED"
    return ("A payment of this patient did not load",
            f"{_amount(posting)} payment {posting.key.payment_id} of patient account {posting.patient_account_id} "
            f"did not load ({code}); the flag clears when every failed payment of the account is loaded or cleared.")


def _amount(posting: Posting) -> str:
    if posting.amount is None:
        return "A"
    return f"{posting.amount:.2f} {posting.currency or ''}".strip()


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """An alert whose latest change the practice's system has not got yet."""

    alert: Alert
    version: int  # grows with every change the system must see
    put: bool  # the system holds it (a PUT reached it), so resolving it needs a DELETE
    put_patient_id: str | None  # a flag's practice-management patient, as it was PUT
    attempts: int = 0


def wants_put(alert: Alert) -> bool:
    """An open or escalated alert is PUT; a resolved one DELETEd (if the system holds it)."""
    return alert.state in OPEN_STATES
