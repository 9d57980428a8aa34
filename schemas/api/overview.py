"""``/overview``: every practice in a key's scope, what needs attention first (issue 30)."""

from __future__ import annotations

from pydantic import BaseModel


class FailedOut(BaseModel):
    count: int
    amount: str
    oldest_failed_at: str | None  # when the longest-waiting FAILED payment failed


class PracticeOverviewOut(BaseModel):
    practice_id: str
    name: str | None  # null: payments arrived for a practice that is not set up
    enabled: bool
    failed: FailedOut
    hold: str | None  # "failing" or "held" while its system is failing or held (contract section 7)
    open_alerts: int


class OverviewOut(BaseModel):
    items: list[PracticeOverviewOut]
    total: int
    next_cursor: str | None
