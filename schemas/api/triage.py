"""The office's triage (contract section 8): failure groups, and a posting's notes and assignee."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from paypost.schemas.api.common import Body
from paypost.schemas.api.postings import AuditOut


class NoteIn(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"text": "called the practice"}]})

    text: str = Field(min_length=1, max_length=4000, pattern=r"\S")


class AssigneeIn(Body):
    model_config = ConfigDict(extra="forbid",
                              json_schema_extra={"examples": [{"assignee": "alice"}, {"assignee": None}]})

    assignee: str | None = Field(min_length=1, max_length=200, pattern=r"\S")


class FailureGroupOut(BaseModel):
    group_id: str
    practice_id: str
    error_code: str
    cause: str | None
    message: str = ""  # the Load Error's plain words, once for the group
    fix: str = ""  # what fixes it, once for the group (the Load Error's fix)
    count: int
    amount: str
    first_failed_at: str | None
    last_failed_at: str | None


class FailureGroupPage(BaseModel):
    items: list[FailureGroupOut]


class NoteOut(BaseModel):
    practice_id: str
    payment_id: str
    notes_count: int
    note: AuditOut


class AssigneeOut(BaseModel):
    practice_id: str
    payment_id: str
    assignee: str | None
    audit: AuditOut
