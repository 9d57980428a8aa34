"""A practice's month (contract section 11): its report and readiness, its close, and what arrives
after it was closed (loaded all the same, marked late, and an office task)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import structlog

from paypost.domain.alerts import Alert
from paypost.domain.events import PostingLoaded
from paypost.domain.model import LoadStatus
from paypost.domain.periods import (
    MonthReport,
    PeriodClosed,
    PeriodError,
    PeriodNotReady,
    PeriodRow,
    digest,
    month_bounds,
    month_of,
    report,
)
from paypost.domain.ports import Record
from paypost.domain.ports.deposits import PeriodSettings, PeriodStore
from paypost.domain.ports.practices import PracticeDirectory
from paypost.domain.posting import PAYPOST_ACTOR, AuditEntry, Posting, PostingKey
from paypost.handlers.clock import Clock, utc_now
from paypost.handlers.practices import practice_not_found

log = structlog.get_logger("paypost.periods")

OpenLateTask = Callable[[Posting, str], Awaitable[Alert | None]]
AnnounceAlert = Callable[[Alert, Posting], Awaitable[None]]
PostingLookup = Callable[[PostingKey], Awaitable[Posting | None]]


@dataclass(frozen=True, slots=True)
class Month:
    report: MonthReport
    rows: list[PeriodRow]
    close: Record | None  # the close's record, if the month is closed


class Periods:
    def __init__(self, store: PeriodStore, settings: PeriodSettings, directory: PracticeDirectory,
                 open_late_task: OpenLateTask, announce: AnnounceAlert, clock: Clock = utc_now,
                 posting: PostingLookup | None = None) -> None:
        """``posting``: a posting by its key, to mark late one that loaded while its month was closing."""
        self._store = store
        self._posting = posting
        self._settings = settings
        self._directory = directory
        self._open_late_task = open_late_task
        self._announce = announce
        self._clock = clock
        # Each time zone's month now, as instants [start, end): a payment of it needs no conversion.
        self._this_month: dict[str, tuple[datetime, datetime]] = {}

    async def month(self, practice_id: str, month: str) -> Month:
        """The month's figures, rows, readiness and close (``PeriodError`` for a month not written YYYY-MM)."""
        if await self._directory.get_practice(practice_id) is None:
            raise practice_not_found(practice_id)
        time_zone, _ = await self._settings.settings_of(practice_id)
        start, end = month_bounds(month, time_zone)
        rows = await self._store.rows(practice_id, start, end)
        facts = await self._store.facts(practice_id, start, end)
        return Month(report(month, time_zone, rows, facts), rows, await self._store.closed(practice_id, month))

    async def close(self, practice_id: str, month: str, note: str, actor: str, *, force: bool = False,
                    reason: str | None = None) -> Month:
        """Close a ready month, recording its totals and a digest of its rows; ``PeriodNotReady`` with its
        blockers unless ``force`` (with a reason); ``PeriodClosed`` if it is closed already."""
        current = await self.month(practice_id, month)
        if current.close is not None:
            raise PeriodClosed(f"{month} is closed already (by {current.close.get('closed_by')}).")
        if force and not (reason or "").strip():
            raise PeriodError("A forced close needs a reason.")
        if current.report.blockers and not force:
            raise PeriodNotReady(current.report.blockers)
        if month >= month_of(self._clock(), current.report.time_zone):
            raise PeriodError(f"{month} has not ended yet in {current.report.time_zone}.")
        r = current.report
        record: Record = {
            "closed_at": self._clock(), "closed_by": actor, "note": note, "forced": force,
            "reason": reason if force else None, "time_zone": r.time_zone, "rows": len(current.rows),
            "digest": digest(current.rows), "net_amount": r.net_amount,
            "totals": {kind: {"count": t.count, "amount": t.amount} for kind, t in sorted(r.by_kind.items())},
            "blockers": [{"kind": b.kind, "count": b.count, "amount": b.amount} for b in r.blockers],
            "audit": [{"at": self._clock(), "actor": actor, "action": "close", "reason": reason if force else note,
                       "detail": f"{len(current.rows)} rows, net {r.net_amount}, digest {digest(current.rows)}"
                                 + (f"; forced past {len(r.blockers)} blockers" if force else "")}],
        }
        if not await self._store.record_close(practice_id, month, record):
            raise PeriodClosed(f"{month} is closed already.")
        log.info("period_closed", practice_id=practice_id, month=month, rows=len(current.rows), forced=force)
        closed = await self.month(practice_id, month)
        await self._late_while_closing(practice_id, current.rows, closed.rows)
        return await self.month(practice_id, month) if self._posting is not None else closed

    async def _late_while_closing(self, practice_id: str, digested: list[PeriodRow], now: list[PeriodRow]) -> None:
        """A posting of the month that loaded between the close's read and its record is not in the
        digest, and its load saw the month still open: it is late, as one that arrives after."""
        if self._posting is None:
            return
        known = {row.payment_id for row in digested}
        for row in now:
            if row.payment_id in known or row.load_status != LoadStatus.LOADED.value or row.late_for_closed_period:
                continue
            posting = await self._posting(PostingKey(practice_id, row.payment_id))
            if posting is not None:
                await self.loaded(PostingLoaded(posting, had_failed=False))

    def _month_now(self, time_zone: str) -> tuple[datetime, datetime]:
        """The current month in ``time_zone``, as the instants it starts and ends (kept until it ends)."""
        now = self._clock()
        known = self._this_month.get(time_zone)
        if known is None or not known[0] <= now < known[1]:
            known = self._this_month[time_zone] = month_bounds(month_of(now, time_zone), time_zone)
        return known

    async def loaded(self, event: PostingLoaded) -> None:
        """A posting of a closed month loaded: mark it late, and open an office task (once)."""
        posting = event.posting
        if posting.occurred_at is None:
            return
        practice_id = posting.key.practice_id
        time_zone, _ = await self._settings.settings_of(practice_id)
        if posting.occurred_at >= self._month_now(time_zone)[0]:
            return  # the current month (or a later one) is never closed: no round trip on the busy path
        month = month_of(posting.occurred_at, time_zone)
        if month not in await self._store.closed_months(practice_id):
            return
        audit = AuditEntry(self._clock(), PAYPOST_ACTOR, "late_for_closed_period",
                           detail=f"arrived after {month} was closed")
        if await self._store.mark_late(practice_id, posting.key.payment_id, month, audit):
            log.warning("late_for_closed_period", practice_id=practice_id, payment_id=posting.key.payment_id,
                        month=month)
            task = await self._open_late_task(posting, month)
            if task is not None:
                await self._announce(task, posting)
