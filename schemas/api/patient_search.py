"""``/practices/{practice_id}/patient-search``: the patients a practice's system finds (contract section 14)."""

from __future__ import annotations

from pydantic import BaseModel


class PatientMatchOut(BaseModel):
    patient_id: str  # the practice-management patient id: what a mapping enters
    display: str  # what the office recognises the patient by (a name, a date of birth), as the system gave it


class PatientSearchOut(BaseModel):
    items: list[PatientMatchOut]
