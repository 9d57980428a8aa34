"""``/practices/{practice_id}/patient-accounts/{patient_account_id}/mapping``: a patient account's EHR patient."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from paypost.api.deps import API_V1, AnyId, Caller, PracticeId
from paypost.schemas.api.mappings import MappingIn, MappingOut

router = APIRouter(prefix=API_V1, tags=["mappings"])


@router.put("/practices/{practice_id}/patient-accounts/{patient_account_id}/mapping", response_model=MappingOut)
async def put_mapping(
    practice_id: PracticeId, patient_account_id: AnyId, body: MappingIn, app: Caller
) -> dict[str, Any]:
    """Enter or correct a mapping; paypost then retries that patient's mapping failures by itself."""
    retried = await app.mappings.update(
        practice_id, patient_account_id, body.ehr_patient_id, actor=app.who.name, source=f"api by {app.who.name}"
    )
    return {"practice_id": practice_id, "patient_account_id": patient_account_id,
            "ehr_patient_id": body.ehr_patient_id, "retried": retried}
