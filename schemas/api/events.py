"""The live feed's bodies (contract section 12): the single-use ticket that opens it."""

from __future__ import annotations

from pydantic import BaseModel, Field


class TicketOut(BaseModel):
    """A single-use ticket that opens the live feed: ``GET /api/v1/events/stream?ticket=...``."""

    ticket: str
    expires_in: int = Field(description="seconds it may still be used in, once")
