"""Practices as tenants: the application as one caller may use it (contract section 6).

``Application.for_principal`` hands an entrypoint these wrappers instead of the handlers: each
call naming a practice outside the caller's scope raises the same ``NotFound`` as a practice that
is not set up (before anything else is looked at, so the answer says nothing about that practice),
lists and the live feed hold only in-scope practices, and a change beyond the caller's role raises
``AccessDenied``, in that order: out of scope is 404 whatever the role.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import fields, replace
from datetime import datetime
from typing import Any

from paypost.domain.access import AccessDenied, ApiKey, Principal, Role
from paypost.domain.access_trail import AccessQuery, Via
from paypost.domain.alerts import Alert, AlertState, practice_named_by
from paypost.domain.integrations import Practice
from paypost.domain.overview import OverviewPage
from paypost.domain.patient_search import PatientMatch
from paypost.domain.ports import Record
from paypost.domain.ports.events import BroadcastEvent, EventFeed
from paypost.domain.ports.postings import FailedSelection, PostingFilter, StatusTotal
from paypost.domain.posting import AuditEntry, PostingKey
from paypost.domain.reconciliation import Reconciliation
from paypost.domain.rules import ItemResult
from paypost.domain.transfers import SettledTransfer
from paypost.domain.triage import FailureGroup
from paypost.handlers.access_trail import AccessTrail
from paypost.handlers.changes import SaveChanges, Selection
from paypost.handlers.keys import ApiKeys
from paypost.handlers.mappings import MappingService
from paypost.handlers.month_end import MonthEnd, ScopedMonthEnd
from paypost.handlers.practices import Practices, PracticeStatus, practice_not_found
from paypost.handlers.reports import Reports, operation_not_found
from paypost.handlers.retention import RetentionService
from paypost.handlers.triage import Triage, alert_not_found
from paypost.schemas.messages import ClearItem


class Guard:
    """The one check: in scope (else not found), then within the role (else denied)."""

    def __init__(self, who: Principal) -> None:
        self.who = who
        self.named: list[str] = []  # the practices this call named, for the access log

    def read(self, practice_id: str) -> None:
        if practice_id not in self.named:
            self.named.append(practice_id)
        if not self.who.scope.covers(practice_id):
            raise practice_not_found(practice_id)

    def change(self, practice_id: str) -> None:
        self.read(practice_id)
        if not self.who.role.may_change:
            raise AccessDenied(f"{self.who.name} has the viewer role, which cannot change anything.")


class ScopedPractices:
    def __init__(self, inner: Practices, guard: Guard) -> None:
        self._inner, self._guard = inner, guard

    async def in_scope(self) -> list[Practice]:
        return await self._inner.in_scope(self._guard.who.scope)

    async def put(self, practice_id: str, name: str, ledger: Record, enabled: bool) -> Practice:
        self._guard.change(practice_id)
        return await self._inner.put(practice_id, name, ledger, enabled)

    async def get(self, practice_id: str) -> PracticeStatus:
        self._guard.read(practice_id)
        return await self._inner.get(practice_id)

    async def hold(self, practice_id: str, reason: str) -> PracticeStatus:
        self._guard.change(practice_id)
        return await self._inner.hold(practice_id, reason, self._guard.who.name)

    async def release(self, practice_id: str) -> PracticeStatus:
        self._guard.change(practice_id)
        return await self._inner.release(practice_id, self._guard.who.name)

    async def search_patients(self, practice_id: str, query: str, limit: int) -> list[PatientMatch]:
        self._guard.change(practice_id)  # an operator's (contract section 14): it finds a patient to map
        return await self._inner.search_patients(practice_id, query, limit)

    async def register_patient(self, practice_id: str, ehr_patient_id: str) -> bool:
        self._guard.change(practice_id)
        return await self._inner.register_patient(practice_id, ehr_patient_id)

    async def ledger(self, practice_id: str, ehr_patient_id: str) -> list[Record]:
        self._guard.read(practice_id)
        return await self._inner.ledger(practice_id, ehr_patient_id)


class ScopedMappings:
    def __init__(self, inner: MappingService, guard: Guard) -> None:
        self._inner, self._guard = inner, guard

    async def update(self, practice_id: str, patient_account_id: str, ehr_patient_id: str, actor: str,
                     source: str) -> int:
        self._guard.change(practice_id)
        return await self._inner.update(practice_id, patient_account_id, ehr_patient_id, actor, source)


class ScopedSaveChanges:
    def __init__(self, inner: SaveChanges, guard: Guard) -> None:
        self._inner, self._guard = inner, guard

    async def __call__(self, practice_id: str, retry: Sequence[str], clear: Sequence[ClearItem],
                       operator: str, selection: Selection | None = None) -> str:
        self._guard.change(practice_id)
        return await self._inner(practice_id, retry, clear, operator, selection)

    async def cancel(self, operation: Record, operator: str) -> bool:
        """Stop an operation (read through ScopedReports, so one out of scope is not found): an operator's."""
        self._guard.change(str(operation["practice_id"]))
        return await self._inner.cancel(str(operation["operation_id"]), operator)

    async def preview(self, practice_id: str, selection: Selection) -> list[ItemResult]:
        """A dry run changes nothing, but says what a change would do: the same role is needed."""
        self._guard.change(practice_id)
        return await self._inner.preview(practice_id, selection)


