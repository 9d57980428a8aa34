"""Who is calling, once per request, and what it may reach (contract section 6).

``authenticate`` is a dependency of every ``/api/v1`` router: it resolves the key (401 for none,
429 for an address that keeps sending unknown keys), refuses at once a practice in the path that is
outside the key's scope (404, as for a practice that is not set up), and hands the route the
application narrowed to that key (``request.state.scoped``), the only one a route can reach.
``AccessLog`` writes one line per call.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from typing import Annotated, Any

import structlog
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import ApiError
from domain.access import Principal
from handlers.application import Application
from handlers.tenancy import ScopedApplication

bearer = HTTPBearer(auto_error=False, description="An API key: PAYPOST_API_TOKENS, or made with POST /api-keys")
access_log = structlog.get_logger("paypost.access")

STREAM_PATH = "/api/v1/events/stream"  # EventSource cannot send headers: its token comes as ?access_token=


class FailedKeys:
    """Calls with an unknown, revoked or expired key, per client address, over the last ``window`` s.

    Past ``limit`` of them, the address is refused (429) until the oldest leaves the window; a valid
    key is looked at first and never refused. At most ``addresses`` addresses are remembered.
    """

    def __init__(self, limit: int = 20, window: float = 60.0, addresses: int = 10_000) -> None:
        self.limit = limit
        self.window = window
        self._addresses = addresses
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, address: str, now: float) -> deque[float]:
        times = self._seen.get(address)
        if times is None:
            times = self._seen[address] = deque()
            if len(self._seen) > self._addresses:
                self._seen.popitem(last=False)
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def refuse_for(self, address: str) -> int | None:
        """Seconds this address must wait (it has failed ``limit`` times within the window), or None."""
        now = time.monotonic()
        times = self._recent(address, now)
        if len(times) < self.limit:
            return None
        return max(1, math.ceil(times[-self.limit] + self.window - now))

    def failed(self, address: str) -> None:
        self._recent(address, time.monotonic()).append(time.monotonic())


def _token(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str | None:
    if credentials is not None and credentials.scheme.lower() == "bearer":
        return credentials.credentials
    if request.headers.get("authorization"):
        return None  # another scheme (Basic, ...): not a key
    if request.url.path == STREAM_PATH:
        return request.query_params.get("access_token")
    return None


async def authenticate(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> ScopedApplication:
    """The caller's application, narrowed to its key; raises 401, 429 or 404 (a practice out of scope)."""
    application: Application = request.app.state.application
    failures: FailedKeys = request.app.state.failed_keys
    token = _token(request, credentials)
    if not token:
        raise ApiError(401, "unauthorized", "Send Authorization: Bearer <token>.")
    who = await application.keys.authenticate(token)
    if who is None:
        address = request.client.host if request.client else "unknown"
        wait = failures.refuse_for(address)
        if wait is not None:
            raise ApiError(429, "too_many_requests", f"Too many calls with unknown keys; try again in {wait} s.",
                           headers={"Retry-After": str(wait)})
        failures.failed(address)
        raise ApiError(401, "unauthorized", "The token is not one paypost knows (or it was revoked or expired).")
    scoped = application.for_principal(who)
    request.state.scoped = scoped
    practice_id = request.path_params.get("practice_id")
    if isinstance(practice_id, str):
        scoped.guard.read(practice_id)
    return scoped


Caller = Annotated[ScopedApplication, Depends(authenticate)]


def principal(request: Request) -> Principal:
    scoped: ScopedApplication = request.state.scoped
    return scoped.who


class AccessLog:
    """One line per API call: key name, role, method, route, practice, status, duration.

    Never a token, a query string or a body: the route is the path template, the practice is the
    one the call named (in its path, its query or its body, as the scope check saw it).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith("/api/"):
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            scoped: ScopedApplication | None = state.get("scoped")
            route = scope.get("route")
            named = scoped.guard.named if scoped is not None else []
            access_log.info(
                "api_call", key=scoped.who.name if scoped else None, role=scoped.who.role.value if scoped else None,
                method=scope.get("method"), route=getattr(route, "path", None) or "unmatched",
                practice=named[0] if named else None, status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 1),
            )
