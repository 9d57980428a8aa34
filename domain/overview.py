"""The first screen of a key with several practices (issue 30): every practice in scope, what needs
attention first. Plain values; the one aggregation that makes them is ``infra/mongo/failure_groups.py``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from paypost.domain.errors import BadCursor

OVERVIEW_LIMIT_MAX = 200
OVERVIEW_LIMIT_DEFAULT = 50


@dataclass(frozen=True, slots=True)
class PracticeOverview:
    """One practice as the overview shows it: its FAILED payments, its system's hold, its open alerts."""

    practice_id: str
    name: str | None  # None: payments arrived for a practice that is not set up
    enabled: bool
    failed_count: int
    failed_amount: Decimal
    oldest_failed_at: datetime | None
    hold: str | None  # "failing" or "held" while its system is failing or held (contract section 7)
    open_alerts: int


@dataclass(frozen=True, slots=True)
class OverviewPage:
    items: list[PracticeOverview]
    total: int  # practices in the overview, on every page
    next_cursor: str | None


def overview_cursor(offset: int) -> str:
    return f"o{offset}"


def overview_offset(cursor: str | None) -> int:
    """The offset a cursor of ``overview_cursor`` stands for; ``BadCursor`` for any other text."""
    if cursor is None:
        return 0
    if not cursor.startswith("o") or not cursor[1:].isdigit() or len(cursor) > 12:
        raise BadCursor("That cursor is not one the overview handed out.")
    return int(cursor[1:])
