"""A practice's month (contract section 11): what it holds, whether it is ready, and its close.

A payment, refund or reversal belongs to the month of its ``occurred_at``, a deposit to that of its
``deposited_at``, a transfer to that of its ``settled_at``, each in the practice's time zone. A month
is ready when nothing in it is left to explain; each thing that is not is a blocker with its count
and amount. Postings are counted by their ``kind`` (payment, refund, and the reversals of section
10: void, return, chargeback, dispute_won), so a kind this module has not heard of counts too.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from paypost.domain.errors import PaypostError

ZERO = Decimal("0.00")
MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
DEFAULT_TIME_ZONE = "UTC"
# Kinds that take money back from the practice (a negative ledger entry).
NEGATIVE_KINDS = frozenset({"refund", "void", "return", "chargeback"})
# Postings that are neither loaded, cleared nor FAILED or HELD: still on their way.
WAITING_STATUSES = frozenset({"PENDING", "RETRYING"})


class PeriodError(PaypostError, ValueError):
    """A month or time zone that cannot be read; the message says which."""


class PeriodNotReady(PaypostError):
    """A close refused: the month has blockers, and the close was not forced."""

    def __init__(self, blockers: Sequence[Blocker]) -> None:
        super().__init__("The month is not ready to close: " + ", ".join(
            f"{b.count} {b.kind.replace('_', ' ')}" for b in blockers) + ". Resolve them, or force the close "
            "with a reason.")
        self.blockers = list(blockers)


class PeriodClosed(PaypostError):
    """The month is closed already."""


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; ``PeriodError`` for a name that is not one."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise PeriodError(f"{name[:64]!r} is not an IANA time zone name (such as America/Chicago).") from exc


def month_bounds(month: str, time_zone: str) -> tuple[datetime, datetime]:
    """The first instant of ``month`` (YYYY-MM) in ``time_zone`` and of the month after, in UTC."""
    found = MONTH.match(month)
    if found is None:
        raise PeriodError(f"{month[:16]!r} is not a month: write it YYYY-MM.")
    year, number = int(found.group(1)), int(found.group(2))
    tz = zone(time_zone)
    start = datetime(year, number, 1, tzinfo=tz)
    end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def month_of(at: datetime, time_zone: str) -> str:
    """The month (YYYY-MM) ``at`` falls in, in ``time_zone``."""
    return at.astimezone(zone(time_zone)).strftime("%Y-%m")


@dataclass(frozen=True, slots=True)
class PeriodRow:
    """A posting of the month as the month's report and CSV show it (no patient detail)."""

    payment_id: str
    kind: str
    method: str | None
    amount: Decimal
    currency: str | None
    occurred_at: datetime
    load_status: str
    clear_verified: bool | None
    merchant_transfer_id: str | None
    late_for_closed_period: bool = False

    @property
    def signed_amount(self) -> Decimal:
        return -self.amount if self.kind in NEGATIVE_KINDS else self.amount


@dataclass(slots=True)
class Total:
    count: int = 0
    amount: Decimal = ZERO

    def add(self, amount: Decimal) -> None:
        self.count += 1
        self.amount += amount


@dataclass(frozen=True, slots=True)
class Blocker:
    kind: str
    count: int
    amount: Decimal


@dataclass(frozen=True, slots=True)
class MonthFacts:
    """What else of the month the report needs, beside its postings."""

    transfers_reconciled: Total
    transfers_unreconciled: Total
    deposits_matched: Total
    deposits_unmatched: Total
    open_reversal_tasks: dict[str, Total] = field(default_factory=dict)  # kind (return, chargeback) → open tasks


@dataclass(frozen=True, slots=True)
class MonthReport:
    month: str
    time_zone: str
    by_kind: dict[str, Total]
    by_method: dict[str, Total]  # the payments, by method
    by_kind_and_method: dict[str, dict[str, Total]]  # payments, refunds and reversals, by kind then method
    by_status: dict[str, Total]
    clears_verified: Total
    clears_unverified: Total
    late: Total
    facts: MonthFacts
    blockers: list[Blocker]
    net_amount: Decimal

    @property
    def ready(self) -> bool:
        return not self.blockers


def report(month: str, time_zone: str, rows: Iterable[PeriodRow], facts: MonthFacts) -> MonthReport:
    """The month's figures and its blockers, from its rows and facts."""
    by_kind: dict[str, Total] = {}
    by_method: dict[str, Total] = {}
    by_kind_and_method: dict[str, dict[str, Total]] = {}
    by_status: dict[str, Total] = {}
    verified, unverified, late = Total(), Total(), Total()
    net = ZERO
    for row in rows:
        by_kind.setdefault(row.kind, Total()).add(row.amount)
        if row.kind == "payment":
            by_method.setdefault(row.method or "other", Total()).add(row.amount)
        by_kind_and_method.setdefault(row.kind, {}).setdefault(row.method or "unknown", Total()).add(row.amount)
        status = "WAITING" if row.load_status in WAITING_STATUSES else row.load_status
        by_status.setdefault(status, Total()).add(row.signed_amount)
        if row.load_status == "CLEARED":
            (verified if row.clear_verified is True else unverified).add(row.signed_amount)
        if row.late_for_closed_period:
            late.add(row.signed_amount)
        if row.load_status in ("LOADED", "CLEARED"):
            net += row.signed_amount
    blockers = [Blocker(kind, total.count, total.amount) for kind, total in (
        ("failed_postings", by_status.get("FAILED", Total())),
        ("held_postings", by_status.get("HELD", Total())),
        ("waiting_postings", by_status.get("WAITING", Total())),
        ("clears_not_verified", unverified),
        ("transfers_not_reconciled", facts.transfers_unreconciled),
        ("deposits_not_matched", facts.deposits_unmatched),
        *((f"open_{kind}_tasks", total) for kind, total in sorted(facts.open_reversal_tasks.items())),
    ) if total.count]
    return MonthReport(month, time_zone, by_kind, by_method, by_kind_and_method, by_status, verified, unverified,
                       late, facts,
                       blockers, net)


CSV_COLUMNS = ("payment_id", "kind", "method", "amount", "currency", "occurred_at", "load_status",
               "clear_verified", "merchant_transfer_id", "late_for_closed_period")


def csv_fields(row: PeriodRow) -> list[str]:
    """A row as the month's CSV writes it, in ``CSV_COLUMNS`` order."""
    verified = "" if row.clear_verified is None else str(row.clear_verified).lower()
    return [row.payment_id, row.kind, row.method or "", f"{row.amount:.2f}", row.currency or "",
            row.occurred_at.astimezone(UTC).isoformat(), row.load_status, verified,
            row.merchant_transfer_id or "", str(row.late_for_closed_period).lower()]


def digest(rows: Iterable[PeriodRow]) -> str:
    """A SHA-256 over the month's rows in id order, as the CSV writes them: the close records it, so
    a later change to any row of a closed month shows."""
    h = hashlib.sha256()
    for row in sorted(rows, key=lambda r: r.payment_id):
        h.update(("\x1f".join(csv_fields(row)) + "\n").encode())
    return h.hexdigest()
