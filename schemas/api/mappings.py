"""``/practices/{practice_id}/patient-accounts/{patient_account_id}/mapping``: a patient account's EHR patient."""

from __future__ import annotations

from pydantic import BaseModel

from paypost.schemas.api.common import Body
from paypost.schemas.types import Identifier


class MappingIn(Body):
    ehr_patient_id: Identifier


class MappingOut(BaseModel):
    practice_id: str
    patient_account_id: str
    ehr_patient_id: str
    retried: int
