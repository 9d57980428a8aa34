"""Deposits and months (contract section 11): what the deposit and period handlers need stored."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from paypost.domain.deposits import Decision, Deposit, DepositStatus, OpenTransfer, ReconciliationSettings
from paypost.domain.periods import MonthFacts, PeriodRow
from paypost.domain.ports import Record
from paypost.domain.posting import AuditEntry


class PeriodSettings(Protocol):
    """A practice's time zone and matching settings, kept with the practice."""

    async def settings_of(self, practice_id: str) -> tuple[str, ReconciliationSettings]:
        """(time zone, reconciliation settings); the defaults (UTC, 0.00, 3 days) where none are set."""

    async def set_settings(self, practice_id: str, time_zone: str, reconciliation: ReconciliationSettings) -> None: ...


class DepositStore(Protocol):
    async def received(self, deposit: Deposit, at: datetime) -> bool:
        """Keep a deposit the first time it is received; False if it was received before."""

    async def get(self, practice_id: str, deposit_id: str) -> Deposit | None: ...

    async def listed(self, practice_id: str, status: DepositStatus | None, limit: int) -> list[Deposit]: ...

    async def open_transfers(self, practice_id: str, settled_from: datetime | None = None,
                             settled_until: datetime | None = None) -> list[OpenTransfer]:
        """The practice's settled transfers that no deposit holds, settled within the bounds given."""

    async def waiting(self, practice_id: str, deposited_from: datetime, deposited_until: datetime) -> list[Deposit]:
        """Unmatched or ambiguous deposits of the practice that arrived within the bounds."""

    async def decide(self, deposit: Deposit, decision: Decision, difference: Decimal | None,
                     audit: AuditEntry | None, at: datetime) -> bool:
        """Write ``decision`` over the revision ``deposit`` was read at, claiming its transfers, in one
        transaction; False (nothing written) if the deposit changed in between or a transfer was
        claimed by another deposit."""

    async def unmatch(self, deposit: Deposit, audit: AuditEntry, at: datetime) -> bool:
        """Release the deposit's transfers and leave it unmatched, over the revision read."""

    async def audit_of(self, practice_id: str, deposit_id: str) -> list[Record]: ...

    async def aging(self, practice_id: str) -> tuple[list[tuple[datetime, Decimal]], list[tuple[datetime, Decimal]]]:
        """(open transfers, unmatched deposits), each as (since, amount)."""


class PeriodStore(Protocol):
    async def rows(self, practice_id: str, start: datetime, end: datetime) -> list[PeriodRow]:
        """The postings that occurred within [start, end): payments, refunds and reversals."""

    async def facts(self, practice_id: str, start: datetime, end: datetime) -> MonthFacts: ...

    async def closed(self, practice_id: str, month: str) -> Record | None:
        """The month's close, if it is closed."""

    async def record_close(self, practice_id: str, month: str, record: Record) -> bool:
        """Record the close once; False if the month was closed already."""

    async def closed_months(self, practice_id: str) -> set[str]: ...

    async def mark_late(self, practice_id: str, payment_id: str, month: str, audit: AuditEntry) -> bool:
        """Mark a posting ``late_for_closed_period``; True only the first time."""

    async def late_ids(self, practice_id: str, payment_ids: Sequence[str]) -> set[str]: ...
