"""Who saw which patients' payments (contract section 12): the access trail's entries, and how long
postings and their trails are kept (retention, legal hold).

Plain values and rules, no storage: the entries are kept by ``infra/mongo/access_log.py``, the
purge by ``infra/mongo/retention.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from paypost.domain.access import Principal

Action = Literal["read", "export", "search"]

# A list or an export longer than this records its filters and count, not every payment id.
LISTED_IDS_MAX = 500


@dataclass(frozen=True, slots=True)
class Via:
    """How a call reached paypost: the caller's address (``X-Forwarded-For`` only from a trusted
    proxy) and the route's template (``/api/v1/postings``), never its query string."""

    client: str = "unknown"
    route: str = "unknown"


@dataclass(frozen=True, slots=True)
class AccessEntry:
    """One answer that showed patient data, as the access trail records it."""

    at: datetime
    key_id: str | None
    key_name: str
    role: str
    client: str
    action: Action
    route: str
    practice_id: str | None
    payment_ids: tuple[str, ...] | None  # None: too many to list (``filters`` and ``count`` say what)
    count: int
    filters: Mapping[str, str] | None = None
    # Not shown in an entry: what ``GET /access-log?patient_account_id=`` finds the entry by.
    patient_account_ids: tuple[str, ...] = ()


def access_entry(who: Principal, via: Via, action: Action, at: datetime, *, practice_id: str | None,
                 payment_ids: list[str], count: int | None = None, filters: Mapping[str, str] | None = None,
                 patient_account_ids: set[str] | None = None) -> AccessEntry:
    """The entry for ``who`` having been shown ``payment_ids``: over ``LISTED_IDS_MAX`` of them, the
    filters and the count stand for the ids (a platform's export may hold a million rows)."""
    shown = count if count is not None else len(payment_ids)
    too_many = shown > LISTED_IDS_MAX
    accounts = sorted(patient_account_ids or ())
    return AccessEntry(
        at=at, key_id=who.key_id, key_name=who.name, role=who.role.value, client=via.client, action=action,
        route=via.route, practice_id=practice_id, payment_ids=None if too_many else tuple(payment_ids),
        count=shown, filters=dict(filters or {}) if too_many or filters else None,
        patient_account_ids=() if len(accounts) > LISTED_IDS_MAX else tuple(accounts),
    )


@dataclass(frozen=True, slots=True)
class AccessQuery:
    """``GET /access-log``'s filters."""

    practice_id: str | None = None
    payment_id: str | None = None
    patient_account_id: str | None = None
    key_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Retention:
    """How long paypost keeps what it holds (contract section 12)."""

    days: int = 2557  # postings, their trails, access entries: after their last change
    message_days: int = 30  # the kept message body of a LOADED or CLEARED posting

    def cutoffs(self, now: datetime) -> tuple[datetime, datetime]:
        """(before this, a posting or access entry goes; before this, a settled message body goes)."""
        return now - timedelta(days=self.days), now - timedelta(days=self.message_days)


@dataclass
class PurgeCounts:
    """What a purge removed (or, dry, would remove)."""

    postings: int = 0
    audit_entries: int = 0  # the removed postings' trail entries
    access_entries: int = 0
    message_bodies: int = 0
    held_practices: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, int]:
        return {"postings": self.postings, "audit_entries": self.audit_entries,
                "access_entries": self.access_entries, "message_bodies": self.message_bodies}
