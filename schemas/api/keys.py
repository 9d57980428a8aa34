"""``/api-keys`` (admin) and ``/whoami``: who holds which key (contract section 6)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

from paypost.domain.access import EVERY_PRACTICE
from paypost.schemas.types import PRACTICE_ID_PATTERN, Rfc3339

PRACTICE_OR_EVERY = f"^({re.escape(EVERY_PRACTICE)}|{PRACTICE_ID_PATTERN.strip('^$')})$"


def _practice_or_every(value: str) -> str:
    if not re.fullmatch(PRACTICE_OR_EVERY, value):
        raise ValueError(f"{value!r} is not a practice id (or * for every practice)")
    return value


class ApiKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"name": "billing-platform", "role": "viewer", "practices": ["clinic-a"]}]})

    name: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f:,]+$")]
    role: Literal["viewer", "operator", "admin"]
    practices: Annotated[list[Annotated[str, AfterValidator(_practice_or_every),
                                        WithJsonSchema({"type": "string", "pattern": PRACTICE_OR_EVERY})]],
                         Field(min_length=1, max_length=1000)]
    expires_at: Rfc3339 | None = None


class ApiKeyOut(BaseModel):
    key_id: str
    name: str
    role: str
    practices: list[str]
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    token: str = Field(description="Shown in this answer only: paypost keeps its hash alone")


class ApiKeyList(BaseModel):
    items: list[ApiKeyOut]


class WhoAmI(BaseModel):
    name: str
    role: str
    practices: list[str]
