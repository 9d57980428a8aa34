"""``POST`` and ``DELETE /practices/{id}/legal-hold`` (contract section 12): a practice under legal
hold is never purged by retention; admin only."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path

from paypost.api.access import Caller, authenticate
from paypost.schemas.api import ErrorOut, LegalHoldIn, LegalHoldOut
from paypost.schemas.types import PRACTICE_ID_PATTERN

PracticeId = Annotated[str, Path(pattern=PRACTICE_ID_PATTERN, description="A practice id")]
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorOut} for code in (400, 401, 403, 404, 422, 429)}
router = APIRouter(prefix="/api/v1", responses=ERRORS, dependencies=[Depends(authenticate)], tags=["practices"])


@router.post("/practices/{practice_id}/legal-hold", response_model=LegalHoldOut)
async def place_legal_hold(practice_id: PracticeId, body: LegalHoldIn, app: Caller) -> dict[str, Any]:
    """Put the practice under legal hold: none of its postings, trails or access entries is purged
    until the hold is lifted."""
    held = await app.retention.hold(practice_id, body.reason)
    return {"practice_id": practice_id, "legal_hold": held.get("legal_hold")}


@router.delete("/practices/{practice_id}/legal-hold", response_model=LegalHoldOut)
async def lift_legal_hold(practice_id: PracticeId, app: Caller) -> dict[str, Any]:
    """Lift the practice's legal hold: retention applies to it again from the next purge."""
    lifted = await app.retention.lift(practice_id)
    return {"practice_id": practice_id, "legal_hold": lifted.get("legal_hold")}
