"""Office tasks and patient flags: when they open, resolve and escalate.

A FAILED posting opens its office task (one per posting, ever) and its patient account's flag
(one open flag per account). A posting that loads or is cleared after failing resolves its task;
the account's flag resolves once none of the account's postings is still failing
(``domain.model.STILL_FAILING``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from domain.posting import Posting, PostingKey


class AlertKind(enum.StrEnum):
    TASK = "task"
    PATIENT = "patient"


class AlertState(enum.StrEnum):
    OPEN = "open"
    ESCALATED = "escalated"
    RESOLVED = "resolved"


# ``state=open`` includes escalated alerts (contract section 3).
OPEN_STATES = frozenset({AlertState.OPEN, AlertState.ESCALATED})


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
    snoozed_until: datetime | None = None  # not escalated before then (contract section 8)
    snooze_reason: str | None = None
    snoozed_by: str | None = None


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

