"""A payment of a month that loads while the month is being closed (after the close read its rows,
before its record was written) is neither in the close's digest nor seen late by its own load: the
close marks it late itself, with its office task (contract section 11)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from paypost.domain.alerts import Alert
from paypost.domain.deposits import ReconciliationSettings
from paypost.domain.events import PostingLoaded
from paypost.domain.model import LoadStatus, PostingKind
from paypost.domain.periods import MonthFacts, PeriodRow, Total
from paypost.domain.posting import AuditEntry, Posting, PostingKey
from paypost.handlers.periods import Periods

MONTH = "2026-10"
OCCURRED = datetime(2026, 10, 15, 12, tzinfo=UTC)


def row(payment_id: str) -> PeriodRow:
    return PeriodRow(payment_id=payment_id, kind="payment", method="card", amount=Decimal("10.00"), currency="USD",
                     occurred_at=OCCURRED, load_status="LOADED", clear_verified=None, merchant_transfer_id=None)


class Store:
    """The month's postings; one more loads just as the close's record is written."""

    def __init__(self) -> None:
        self.rows_now = [row("P-1")]
        self.record: dict[str, Any] | None = None
        self.late: list[str] = []

    async def rows(self, practice_id: str, start: datetime, end: datetime) -> list[PeriodRow]:
        return [*self.rows_now]

    async def facts(self, practice_id: str, start: datetime, end: datetime) -> MonthFacts:
        none = Total(0, Decimal(0))
        return MonthFacts(none, none, none, none)

    async def closed(self, practice_id: str, month: str) -> dict[str, Any] | None:
        return self.record

    async def record_close(self, practice_id: str, month: str, record: dict[str, Any]) -> bool:
        self.record = record
        self.rows_now.append(row("P-2"))  # loaded meanwhile: its load saw the month open
        return True

    async def closed_months(self, practice_id: str) -> set[str]:
        return {MONTH} if self.record is not None else set()

    async def mark_late(self, practice_id: str, payment_id: str, month: str, audit: AuditEntry) -> bool:
        if payment_id in self.late:
            return False
        self.late.append(payment_id)
        return True

    async def late_ids(self, practice_id: str, payment_ids: Sequence[str]) -> set[str]:
        return set(self.late) & set(payment_ids)


class Settings:
    async def settings_of(self, practice_id: str) -> tuple[str, ReconciliationSettings]:
        return "UTC", ReconciliationSettings()


class Directory:
    async def get_practice(self, practice_id: str) -> object:
        return object()


async def test_a_payment_loaded_while_its_month_closed_is_marked_late_with_its_task() -> None:
    store = Store()
    tasks: list[tuple[str, str]] = []

    async def open_late_task(posting: Posting, month: str) -> Alert | None:
        tasks.append((posting.key.payment_id, month))
        return None

    async def announce(alert: Alert, posting: Posting) -> None:
        raise AssertionError("no task was opened to announce")

    async def posting(key: PostingKey) -> Posting | None:
        return Posting(key=key, kind=PostingKind.PAYMENT, load_status=LoadStatus.LOADED, event_id="e",
                       received_at=OCCURRED, amount=Decimal("10.00"), currency="USD", occurred_at=OCCURRED)

    periods = Periods(store, Settings(), Directory(), open_late_task, announce,  # type: ignore[arg-type]  # fakes
                      clock=lambda: datetime(2026, 11, 2, tzinfo=UTC), posting=posting)
    await periods.close("clinic-a", MONTH, "October closed", "alice")

    assert store.record is not None and store.record["rows"] == 1  # P-2 was not in the digest
    assert store.late == ["P-2"] and tasks == [("P-2", MONTH)]


async def test_without_a_lookup_the_close_is_as_before() -> None:
    store = Store()

    async def never(*_: object) -> None:
        raise AssertionError("nothing is marked late without a way to read the posting")

    periods = Periods(store, Settings(), Directory(), never, never,  # type: ignore[arg-type]  # fakes
                      clock=lambda: datetime(2026, 11, 2, tzinfo=UTC))
    await periods.close("clinic-a", MONTH, "October closed", "alice")
    assert store.late == []


class NewYork(Settings):
    async def settings_of(self, practice_id: str) -> tuple[str, ReconciliationSettings]:
        return "America/New_York", ReconciliationSettings()


async def test_a_load_tells_the_current_month_in_the_practices_time_zone_as_the_clock_moves_on() -> None:
    """A load learns whether its payment's month is the current one without converting its time
    (the month's bounds are kept until it ends): October 31st, 23:30 in New York is November in UTC,
    still October there; once the clock passes November's start there, October may be closed."""
    store = Store()
    store.record = {"rows": 0}  # October is closed
    now = [datetime(2026, 11, 1, 3, 0, tzinfo=UTC)]  # 23:00 on October 31st in New York
    opened: list[str] = []

    async def open_late_task(posting: Posting, month: str) -> Alert | None:
        opened.append(posting.key.payment_id)
        return None

    def loaded(payment_id: str, at: datetime) -> PostingLoaded:
        return PostingLoaded(Posting(key=PostingKey("clinic-a", payment_id), kind=PostingKind.PAYMENT,
                                     load_status=LoadStatus.LOADED, event_id="e", received_at=at,
                                     amount=Decimal("10.00"), currency="USD", occurred_at=at), had_failed=False)

    periods = Periods(store, NewYork(), Directory(), open_late_task, open_late_task,  # type: ignore[arg-type]  # fakes
                      clock=lambda: now[0])
    await periods.loaded(loaded("in-october", datetime(2026, 11, 1, 3, 30, tzinfo=UTC)))  # 23:30 there
    assert store.late == []  # October is the month now in New York: never closed
    now[0] = datetime(2026, 11, 1, 5, 0, tzinfo=UTC)  # 01:00 on November 1st there
    await periods.loaded(loaded("late", datetime(2026, 11, 1, 3, 45, tzinfo=UTC)))
    await periods.loaded(loaded("in-november", datetime(2026, 11, 1, 4, 30, tzinfo=UTC)))

    assert store.late == ["late"] and opened == ["late"]
