"""The HTTP API, base path ``/api/v1`` (contract section 3): the app, assembled from one router per resource."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from fastapi.telemetry import TelemetryConfig

from paypost.api import document, errors
from paypost.api.access_log import AccessLog
from paypost.api.deps import ERRORS, IPNetwork, authenticate
from paypost.api.request_ids import RequestIds
from paypost.api.routes import (
    access_log,
    alerts,
    changes,
    deposits,
    events,
    health,
    keys,
    legal_hold,
    mappings,
    overview,
    patient_search,
    patients,
    periods,
    postings,
    practices,
    transfers,
    triage,
)
from paypost.api.security import SecurityHeaders
from paypost.handlers.application import Application
from paypost.schemas import PAYPOST_VERSION

CONSOLE = Path(__file__).with_name("console")
# FastAPI's own telemetry: a server span per call (once paypost installs a tracer provider:
# infra/runtime/tracing.py), nothing else. Its logs would record validation failures and
# exceptions with their inputs (a body holds patient data), its metrics duplicate paypost's.
# Probes and scrapes (every few seconds, from the orchestrator and Prometheus) are no trace.
TELEMETRY: TelemetryConfig = {"tracing": True, "logs": False, "metrics": False, "operation_spans": False,
                              "exclude": lambda scope: scope.get("path") in ("/metrics", "/healthz", "/readyz")}

# Every route of these gets its caller's scoped application (deps.authenticate): none can reach a
# handler unscoped, or forget the check. The order is the order requests are matched in.
api = APIRouter(dependencies=[Depends(authenticate)], responses=ERRORS)
for resource in (practices, patients, mappings, patient_search, postings, changes, transfers, deposits, periods,
                 alerts, triage, overview, keys, events, access_log, legal_hold):  # the last two: contract section 12
    api.include_router(resource.router)


Hook = Callable[[], Awaitable[None]]


def lifespan(on_start: Hook | None, on_stop: Hook | None) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """An app's lifespan that runs ``on_start`` before it serves and ``on_stop`` after (the
    composition root starts and stops the consumers there: uvicorn re-raises SIGTERM after serve()
    returns, so clean-up belongs here). One for the API and the worker's app alike."""

    @asynccontextmanager
    async def span(_: FastAPI) -> AsyncIterator[None]:
        if on_start is not None:
            await on_start()
        try:
            yield
        finally:
            if on_stop is not None:
                await on_stop()

    return span


def create_app(
    application: Application, asyncapi: Callable[[], str], *,
    on_start: Callable[[], Awaitable[None]] | None = None,
    on_stop: Callable[[], Awaitable[None]] | None = None,
    key_check_every: float = 5.0,
    trusted_proxies: list[IPNetwork] | None = None,
    ledger_kinds: Sequence[str] = (),
) -> FastAPI:
    """The ASGI app over ``application``'s handlers (its ``keys`` say who holds which token);
    ``asyncapi`` writes the AsyncAPI document of the broker's side.

    ``on_start`` and ``on_stop`` run in the app's lifespan (the composition root starts and stops
    the consumers there: uvicorn re-raises SIGTERM after serve() returns, so clean-up belongs here).
    ``key_check_every``: how often, in seconds, an open live feed checks that its key still holds.
    ``ledger_kinds``: the kinds installed adapters provide, which the document lists as an adapter
    ledger's ``kind`` (any other is a 400 unknown_ledger_kind).
    """

    app = FastAPI(title="paypost", version=PAYPOST_VERSION, lifespan=lifespan(on_start, on_stop),
                  # No docs page: FastAPI's loads its script from a public CDN and runs inline script the
                  # Content-Security-Policy refuses (contract section 12). The OpenAPI document is served.
                  openapi_url="/api/v1/openapi.json", docs_url=None, redoc_url=None, telemetry=TELEMETRY)
    app.state.application = application
    app.state.asyncapi = asyncapi
    app.state.key_check_every = key_check_every
    app.state.trusted_proxies = trusted_proxies or []  # PAYPOST_TRUSTED_PROXIES: whose X-Forwarded-For is believed
    errors.install(app)
    app.include_router(api)
    app.include_router(health.router)
    app.add_middleware(AccessLog)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(RequestIds)  # outside the access log: its line carries the request id
    app.mount("/console", StaticFiles(directory=CONSOLE), name="console")

    document.install(app, ledger_kinds=ledger_kinds)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(CONSOLE / "index.html")

    return app


def create_worker_app(application: Application, asyncapi: Callable[[], str], *,
                      on_start: Hook | None = None, on_stop: Hook | None = None) -> FastAPI:
    """A worker's HTTP side: health, readiness and metrics, no API route and no console."""
    app = FastAPI(title="paypost worker", lifespan=lifespan(on_start, on_stop),
                  openapi_url=None, docs_url=None, redoc_url=None, telemetry=TELEMETRY)
    app.state.application = application
    app.state.asyncapi = asyncapi
    app.include_router(health.router)
    app.add_middleware(SecurityHeaders)
    return app