class ScopedReports:
    def __init__(self, inner: Reports, guard: Guard) -> None:
        self._inner, self._guard = inner, guard

    async def page(self, where: PostingFilter, limit: int, cursor: str | None) -> tuple[list[Record], str | None]:
        if where.practice_id is not None:
            self._guard.read(where.practice_id)
        return await self._inner.page(replace(where, scope=self._guard.who.scope), limit, cursor)

    async def summary(self, where: PostingFilter) -> list[StatusTotal]:
        if where.practice_id is not None:
            self._guard.read(where.practice_id)
        return await self._inner.summary(replace(where, scope=self._guard.who.scope))

    async def posting(self, key: PostingKey) -> Record:
        self._guard.read(key.practice_id)
        return await self._inner.posting(key)

    def every_row(self, where: PostingFilter) -> AsyncIterator[Record]:
        if where.practice_id is not None:
            self._guard.read(where.practice_id)
        return self._inner.every_row(replace(where, scope=self._guard.who.scope))

    async def rows(self, practice_id: str, payment_ids: Sequence[str]) -> list[Record]:
        self._guard.read(practice_id)
        return await self._inner.rows(practice_id, payment_ids)

    async def failed(self, selection: FailedSelection) -> list[PostingKey]:
        self._guard.read(selection.practice_id)
        return await self._inner.failed(selection)

    async def operation(self, operation_id: str) -> Record:
        op = await self._inner.operation(operation_id)
        if not self._guard.who.scope.covers(str(op.get("practice_id"))):
            raise operation_not_found(operation_id)  # as if it did not exist
        return op

    async def transfer(self, practice_id: str, merchant_transfer_id: str) -> tuple[SettledTransfer, Reconciliation]:
        self._guard.read(practice_id)
        return await self._inner.transfer(practice_id, merchant_transfer_id)

    async def alerts(self, practice_id: str | None, state: AlertState | None, limit: int) -> list[Alert]:
        if practice_id is not None:
            self._guard.read(practice_id)
        return await self._inner.alerts(practice_id, state, limit, self._guard.who.scope)


class ScopedTriage:
    def __init__(self, inner: Triage, guard: Guard) -> None:
        self._inner, self._guard = inner, guard

    async def failure_groups(self, practice_id: str | None) -> list[FailureGroup]:
        if practice_id is not None:
            self._guard.read(practice_id)
        return await self._inner.failure_groups(practice_id, self._guard.who.scope)

    async def overview(self, limit: int, cursor: str | None) -> OverviewPage:
        return await self._inner.overview(self._guard.who.scope, limit, cursor)

    async def add_note(self, key: PostingKey, text: str) -> tuple[AuditEntry, int]:
        self._guard.change(key.practice_id)
        return await self._inner.add_note(key, text, self._guard.who.name)

    async def assign(self, key: PostingKey, assignee: str | None) -> AuditEntry:
        self._guard.change(key.practice_id)
        return await self._inner.assign(key, assignee, self._guard.who.name)

    async def _may_change_alert(self, alert_id: str) -> None:
        """An alert this key may change: in scope (else as if it did not exist), and an operator's."""
        named = practice_named_by(alert_id)
        if named is not None:
            self._guard.read(named)  # a practice out of scope: as if it did not exist, before any lookup
        found = await self._inner.alert(alert_id)
        if not self._guard.who.scope.covers(found.practice_id):
            raise alert_not_found(alert_id)  # as if it did not exist
        self._guard.change(found.practice_id)

    async def snooze(self, alert_id: str, until: datetime, reason: str) -> Alert:
        await self._may_change_alert(alert_id)
        return await self._inner.snooze(alert_id, until, reason, self._guard.who.name)

    async def resolve(self, alert_id: str, reason: str) -> Alert:
        """(1.2) Resolve an alert by hand: in scope, an operator's change."""
        await self._may_change_alert(alert_id)
        return await self._inner.resolve(alert_id, reason, self._guard.who.name)


class ScopedFeed:
    """The live feed with only the events of in-scope practices."""

    def __init__(self, inner: EventFeed, guard: Guard) -> None:
        self._inner, self._guard = inner, guard

    async def subscribe(self, still_valid: Callable[[], Awaitable[bool]] | None = None,
                        check_every: float = 5.0) -> AsyncIterator[BroadcastEvent]:
        """In-scope events from now on. With ``still_valid``, it is asked at least every
        ``check_every`` seconds (between events, or while none comes) and the feed ends once it
        says no: a key revoked or expired does not keep an open feed."""
        scope = self._guard.who.scope
        events = self._inner.subscribe()
        loop = asyncio.get_running_loop()
        next_check = loop.time() + check_every
        coming: asyncio.Future[BroadcastEvent] | None = None
        try:
            while True:
                if coming is None:
                    coming = asyncio.ensure_future(anext(events))
                wait = None if still_valid is None else max(0.0, next_check - loop.time())
                done, _ = await asyncio.wait({coming}, timeout=wait)
                if coming in done:
                    try:
                        event = coming.result()
                    except StopAsyncIteration:
                        return
                    coming = None
                    if scope.covers(str(event.body.get("practice_id"))):
                        yield event
                if still_valid is not None and loop.time() >= next_check:
                    if not await still_valid():
                        return
                    next_check = loop.time() + check_every
        finally:
            if coming is not None:
                coming.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await coming
            close = getattr(events, "aclose", None)  # an async generator's: its own clean-up runs now
            if close is not None:
                with contextlib.suppress(RuntimeError):  # one cancelled mid-step may refuse a second close
                    await close()


