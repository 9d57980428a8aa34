"""``/overview``: the first screen of a key with several practices (issue 30).

Every practice in the key's scope with its FAILED payments (count, amount, oldest), its system's hold
and its open alerts, most failures first, paged: one aggregation over the FAILED postings' partial
index (``infra/mongo/failure_groups.py``), measured with 2,000 practices in BENCHMARKS.md.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from paypost.api.deps import API_V1, BAD_CURSOR, Caller
from paypost.api.render import iso
from paypost.domain.money import format_money
from paypost.domain.overview import OVERVIEW_LIMIT_DEFAULT, OVERVIEW_LIMIT_MAX
from paypost.schemas.api.overview import OverviewOut

router = APIRouter(prefix=API_V1, tags=["triage"])


@router.get("/overview", response_model=OverviewOut, responses=BAD_CURSOR)
async def overview(
    app: Caller, limit: Annotated[int, Query(ge=1, le=OVERVIEW_LIMIT_MAX)] = OVERVIEW_LIMIT_DEFAULT,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    """Every practice in scope, most FAILED payments first (then the most money), paged."""
    page = await app.triage.overview(limit, cursor)
    return {"items": [{
        "practice_id": p.practice_id, "name": p.name, "enabled": p.enabled,
        "failed": {"count": p.failed_count, "amount": format_money(p.failed_amount),
                   "oldest_failed_at": iso(p.oldest_failed_at)},
        "hold": p.hold, "open_alerts": p.open_alerts} for p in page.items],
        "total": page.total, "next_cursor": page.next_cursor}
