"""``/api-keys`` (admin) and ``/whoami``: who holds which key (contract section 6)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from paypost.api.deps import API_V1, Caller
from paypost.domain.access import ApiKey, Role
from paypost.schemas.api.keys import ApiKeyCreated, ApiKeyIn, ApiKeyList, ApiKeyOut, WhoAmI

router = APIRouter(prefix=API_V1)


def _out(key: ApiKey) -> dict[str, Any]:
    return {"key_id": key.key_id, "name": key.name, "role": key.role.value, "practices": key.scope.names(),
            "created_at": key.created_at, "created_by": key.created_by, "expires_at": key.expires_at,
            "revoked_at": key.revoked_at}


@router.post("/api-keys", status_code=201, response_model=ApiKeyCreated, tags=["keys"])
async def create_key(body: ApiKeyIn, app: Caller) -> dict[str, Any]:
    """Make a key within the admin's own role and scope; its token is in this answer only."""
    key, token = await app.keys.create(body.name, Role(body.role), body.practices, body.expires_at)
    return {**_out(key), "token": token}


@router.get("/api-keys", response_model=ApiKeyList, tags=["keys"])
async def list_keys(app: Caller) -> dict[str, Any]:
    """The keys within the admin's scope, newest first, without tokens (revoked ones have ``revoked_at``)."""
    return {"items": [_out(k) for k in await app.keys.listed()]}


@router.delete("/api-keys/{key_id}", response_model=ApiKeyOut, tags=["keys"])
async def revoke_key(key_id: Annotated[str, Path(min_length=1, max_length=64)], app: Caller) -> dict[str, Any]:
    """Revoke a key at once: the next call with it gets 401."""
    return _out(await app.keys.revoke(key_id))


@router.get("/whoami", response_model=WhoAmI, tags=["console"])
async def whoami(app: Caller) -> dict[str, Any]:
    """The name, role and practices behind the token (the console shows the changes a role may make)."""
    return {"name": app.who.name, "role": app.who.role.value, "practices": app.who.scope.names()}
