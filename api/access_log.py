"""One line per API call (contract section 6): who called which route, for which practice, and the answer."""

from __future__ import annotations

import time
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from paypost.handlers.tenancy import ScopedApplication

access_log = structlog.get_logger("paypost.access")


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
