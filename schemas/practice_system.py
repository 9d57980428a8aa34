"""What paypost sends a practice's system of kind ``http`` besides entries (contract section 7)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from paypost.schemas.types import Timestamp


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskBody(_Body):
    """``PUT {base_url}/tasks/{alert_id}``: an office task in the office's task list."""

    alert_id: str
    practice_id: str
    payment_id: str | None  # null for the task that says the system itself was unreachable
    title: str
    detail: str
    opened_at: Timestamp
    escalated: bool


class FlagBody(_Body):
    """``PUT {base_url}/patients/{patient_id}/flags/{alert_id}``: a flag on the patient's record."""

    alert_id: str
    practice_id: str
    patient_account_id: str
    title: str
    detail: str
    opened_at: Timestamp
