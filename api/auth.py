"""Bearer tokens with a role (viewer or operator) and a name the audit trail records."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.errors import ApiError

bearer = HTTPBearer(auto_error=False, description="A token from PAYPOST_API_TOKENS")


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: str

    @property
    def can_change(self) -> bool:
        return self.role == "operator"


def principal_for(request: Request, token_text: str | None) -> Principal:
    """Who holds ``token_text`` (``app.state.tokens``, given to ``create_app``)."""
    if not token_text:
        raise ApiError(401, "unauthorized", "Send Authorization: Bearer <token>.")
    tokens: Mapping[str, Principal] = request.app.state.tokens
    principal = tokens.get(token_text)
    if principal is None:
        raise ApiError(401, "unauthorized", "The token is not one paypost knows.")
    return principal


def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ApiError(401, "unauthorized", "Send Authorization: Bearer <token>.")
    return principal_for(request, credentials.credentials)


def operator(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    if not principal.can_change:
        raise ApiError(403, "forbidden", f"{principal.name} has the viewer role, which cannot change anything.")
    return principal


Viewer = Annotated[Principal, Depends(current_principal)]
Operator = Annotated[Principal, Depends(operator)]
