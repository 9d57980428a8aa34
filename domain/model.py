"""Postings, their load statuses and the transitions between them."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from paypost.domain.errors import IllegalTransition, LoadFailure
from paypost.domain.load_errors import LoadErrorCode


class LoadStatus(enum.StrEnum):
    """Where a posting stands, as the Load Status column shows it."""

    PENDING = "PENDING"
    LOADED = "LOADED"
    FAILED = "FAILED"
    RETRYING = "RETRYING"
    CLEARED = "CLEARED"
    HELD = "HELD"  # its practice's system is unreachable: it loads by itself when the system is back


class PostingKind(enum.StrEnum):
    """What a row of the Merchant Transfers report stands for."""

    PAYMENT = "payment"
    REFUND = "refund"
    # Money that moves back (contract section 10): each a posting of its own against its payment.
    VOID = "void"
    RETURN = "return"
    CHARGEBACK = "chargeback"
    DISPUTE_WON = "dispute_won"  # a won dispute gives its chargeback's amount back
    UNREADABLE = "unreadable"


# Which status may follow which. PENDING, RETRYING and HELD are "in flight": the only
# states from which a ledger entry may be made, so that a clear (allowed only from
# FAILED) can never race a load into both LOADED and CLEARED.
ALLOWED_TRANSITIONS: Mapping[LoadStatus, frozenset[LoadStatus]] = {
    LoadStatus.PENDING: frozenset({LoadStatus.LOADED, LoadStatus.FAILED, LoadStatus.HELD}),
    LoadStatus.RETRYING: frozenset({LoadStatus.LOADED, LoadStatus.FAILED, LoadStatus.HELD}),
    # HELD is in flight too: it waits for its practice's system (contract section 7), and nobody acts on it.
    LoadStatus.HELD: frozenset({LoadStatus.LOADED, LoadStatus.FAILED}),
    LoadStatus.FAILED: frozenset({LoadStatus.RETRYING, LoadStatus.CLEARED}),
    LoadStatus.LOADED: frozenset(),
    LoadStatus.CLEARED: frozenset(),
}

def can_transition(current: LoadStatus, target: LoadStatus) -> bool:
    """Whether ``current`` may become ``target``."""
    return target in ALLOWED_TRANSITIONS[current]


def check_transition(current: LoadStatus, target: LoadStatus) -> None:
    """Raise :class:`IllegalTransition` unless ``current`` may become ``target``."""
    if not can_transition(current, target):
        raise IllegalTransition(current.value, target.value)


def sources_of(target: LoadStatus) -> frozenset[LoadStatus]:
    """Every status from which ``target`` may be reached: the condition of the write that makes it."""
    return frozenset(s for s, targets in ALLOWED_TRANSITIONS.items() if target in targets)


# In flight: a ledger entry may be made (the only states an outcome may be written from).
IN_FLIGHT = sources_of(LoadStatus.LOADED) & sources_of(LoadStatus.FAILED)
# Nothing follows them: a republish or a retry never changes them.
FINAL = frozenset(s for s, targets in ALLOWED_TRANSITIONS.items() if not targets)
# A patient account with a posting in these is still failing: its patient flag stays open.
STILL_FAILING = frozenset({LoadStatus.FAILED, LoadStatus.RETRYING})
# May be held when its practice's system is unreachable: what is in flight and not held yet.
HOLDABLE = sources_of(LoadStatus.HELD)


class Delivery(enum.Enum):
    """What the posting consumer does with a payment message, given the posting it finds."""

    LOAD = "load"  # in flight: try to load it now
    REPLAY_NEW_BODY = "replay_new_body"  # FAILED and republished: an upstream correction
    ALREADY_DONE = "already_done"  # LOADED or CLEARED: a republish never changes it


def decide_delivery(existing: LoadStatus) -> Delivery:
    """Decide what a delivery of a payment that paypost already holds means."""
    if existing in FINAL:
        return Delivery.ALREADY_DONE
    if existing is LoadStatus.FAILED:
        return Delivery.REPLAY_NEW_BODY
    return Delivery.LOAD


@dataclass(frozen=True, slots=True)
class PatientChoice:
    """The practice-management patient a posting goes to, and where that id came from."""

    ehr_patient_id: str
    source: str  # "mapping" or "event"


def choose_patient(held_mapping: str | None, event_ehr_patient_id: str | None) -> PatientChoice:
    """Pick the practice-management patient id for a payment.

    A mapping that paypost holds is newer knowledge and wins over the id the event carries;
    the event's id is used where paypost holds none.
    """
    if held_mapping:
        return PatientChoice(held_mapping, "mapping")
    if event_ehr_patient_id:
        return PatientChoice(event_ehr_patient_id, "event")
    raise LoadFailure(LoadErrorCode.PATIENT_NOT_MAPPED)
