"""``/practices/{practice_id}/legal-hold`` (contract section 12): a practice kept whole by retention."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from paypost.schemas.api.common import Body


class LegalHoldIn(Body):
    reason: str = Field(min_length=1, max_length=2000, pattern=r"\S")


class LegalHoldOut(BaseModel):
    practice_id: str
    legal_hold: dict[str, Any] | None = Field(description="{reason, by, at}; None once lifted")
