"""``/events/stream``: the live feed of paypost's events for the console (server-sent events), and
``/events/tickets``: the single-use ticket that opens it (contract section 12).

A browser's EventSource cannot send an Authorization header, and a key in a URL ends up in proxies'
logs: the console asks for a ticket with its key in the header, then opens the feed with the ticket,
which works once, within 30 seconds, on any API process of the same database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from paypost.api.deps import API_V1, Caller, Unscoped, error_answer
from paypost.api.errors import ApiError
from paypost.handlers.keys import NoTickets
from paypost.schemas.api.events import TicketOut
from paypost.schemas.types import PRACTICE_ID_PATTERN

router = APIRouter(prefix=API_V1, tags=["console"])


@router.get("/events/stream", response_class=StreamingResponse, responses={200: {
    "description": "Server-sent events, one per event of paypost.events: `event: paypost` and its JSON as `data`",
    "content": {"text/event-stream": {"schema": {"type": "string"}}}}})
async def event_stream(
    request: Request, app: Caller, application: Unscoped,
    practice_id: Annotated[str | None, Query(pattern=PRACTICE_ID_PATTERN)] = None,
    ticket: Annotated[str | None, Query(description="from POST /api/v1/events/tickets (EventSource cannot send "
                                                    "headers); or send the key in the Authorization header")] = None,
) -> StreamingResponse:
    """Server-sent events: every event of ``paypost.events`` for the key's practices (or one), live.

    The key is checked again every few seconds while the stream is open: once it is revoked or
    expired, an ``end`` event says so and the stream closes (a new one then gets 401)."""
    if practice_id is not None:
        app.guard.read(practice_id)
    keys = application.keys
    digest: str = request.state.token_digest
    check_every: float = request.app.state.key_check_every

    async def still_valid() -> bool:
        return await keys.holder(digest) is not None

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


@router.post("/events/tickets", status_code=201, response_model=TicketOut,
             responses=error_answer(501, when="This paypost has no live feed"))
async def issue_ticket(request: Request, _: Caller, application: Unscoped) -> dict[str, Any]:
    """A ticket for ``GET /api/v1/events/stream?ticket=...``: used once, within ``expires_in`` seconds,
    by the key that asked for it (its scope and role, checked again while the feed is open)."""
    if not request.state.token:  # tickets open the live feed only (api/deps.py): never here
        raise ApiError(401, "unauthorized", "Send Authorization: Bearer <token>.")
    try:
        ticket, expires_in = await application.keys.ticket(request.state.token)
    except NoTickets as exc:
        raise ApiError(501, "not_implemented", str(exc)) from exc
    return {"ticket": ticket, "expires_in": expires_in}
