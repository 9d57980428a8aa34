"""``/practices/{practice_id}/ehr-patients``: patients of the built-in ledger and their entries."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body

from paypost.api import render
from paypost.api.deps import API_V1, BAD_LEDGER, AnyId, Caller, PracticeId
from paypost.schemas.api.patients import EmptyBody, LedgerOut, PatientOut

router = APIRouter(prefix=API_V1, tags=["ledger"])


@router.put("/practices/{practice_id}/ehr-patients/{ehr_patient_id}", response_model=PatientOut)
async def put_ehr_patient(
    practice_id: PracticeId, ehr_patient_id: AnyId, app: Caller,
    body: Annotated[EmptyBody | None, Body()] = None,
) -> dict[str, Any]:
    """Register a patient in the built-in ledger (no patient names are needed or kept)."""
    created = await app.practices.register_patient(practice_id, ehr_patient_id)
    return {"practice_id": practice_id, "ehr_patient_id": ehr_patient_id, "created": created}


@router.get("/practices/{practice_id}/ehr-patients/{ehr_patient_id}/ledger", response_model=LedgerOut,
            responses=BAD_LEDGER)
async def get_ledger(practice_id: PracticeId, ehr_patient_id: AnyId, app: Caller) -> dict[str, Any]:
    """A patient's entries in the built-in ledger."""
    entries = await app.practices.ledger(practice_id, ehr_patient_id)
    app.access.read(items := [render.ledger_entry(e) for e in entries], {"practice_id": practice_id})
    return {"items": items}
