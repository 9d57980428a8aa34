"""``/api-keys`` (admin), ``/practices`` and ``/whoami``'s wire formats (contract section 6)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from paypost.api.access import Caller, authenticate
from paypost.domain.access import EVERY_PRACTICE, ApiKey, Role
from paypost.schemas.api import ErrorOut
from paypost.schemas.types import PRACTICE_ID_PATTERN

ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorOut} for code in (400, 401, 403, 404, 422, 429)}
router = APIRouter(prefix="/api/v1", responses=ERRORS, dependencies=[Depends(authenticate)], tags=["keys"])


def _practice_or_every(value: str) -> str:
    if value != EVERY_PRACTICE and not re.fullmatch(PRACTICE_ID_PATTERN, value):
        raise ValueError(f"{value!r} is not a practice id (or * for every practice)")
    return value


class ApiKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f:,]+$")]
    role: Literal["viewer", "operator", "admin"]
    practices: Annotated[list[Annotated[str, AfterValidator(_practice_or_every)]],
                         Field(min_length=1, max_length=1000)]
    expires_at: AwareDatetime | None = None


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


class PracticeSummary(BaseModel):
    practice_id: str
    name: str
    enabled: bool


class PracticeList(BaseModel):
    items: list[PracticeSummary]


class WhoAmI(BaseModel):
    name: str
    role: str
    practices: list[str]


def _out(key: ApiKey) -> dict[str, Any]:
    return {"key_id": key.key_id, "name": key.name, "role": key.role.value, "practices": key.scope.names(),
            "created_at": key.created_at, "created_by": key.created_by, "expires_at": key.expires_at,
            "revoked_at": key.revoked_at}


@router.post("/api-keys", status_code=201, response_model=ApiKeyCreated)
async def create_key(body: ApiKeyIn, app: Caller) -> dict[str, Any]:
    """Make a key within the admin's own role and scope; its token is in this answer only."""
    key, token = await app.keys.create(body.name, Role(body.role), body.practices, body.expires_at)
    return {**_out(key), "token": token}


@router.get("/api-keys", response_model=ApiKeyList)
async def list_keys(app: Caller) -> dict[str, Any]:
    """The keys within the admin's scope, newest first, without tokens (revoked ones have ``revoked_at``)."""
    return {"items": [_out(k) for k in await app.keys.listed()]}


@router.delete("/api-keys/{key_id}", response_model=ApiKeyOut)
async def revoke_key(key_id: Annotated[str, Path(min_length=1, max_length=64)], app: Caller) -> dict[str, Any]:
    """Revoke a key at once: the next call with it gets 401."""
    return _out(await app.keys.revoke(key_id))
