"""``/access-log`` (contract section 12): who was shown which payments."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field


class AccessEntryOut(BaseModel):
    id: str
    at: AwareDatetime
    key_id: str | None
    key_name: str
    role: str
    client: str
    action: Literal["read", "export", "search"]
    route: str
    practice_id: str | None
    payment_ids: list[str] | None = Field(description="None when more than 500 rows were shown: see filters")
    count: int
    filters: dict[str, str] | None = None


class AccessPage(BaseModel):
    items: list[AccessEntryOut]
    next_cursor: str | None
