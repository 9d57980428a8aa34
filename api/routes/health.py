"""Health, readiness, metrics and the AsyncAPI document: no key needed (probes and scrapers have none).

A worker serves this router alone (``paypost.bootstrap``); the API serves it beside the others.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from paypost.api.deps import API_V1, Unscoped
from paypost.schemas import PAYPOST_VERSION
from paypost.schemas.api.health import HealthOut, ReadyOut

log = structlog.get_logger("paypost.api")

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthOut)
async def healthz() -> dict[str, str]:
    return {"status": "ok", "version": PAYPOST_VERSION}


@router.get("/readyz", response_model=ReadyOut, responses={
    200: {"description": "The database and the broker answer"},
    503: {"model": ReadyOut, "description": "Not ready: a service did not answer (not_ready, its problem named)"},
})
async def readyz(app: Unscoped) -> JSONResponse:
    found = await app.readiness.problems()
    checks = {service: problem is None for service, problem in found.items()}
    problems = {service: problem for service, problem in found.items() if problem is not None}
    ready = all(checks.values())
    body: dict[str, Any] = {"status": "ready" if ready else "not_ready", "checks": checks}
    if problems:
        body["problems"] = problems
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get(f"{API_V1}/asyncapi.json")
async def asyncapi(request: Request) -> Response:
    """The AsyncAPI document of paypost's exchanges, routing keys and messages."""
    document: Callable[[], str] = request.app.state.asyncapi
    return Response(document(), media_type="application/json")


@router.get("/metrics", response_class=PlainTextResponse,
            responses={200: {"description": "Prometheus' text exposition format (its version in the content type)"}})
async def metrics(app: Unscoped) -> Response:
    try:
        await app.refresh_metrics()
    except Exception as exc:  # noqa: BLE001 - a scrape still answers with what it has when the broker is away
        log.warning("queue_metrics_unavailable", error=type(exc).__name__)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
