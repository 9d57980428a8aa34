"""A request id on every log line of an API call (contract section 13), and on its answer.

The caller's ``X-Request-Id`` is kept when it is a plain token (letters, digits, ``.``, ``_``,
``-``; at most 64), so a line in paypost's logs is found from the caller's; otherwise paypost makes
one. Every line written while the call is handled carries it as ``request_id`` (structlog's context
variables), with the trace's ids beside it when tracing is on (``infra/runtime/trace_ids.py``).
"""

from __future__ import annotations

import re
import uuid

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "x-request-id"
_PLAIN = re.compile(r"[A-Za-z0-9._-]{1,64}")


def request_id_of(scope: Scope) -> str:
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
    for name, value in headers:
        if name == HEADER.encode():
            text = value.decode("latin-1")
            if _PLAIN.fullmatch(text):
                return text
            break
    return uuid.uuid4().hex


class RequestIds:
    """ASGI middleware: binds ``request_id`` for the call and answers it in ``X-Request-Id``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (HEADER.encode(), request_id.encode())]
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            await self.app(scope, receive, sending)
