"""``/alerts``: office tasks and patient flags, and their snoozes."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from paypost.domain.alerts import MAX_SNOOZE
from paypost.schemas.api.common import Body
from paypost.schemas.types import Rfc3339


class SnoozeIn(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"until": "2026-12-24T09:00:00Z", "reason": "the practice closes for the holidays"}]})

    until: Annotated[Rfc3339, Field(description=f"when it may escalate again: ahead of now, and at most "
                                                f"{MAX_SNOOZE.days} days ahead (422 invalid_request otherwise)")]
    reason: str = Field(min_length=1, max_length=2000, pattern=r"\S")


class AlertOut(BaseModel):
    alert_id: str
    kind: Literal["task", "patient"]
    practice_id: str
    patient_account_id: str | None
    payment_id: str | None
    state: Literal["open", "escalated", "resolved"]
    opened_at: str
    resolved_at: str | None
    escalated_at: str | None
    title: str | None = None  # (1.1) as the office reads it in its practice-management system
    detail: str | None = None
    # (1.1) where it stands in the practice's system: pending, sent, waiting_for_mapping or not_sent
    delivery: Literal["pending", "sent", "waiting_for_mapping", "not_sent"] | None = None
    delivery_error: str | None = None
    snoozed_until: str | None = None  # not escalated before then
    snooze_reason: str | None = None
    snoozed_by: str | None = None


class AlertPage(BaseModel):
    items: list[AlertOut]


class ResolveIn(Body):
    """An alert resolved by hand (contract section 10): why, in the office's words."""

    reason: str = Field(min_length=1, max_length=2000, pattern=r"\S")
