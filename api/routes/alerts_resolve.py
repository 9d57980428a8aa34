"""``POST /alerts/{alert_id}/resolve`` (contract section 10): the office resolves an alert by hand,
with a reason, recorded in its posting's audit trail. A reversal's alerts are resolved this way."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from paypost.api import render
from paypost.api.access import Caller, authenticate
from paypost.api.triage import ERRORS
from paypost.schemas.api import AlertOut, ResolveIn

# As every API router: each route gets its caller's scoped application, never an unscoped one.
router = APIRouter(prefix="/api/v1", responses=ERRORS, dependencies=[Depends(authenticate)], tags=["alerts"])


@router.post("/alerts/{alert_id:path}/resolve", response_model=AlertOut)
async def resolve_alert(alert_id: str, body: ResolveIn, app: Caller) -> dict[str, Any]:
    """Resolve an open office task or patient flag (operator); 409 if it is resolved already."""
    return render.alert(await app.triage.resolve(alert_id, body.reason))
