"""``POST`` and ``DELETE /practices/{id}/legal-hold`` (contract section 12): a practice under legal
hold is never purged by retention; admin only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from paypost.api.deps import API_V1, Caller, PracticeId
from paypost.schemas.api.legal_hold import LegalHoldIn, LegalHoldOut

router = APIRouter(prefix=API_V1, tags=["practices"])


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
