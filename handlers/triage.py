"""The office's triage (contract section 8): failure groups, notes, the assignee, snoozed alerts."""

from __future__ import annotations

from datetime import datetime

from paypost.domain.access import EVERY, Scope
from paypost.domain.alerts import MAX_SNOOZE, Alert
from paypost.domain.errors import PaypostError
from paypost.domain.overview import OVERVIEW_LIMIT_MAX, OverviewPage, overview_cursor, overview_offset
from paypost.domain.ports.alerts import AlertStore
from paypost.domain.ports.postings import FailureGroupReader, PostingNotes, PracticeOverviews
from paypost.domain.posting import AuditEntry, PostingKey
from paypost.domain.triage import FailureGroup
from paypost.handlers.clock import Clock, utc_now
from paypost.handlers.practices import NotFound
from paypost.handlers.reversal_alerts import ReversalAlerts


class NotSnoozable(PaypostError, ValueError):
    """A snooze that cannot be: its time is not ahead, is too far ahead, or it has no reason."""


class InvalidOverview(PaypostError, ValueError):
    """An overview page paypost cannot give: a limit out of range."""


class AlertResolved(PaypostError):
    """A resolved alert escalates no more: there is nothing to snooze."""


class NotResolvable(PaypostError, ValueError):
    """A resolve by hand without a reason (contract section 10: the office says why)."""


def posting_not_found(key: PostingKey) -> NotFound:
    return NotFound(f"No posting {key.payment_id} for practice {key.practice_id}.")


def alert_not_found(alert_id: str) -> NotFound:
    return NotFound(f"No alert {alert_id}.")


class Triage:
    def __init__(self, groups: FailureGroupReader, notes: PostingNotes, alerts: AlertStore,
                 clock: Clock = utc_now,
                 resolver: ReversalAlerts | None = None, overviews: PracticeOverviews | None = None) -> None:
        self._groups = groups
        self._overviews = overviews
        self._notes = notes
        self._alerts = alerts
        self._clock = clock
        self._resolver = resolver  # (1.2) resolving an alert by hand: handlers/reversal_alerts.py

    async def failure_groups(self, practice_id: str | None, scope: Scope = EVERY) -> list[FailureGroup]:
        """FAILED postings grouped by practice, Load Error and cause, largest first."""
        return await self._groups.groups(practice_id, scope)

    async def overview(self, scope: Scope, limit: int, cursor: str | None) -> OverviewPage:
        """Every practice in ``scope``, most FAILED payments first, paged (issue 30's first screen)."""
        if not 1 <= limit <= OVERVIEW_LIMIT_MAX:
            raise InvalidOverview(f"limit is from 1 to {OVERVIEW_LIMIT_MAX}.")
        offset = overview_offset(cursor)
        if self._overviews is None:
            return OverviewPage([], 0, None)
        items, total = await self._overviews.overview(scope, limit, offset)
        after = offset + len(items)
        return OverviewPage(items, total, overview_cursor(after) if items and after < total else None)

    async def add_note(self, key: PostingKey, text: str, actor: str) -> tuple[AuditEntry, int]:
        """Add a note to a posting's audit trail; the entry and the posting's notes count."""
        entry = AuditEntry(at=self._clock(), actor=actor, action="note", detail=text.strip())
        count = await self._notes.add_note(key, entry)
        if count is None:
            raise posting_not_found(key)
        return entry, count

    async def assign(self, key: PostingKey, assignee: str | None, actor: str) -> AuditEntry:
        """Mark who is looking at a posting (None: nobody); recorded in its audit trail."""
        assignee = assignee.strip() if assignee else None
        entry = AuditEntry(at=self._clock(), actor=actor, action="assign",
                           detail=f"assigned to {assignee}" if assignee else "unassigned")
        if not await self._notes.assign(key, assignee, entry):
            raise posting_not_found(key)
        return entry

    async def alert(self, alert_id: str) -> Alert:
        found = await self._alerts.get(alert_id)
        if found is None:
            raise alert_not_found(alert_id)
        return found

    async def snooze(self, alert_id: str, until: datetime, reason: str, actor: str) -> Alert:
        """Keep an alert from escalating before ``until`` (ahead of now, within ``MAX_SNOOZE``)."""
        now = self._clock()
        if until.tzinfo is None:
            raise NotSnoozable("until needs a UTC offset (RFC 3339)")
        if until <= now:
            raise NotSnoozable("until must be ahead of now")
        if until > now + MAX_SNOOZE:
            raise NotSnoozable(f"an alert is snoozed for {MAX_SNOOZE.days} days at most")
        if not reason.strip():
            raise NotSnoozable("a snooze needs a non-empty reason")
        snoozed = await self._alerts.snooze(alert_id, until, reason.strip(), actor, now)
        if snoozed is None:
            if await self._alerts.get(alert_id) is None:
                raise alert_not_found(alert_id)
            raise AlertResolved(f"Alert {alert_id} is resolved: it escalates no more.")
        return snoozed

    async def resolve(self, alert_id: str, reason: str, actor: str) -> Alert:
        """Resolve an open alert by hand, with a reason, recorded in its posting's audit trail
        (contract section 10: a reversal's alerts are resolved by the office)."""
        if not reason.strip():
            raise NotResolvable("resolving an alert needs a non-empty reason")
        assert self._resolver is not None  # the composition root gives it
        resolved = await self._resolver.resolve_by_hand(alert_id, reason.strip(), actor)
        if resolved is None:
            if await self._alerts.get(alert_id) is None:
                raise alert_not_found(alert_id)
            raise AlertResolved(f"Alert {alert_id} is resolved already.")
        return resolved
