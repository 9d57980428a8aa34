"""``/alerts``: office tasks and patient flags, their snoozes (contract section 8) and their resolving
by hand (section 10)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from paypost.api import render
from paypost.api.deps import API_V1, CONFLICT, Caller
from paypost.domain.alerts import AlertState
from paypost.schemas.api.alerts import AlertOut, AlertPage, ResolveIn, SnoozeIn
from paypost.schemas.types import PRACTICE_ID_PATTERN

router = APIRouter(prefix=API_V1)


@router.get("/alerts", response_model=AlertPage, tags=["alerts"])
async def list_alerts(
    app: Caller,
    practice_id: Annotated[str | None, Query(pattern=PRACTICE_ID_PATTERN)] = None,
    state: Annotated[Literal["open", "escalated", "resolved"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 500,
) -> dict[str, Any]:
    """Office tasks and patient flags; ``state=open`` includes escalated ones."""
    alerts = await app.reports.alerts(practice_id, AlertState(state) if state else None, limit)
    app.access.read(items := [render.alert(a) for a in alerts], {"practice_id": practice_id, "state": state})
    return {"items": items}


@router.post("/alerts/{alert_id:path}/snooze", response_model=AlertOut, tags=["triage"], responses=CONFLICT)
async def snooze_alert(alert_id: str, body: SnoozeIn, app: Caller) -> dict[str, Any]:
    """Keep an alert from escalating before ``until``; the alert shows its snooze."""
    return render.alert(await app.triage.snooze(alert_id, body.until, body.reason))


@router.post("/alerts/{alert_id:path}/resolve", response_model=AlertOut, tags=["alerts"], responses=CONFLICT)
async def resolve_alert(alert_id: str, body: ResolveIn, app: Caller) -> dict[str, Any]:
    """Resolve an open office task or patient flag by hand, with a reason (operator; contract
    section 10: a reversal's alerts are resolved this way); 409 if it is resolved already."""
    return render.alert(await app.triage.resolve(alert_id, body.reason))
