"""``/postings/changes`` and ``/operations``: Save Changes (retry and clear, by payment or by failure
group, with its dry run and canary) and the operation that follows it."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints, model_validator

from paypost.domain.triage import GROUP_ID_LENGTH
from paypost.schemas.api.common import Body
from paypost.schemas.types import Identifier

GroupId = Annotated[str, StringConstraints(pattern=f"^[0-9a-f]{{{GROUP_ID_LENGTH}}}$")]
"""A failure group's id, as ``GET /failure-groups`` hands it out."""


class ClearIn(Body):
    payment_id: Identifier
    reason: str = Field(max_length=2000, pattern=r"\S", description="why, in words (not blank)")
    manual_reference: str | None = Field(default=None, max_length=200)


class ClearGroupIn(Body):
    group_id: GroupId
    reason: str = Field(max_length=2000, pattern=r"\S", description="why, in words (not blank)")
    manual_reference: str | None = Field(default=None, max_length=200)


SELECTIONS = ("retry", "clear", "retry_groups", "clear_groups")
"""What a Save Changes selects: at least one of them holds something."""


class ChangesIn(Body):
    model_config = ConfigDict(json_schema_extra={
        "anyOf": [{"required": [name], "properties": {name: {"minItems": 1}}} for name in SELECTIONS],
        # A canary replays the first retries: some retry (by payment or by group) to replay, else 422 invalid_canary.
        "if": {"required": ["canary"], "properties": {"canary": {"type": "integer"}}},
        "then": {"anyOf": [{"required": [name], "properties": {name: {"minItems": 1}}}
                           for name in ("retry", "retry_groups")]},
        "examples": [{"practice_id": "clinic-a", "retry": ["pay-1"],
                      "clear": [{"payment_id": "pay-2", "reason": "posted by hand", "manual_reference": "JE-7"}]}],
    })

    practice_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    retry: list[Identifier] = Field(default_factory=list, max_length=50_000)
    clear: list[ClearIn] = Field(default_factory=list, max_length=50_000)
    retry_groups: list[GroupId] = Field(default_factory=list, max_length=1000)
    clear_groups: list[ClearGroupIn] = Field(default_factory=list, max_length=1000)
    canary: StrictInt | None = Field(default=None, ge=1, le=1000,
                               description="replay the first k retries, and the rest only if every one loads")

    @model_validator(mode="after")
    def _selects_something(self) -> Self:
        if not any(getattr(self, name) for name in SELECTIONS):
            raise ValueError("select at least one payment or failure group to retry or clear")
        return self


class OperationAccepted(BaseModel):
    operation_id: str


class OperationItemOut(BaseModel):
    payment_id: str
    action: Literal["retry", "clear"]
    result: Literal["retried", "cleared", "unchanged", "rejected", "cancelled"] | None
    message: str | None


class CanaryOut(BaseModel):
    size: int
    state: Literal["waiting", "passed", "stopped"]
    payment_ids: list[str]


class OperationOut(BaseModel):
    operation_id: str
    practice_id: str
    actor: str
    status: Literal["pending", "running", "completed", "cancelled"]
    total: int
    done: int
    cancelled: int = 0  # the items stopped before they were replayed (still FAILED)
    cancelled_at: str | None = None
    cancelled_by: str | None = None
    items: list[OperationItemOut]
    created_at: str
    canary: CanaryOut | None = None
    message: str | None = None  # why the operation stopped short (a canary that did not load)


class PreviewItemOut(BaseModel):
    payment_id: str
    action: Literal["retry", "clear"]
    result: Literal["retried", "cleared", "unchanged", "rejected"]
    message: str


class PreviewOut(BaseModel):
    """A dry run of Save Changes: what each item would become now; nothing was changed."""

    total: int
    items: list[PreviewItemOut]
