"""``/events/stream``: the live feed of paypost's events for the console (server-sent events)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from paypost.api.deps import API_V1, Caller, Unscoped
from paypost.schemas.types import PRACTICE_ID_PATTERN

router = APIRouter(prefix=API_V1, tags=["console"])


@router.get("/events/stream")
async def event_stream(
    request: Request, app: Caller, application: Unscoped,
    practice_id: Annotated[str | None, Query(pattern=PRACTICE_ID_PATTERN)] = None,
    access_token: Annotated[str | None, Query(description="EventSource cannot send headers")] = None,
) -> StreamingResponse:
    """Server-sent events: every event of ``paypost.events`` for the key's practices (or one), live.

    The key is checked again every few seconds while the stream is open: once it is revoked or
    expired, an ``end`` event says so and the stream closes (a new one then gets 401)."""
    if practice_id is not None:
        app.guard.read(practice_id)
    keys = application.keys
    token: str = request.state.token
    check_every: float = request.app.state.key_check_every

    async def still_valid() -> bool:
        return await keys.authenticate(token) is not None

    async def stream() -> AsyncIterator[bytes]:
        yield b": connected\n\n"
        async for event in app.feed.subscribe(still_valid, check_every):
            if practice_id and event.body.get("practice_id") != practice_id:
                continue
            data = orjson.dumps({"routing_key": event.routing_key, **event.body})
            yield b"event: paypost\ndata: " + data + b"\n\n"
        if not await still_valid():
            yield b'event: end\ndata: {"reason": "the key was revoked or has expired"}\n\n'

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
