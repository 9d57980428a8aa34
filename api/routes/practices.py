"""``/practices``: set up a practice's ledger integration, hold and release it, list the key's practices."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from paypost.api import render
from paypost.api.deps import API_V1, BAD_LEDGER, Caller, PracticeId
from paypost.schemas.api.practices import HoldIn, PracticeIn, PracticeList, PracticeOut

router = APIRouter(prefix=API_V1, tags=["practices"])


@router.put("/practices/{practice_id}", response_model=PracticeOut, responses=BAD_LEDGER)
async def put_practice(practice_id: PracticeId, body: PracticeIn, app: Caller) -> dict[str, Any]:
    """Set up a practice's ledger integration."""
    ledger = body.ledger.model_dump(mode="json", exclude_none=True)
    shown = render.practice(await app.practices.put(practice_id, body.name, ledger, body.enabled))
    if app.month_end is not None:
        await app.month_end.configure(practice_id, body.time_zone, body.reconciliation.amount_tolerance,
                                      body.reconciliation.days)
        shown.update(await app.month_end.settings(practice_id))
    return shown


@router.get("/practices/{practice_id}", response_model=PracticeOut)
async def get_practice(practice_id: PracticeId, app: Caller) -> dict[str, Any]:
    shown = render.practice(await app.practices.get(practice_id))
    if app.month_end is not None:
        shown.update(await app.month_end.settings(practice_id))
    return shown


@router.post("/practices/{practice_id}/hold", response_model=PracticeOut)
async def hold_practice(practice_id: PracticeId, body: HoldIn, app: Caller) -> dict[str, Any]:
    """Hold a practice by hand (contract section 7): its payments are HELD until it is released."""
    return render.practice(await app.practices.hold(practice_id, body.reason))


@router.post("/practices/{practice_id}/release", response_model=PracticeOut)
async def release_practice(practice_id: PracticeId, app: Caller) -> dict[str, Any]:
    """Release a held practice: its held payments load by themselves, in the order received."""
    return render.practice(await app.practices.release(practice_id))


@router.get("/practices", response_model=PracticeList)
async def list_practices(app: Caller) -> dict[str, Any]:
    """The practices in the key's scope (the console offers them to pick from)."""
    return {"items": [render.practice_listed(p) for p in await app.practices.in_scope()]}
