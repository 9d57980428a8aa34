"""The month end (contract section 11) as one caller may use it: deposits, aging and the month's close,
each call checked against the caller's scope (404) and role (403) as every other handler's."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from paypost.domain.deposits import AgingBucket, Deposit, DepositStatus, ReconciliationSettings
from paypost.domain.ports import Record
from paypost.domain.ports.deposits import PeriodSettings
from paypost.handlers.deposits import Deposits
from paypost.handlers.periods import Month, Periods

if TYPE_CHECKING:
    from paypost.handlers.tenancy import Guard


@dataclass(frozen=True, slots=True)
class MonthEnd:
    deposits: Deposits
    periods: Periods
    settings: PeriodSettings


class ScopedMonthEnd:
    def __init__(self, inner: MonthEnd, guard: Guard) -> None:
        self._inner, self._guard = inner, guard

    async def deposits(self, practice_id: str, status: DepositStatus | None) -> list[Deposit]:
        self._guard.read(practice_id)
        return await self._inner.deposits.listed(practice_id, status)

    async def deposit_audit(self, practice_id: str, deposit_id: str) -> list[Record]:
        self._guard.read(practice_id)
        return await self._inner.deposits.audit(practice_id, deposit_id)

    async def match(self, practice_id: str, deposit_id: str, transfer_ids: Sequence[str], reason: str) -> Deposit:
        self._guard.change(practice_id)
        return await self._inner.deposits.match_by_hand(practice_id, deposit_id, transfer_ids, reason,
                                                        self._guard.who.name)

    async def unmatch(self, practice_id: str, deposit_id: str, reason: str) -> Deposit:
        self._guard.change(practice_id)
        return await self._inner.deposits.unmatch(practice_id, deposit_id, reason, self._guard.who.name)

    async def aging(self, practice_id: str) -> tuple[dict[str, AgingBucket], dict[str, AgingBucket]]:
        self._guard.read(practice_id)
        return await self._inner.deposits.aging(practice_id)

    async def month(self, practice_id: str, month: str) -> Month:
        self._guard.read(practice_id)
        return await self._inner.periods.month(practice_id, month)

    async def close(self, practice_id: str, month: str, note: str, force: bool, reason: str | None) -> Month:
        self._guard.change(practice_id)
        return await self._inner.periods.close(practice_id, month, note, self._guard.who.name, force=force,
                                               reason=reason)

    async def configure(self, practice_id: str, time_zone: str, amount_tolerance: Decimal, days: int) -> None:
        """Set the practice's time zone and matching settings (with ``PUT /practices/{id}``)."""
        self._guard.change(practice_id)
        await self._inner.settings.set_settings(practice_id, time_zone, ReconciliationSettings(amount_tolerance, days))

    async def settings(self, practice_id: str) -> Record:
        self._guard.read(practice_id)
        time_zone, rec = await self._inner.settings.settings_of(practice_id)
        return {"time_zone": time_zone,
                "reconciliation": {"amount_tolerance": f"{rec.amount_tolerance:.2f}", "days": rec.days}}