class ScopedKeys:
    """Key management as the caller may do it (the admin's own role and scope bound it)."""

    def __init__(self, inner: ApiKeys, guard: Guard) -> None:
        self._inner, self._who = inner, guard.who

    async def create(self, name: str, role: Role, practices: Iterable[str],
                     expires_at: datetime | None) -> tuple[ApiKey, str]:
        return await self._inner.create(self._who, name, role, practices, expires_at)

    async def listed(self) -> list[ApiKey]:
        return await self._inner.listed(self._who)

    async def revoke(self, key_id: str) -> ApiKey:
        return await self._inner.revoke(self._who, key_id)

    async def trail(self) -> list[Record]:
        return await self._inner.trail(self._who)


class ScopedAccess:
    """The access trail as one call records it (contract section 12), and as an admin reads it."""

    def __init__(self, inner: AccessTrail, guard: Guard, via: Via) -> None:
        self._inner, self._guard, self._via = inner, guard, via

    @staticmethod
    def _filters(filters: Mapping[str, object] | PostingFilter | None) -> dict[str, str]:
        """A filter as the entry keeps it: what was set, in words."""
        if filters is None:
            return {}
        items = filters.items() if isinstance(filters, Mapping) else \
            [(f.name, getattr(filters, f.name)) for f in fields(filters)]
        return {k: v.isoformat() if isinstance(v, datetime) else str(v) for k, v in items
                if v is not None and k != "scope"}

    def read(self, rows: Sequence[Mapping[str, Any]], filters: Mapping[str, object] | PostingFilter | None = None,
             ) -> None:
        """Record that this call showed ``rows`` (a list, a posting, a ledger, alerts)."""
        kept = self._filters(filters)
        self._inner.shown(self._guard.who, self._via, "read", rows, kept.get("practice_id"), kept)

    def search(self, rows: Sequence[Mapping[str, Any]], practice_id: str) -> None:
        """Record a patient search's answer (its count; neither the query nor the answer is kept)."""
        self._inner.shown(self._guard.who, self._via, "search", [{} for _ in rows], practice_id,
                          {"practice_id": practice_id})

    def export(self, rows: AsyncIterator[Record], filters: Mapping[str, object] | PostingFilter | None = None,
               ) -> AsyncIterator[Record]:
        """``rows`` as an export streams them, recorded when it ends."""
        kept = self._filters(filters)
        return self._inner.exported(self._guard.who, self._via, rows, kept.get("practice_id"), kept)

    async def page(self, query: AccessQuery, limit: int, cursor: str | None) -> tuple[list[Record], str | None]:
        if query.practice_id is not None:
            self._guard.read(query.practice_id)
        return await self._inner.page(self._guard.who, query, limit, cursor)


class ScopedRetention:
    def __init__(self, inner: RetentionService, guard: Guard) -> None:
        self._inner, self._guard = inner, guard

    async def hold(self, practice_id: str, reason: str) -> Record:
        self._guard.change(practice_id)
        return await self._inner.hold(self._guard.who, practice_id, reason)

    async def lift(self, practice_id: str) -> Record:
        self._guard.change(practice_id)
        return await self._inner.lift(self._guard.who, practice_id)


class ScopedApplication:
    """What a route or command holds for one caller: every handler, narrowed to its scope and role."""

    def __init__(self, who: Principal, practices: Practices, mappings: MappingService, save_changes: SaveChanges,
                 reports: Reports, feed: EventFeed, keys: ApiKeys, triage: Triage, access: AccessTrail,
                 retention: RetentionService, via: Via, *, month_end: MonthEnd | None = None) -> None:
        guard = Guard(who)
        self.who = who
        self.guard = guard
        self.practices = ScopedPractices(practices, guard)
        self.mappings = ScopedMappings(mappings, guard)
        self.save_changes = ScopedSaveChanges(save_changes, guard)
        self.reports = ScopedReports(reports, guard)
        self.feed = ScopedFeed(feed, guard)
        self.keys = ScopedKeys(keys, guard)
        self.triage = ScopedTriage(triage, guard)
        self.access = ScopedAccess(access, guard, via)
        self.retention = ScopedRetention(retention, guard)
        self.month_end = ScopedMonthEnd(month_end, guard) if month_end is not None else None
