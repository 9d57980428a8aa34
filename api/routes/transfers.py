"""``/transfers``: a merchant transfer's reconciliation."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from paypost.api import render
from paypost.api.deps import API_V1, AnyId, Caller, PracticeId
from paypost.schemas.api.transfers import TransferOut

router = APIRouter(prefix=API_V1, tags=["transfers"])


@router.get("/transfers/{practice_id}/{merchant_transfer_id}", response_model=TransferOut)
async def get_transfer(practice_id: PracticeId, merchant_transfer_id: AnyId, app: Caller) -> dict[str, Any]:
    """Reconciliation of a merchant transfer, current as of this call."""
    transfer, reconciliation = await app.reports.transfer(practice_id, merchant_transfer_id)
    return render.transfer(transfer, reconciliation)
