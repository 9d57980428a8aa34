"""``POST /api/v1/events/tickets``: a single-use ticket that opens the live feed (contract section 12).

A browser's EventSource cannot send an Authorization header, and a key in a URL ends up in proxies'
logs: the console asks for a ticket with its key in the header, then opens the feed with the ticket,
which works once, within 30 seconds, on any API process of the same database.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from paypost.api.access import authenticate
from paypost.api.errors import ApiError
from paypost.handlers.application import Application
from paypost.handlers.keys import NoTickets
from paypost.schemas.api import ErrorOut, TicketOut

router = APIRouter(prefix="/api/v1", dependencies=[Depends(authenticate)],
                   responses={code: {"model": ErrorOut} for code in (401, 429, 501)})


@router.post("/events/tickets", status_code=201, response_model=TicketOut, tags=["console"])
async def issue_ticket(request: Request) -> dict[str, Any]:
    """A ticket for ``GET /api/v1/events/stream?ticket=...``: used once, within ``expires_in`` seconds,
    by the key that asked for it (its scope and role, checked again while the feed is open)."""
    application: Application = request.app.state.application
    if not request.state.token:  # pragma: no cover - tickets open the live feed only (api/access.py)
        raise ApiError(401, "unauthorized", "Send Authorization: Bearer <token>.")
    try:
        ticket, expires_in = await application.keys.ticket(request.state.token)
    except NoTickets as exc:
        raise ApiError(501, "not_implemented", str(exc)) from exc
    return {"ticket": ticket, "expires_in": expires_in}
