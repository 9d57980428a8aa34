"""The HTTP API, base path ``/api/v1`` (contract section 3)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal

import orjson
import structlog
from fastapi import APIRouter, Body, FastAPI, Path, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api import errors, render
from api.asyncapi import asyncapi_text
from api.auth import Operator, Viewer, principal_for
from api.errors import ApiError
from domain.load_errors import LoadErrorCode
from domain.model import LoadStatus
from infra.broker import Unroutable
from infra.reports import BadCursor, PostingFilter, PostingReport
from paypost import __version__
from paypost.bootstrap import Paypost
from producers.commands import EmptySelection, MissingReason
from schemas.api import (
    AlertPage,
    ChangesIn,
    EmptyBody,
    ErrorOut,
    LedgerOut,
    MappingIn,
    MappingOut,
    OperationAccepted,
    OperationOut,
    PatientOut,
    PostingDetail,
    PostingPage,
    PracticeIn,
    PracticeOut,
    TransferOut,
)
from schemas.messages import ClearItem
from schemas.types import PRACTICE_ID_PATTERN

log = structlog.get_logger("paypost.api")

PracticeId = Annotated[str, Path(pattern=PRACTICE_ID_PATTERN, description="A practice id")]
AnyId = Annotated[str, Path(min_length=1, max_length=128)]
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (400, 401, 403, 404, 422)
}


def _paypost(request: Request) -> Paypost:
    return request.app.state.paypost  # type: ignore[no-any-return]


def _now() -> datetime:
    return datetime.now(UTC)


router = APIRouter(prefix="/api/v1", responses=ERRORS)


@router.put("/practices/{practice_id}", response_model=PracticeOut, tags=["practices"])
async def put_practice(practice_id: PracticeId, body: PracticeIn, request: Request, who: Operator) -> dict[str, Any]:
    """Set up a practice's ledger integration."""
    ledger = body.ledger.model_dump(mode="json")
    doc = await _paypost(request).directory.put_practice(practice_id, body.name, ledger, body.enabled, _now())
    return {"practice_id": practice_id, "name": doc["name"], "ledger": doc["ledger"], "enabled": doc["enabled"]}


@router.get("/practices/{practice_id}", response_model=PracticeOut, tags=["practices"])
async def get_practice(practice_id: PracticeId, request: Request, who: Viewer) -> dict[str, Any]:
    doc = await _paypost(request).directory.get_practice(practice_id)
    if doc is None:
        raise ApiError(404, "not_found", f"Practice {practice_id} is not set up.")
    return {"practice_id": practice_id, "name": doc["name"], "ledger": doc["ledger"], "enabled": doc["enabled"]}


@router.put("/practices/{practice_id}/ehr-patients/{ehr_patient_id}", response_model=PatientOut, tags=["ledger"])
async def put_ehr_patient(
    practice_id: PracticeId, ehr_patient_id: AnyId, request: Request, who: Operator,
    body: Annotated[EmptyBody | None, Body()] = None,
) -> dict[str, Any]:
    """Register a patient in the built-in ledger (no patient names are needed or kept)."""
    created = await _paypost(request).directory.register_patient(practice_id, ehr_patient_id, _now())
    return {"practice_id": practice_id, "ehr_patient_id": ehr_patient_id, "created": created}


@router.get("/practices/{practice_id}/ehr-patients/{ehr_patient_id}/ledger", response_model=LedgerOut,
            tags=["ledger"])
async def get_ledger(practice_id: PracticeId, ehr_patient_id: AnyId, request: Request, who: Viewer) -> dict[str, Any]:
    """A patient's entries in the built-in ledger."""
    app = _paypost(request)
    if not await app.directory.patient_registered(practice_id, ehr_patient_id):
        raise ApiError(404, "not_found", f"Patient {ehr_patient_id} is not registered for practice {practice_id}.")
    entries = await app.builtin_ledger.entries(practice_id, ehr_patient_id)
    return {"items": [render.ledger_entry(e) for e in entries]}


@router.put("/practices/{practice_id}/patient-accounts/{patient_account_id}/mapping", response_model=MappingOut,
            tags=["mappings"])
async def put_mapping(
    practice_id: PracticeId, patient_account_id: AnyId, body: MappingIn, request: Request, who: Operator
) -> dict[str, Any]:
    """Enter or correct a mapping; paypost then retries that patient's mapping failures by itself."""
    retried = await _paypost(request).mapping_service.update(
        practice_id, patient_account_id, body.ehr_patient_id, actor=who.name, source=f"api by {who.name}"
    )
    return {"practice_id": practice_id, "patient_account_id": patient_account_id,
            "ehr_patient_id": body.ehr_patient_id, "retried": retried}


@router.get("/postings", response_model=PostingPage, tags=["postings"])
async def list_postings(
    request: Request,
    who: Viewer,
    practice_id: Annotated[str | None, Query(pattern=PRACTICE_ID_PATTERN)] = None,
    status: LoadStatus | None = None,
    error_code: LoadErrorCode | None = None,
    merchant_transfer_id: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    patient_account_id: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    received_from: datetime | None = None,
    received_to: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> dict[str, Any]:
    """The Merchant Transfers report rows, newest first, paged."""
    where = PostingFilter(
        practice_id=practice_id, status=status.value if status else None,
        error_code=error_code.value if error_code else None, merchant_transfer_id=merchant_transfer_id,
        patient_account_id=patient_account_id, received_from=received_from, received_to=received_to,
    )
    try:
        docs, next_cursor = await PostingReport(_paypost(request).collections).page(where, limit, cursor)
    except BadCursor as exc:
        raise ApiError(400, "invalid_cursor", str(exc)) from exc
    return {"items": [render.row(d) for d in docs], "next_cursor": next_cursor}


@router.get("/postings/{practice_id}/{payment_id:path}", response_model=PostingDetail, tags=["postings"])
async def get_posting(practice_id: str, payment_id: str, request: Request, who: Viewer) -> dict[str, Any]:
    """One posting with its attempts, Load Error history and audit trail."""
    doc = await PostingReport(_paypost(request).collections).one(practice_id, payment_id)
    if doc is None:
        raise ApiError(404, "not_found", f"No posting {payment_id} for practice {practice_id}.")
    return render.detail(doc)


@router.post("/postings/changes", status_code=202, response_model=OperationAccepted, tags=["postings"])
async def save_changes(body: ChangesIn, request: Request, who: Operator) -> dict[str, str]:
    """Save Changes: retry and clear a selection as one operation; follow it at /operations/{id}."""
    clears = [ClearItem(payment_id=c.payment_id, reason=c.reason, manual_reference=c.manual_reference)
              for c in body.clear]
    try:
        operation_id = await _paypost(request).save_changes(body.practice_id, body.retry, clears, who.name)
    except (MissingReason, EmptySelection) as exc:
        raise ApiError(422, "invalid_request", str(exc)) from exc
    except Unroutable as exc:
        raise ApiError(503, "commands_unroutable", f"Save Changes could not be sent in full: {exc}. paypost's topology is damaged; "
                                                   "restart paypost to declare it again.") from exc
    return {"operation_id": operation_id}


@router.get("/operations/{operation_id}", response_model=OperationOut, tags=["postings"])
async def get_operation(operation_id: AnyId, request: Request, who: Viewer) -> dict[str, Any]:
    """Progress and per-item result of a Save Changes."""
    op = await _paypost(request).operation_store.get(operation_id)
    if op is None:
        raise ApiError(404, "not_found", f"No operation {operation_id}.")
    return {**op, "created_at": render.iso(op["created_at"])}


@router.get("/transfers/{practice_id}/{merchant_transfer_id}", response_model=TransferOut, tags=["transfers"])
async def get_transfer(practice_id: PracticeId, merchant_transfer_id: AnyId, request: Request,
                       who: Viewer) -> dict[str, Any]:
    """Reconciliation of a merchant transfer, current as of this call."""
    transfers = _paypost(request).transfers
    doc = await transfers.get(practice_id, merchant_transfer_id)
    if doc is None:
        raise ApiError(404, "not_found", f"Transfer {merchant_transfer_id} has not settled for practice "
                                         f"{practice_id} (no transfer.settled received).")
    return render.transfer(doc, await transfers.reconcile(doc))


@router.get("/alerts", response_model=AlertPage, tags=["alerts"])
async def list_alerts(
    request: Request, who: Viewer,
    practice_id: Annotated[str | None, Query(pattern=PRACTICE_ID_PATTERN)] = None,
    state: Annotated[Literal["open", "escalated", "resolved"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 500,
) -> dict[str, Any]:
    """Office tasks and patient flags; ``state=open`` includes escalated ones."""
    docs = await _paypost(request).alerts.list(practice_id, state, limit)
    return {"items": [render.alert(d) for d in docs]}


@router.get("/whoami", tags=["console"])
async def whoami(who: Viewer) -> dict[str, str]:
    """The name and role behind the token (the console shows the changes a role may make)."""
    return {"name": who.name, "role": who.role}


@router.get("/events/stream", tags=["console"])
async def event_stream(
    request: Request,
    practice_id: Annotated[str | None, Query(pattern=PRACTICE_ID_PATTERN)] = None,
    access_token: Annotated[str | None, Query(description="EventSource cannot send headers")] = None,
) -> StreamingResponse:
    """Server-sent events: every event of ``paypost.events`` for a practice, live."""
    header = request.headers.get("authorization", "")
    principal_for(request, header[7:] if header.lower().startswith("bearer ") else access_token)
    hub = _paypost(request).event_hub

    async def stream() -> AsyncIterator[bytes]:
        yield b": connected\n\n"
        async for event in hub.subscribe():
            if practice_id and event.body.get("practice_id") != practice_id:
                continue
            data = orjson.dumps({"routing_key": event.routing_key, **event.body})
            yield b"event: paypost\ndata: " + data + b"\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


health = APIRouter()


@health.get("/healthz", tags=["health"])
async def healthz() -> dict[str, str]:
    return {"status": "ok", "version": __version__}


@health.get("/readyz", tags=["health"])
async def readyz(request: Request) -> JSONResponse:
    app = _paypost(request)
    checks = {"database": False, "broker": False}
    problems: dict[str, str] = {}
    try:
        await app.mongo.admin.command("ping")
        checks["database"] = True
    except Exception as exc:  # noqa: BLE001 - readiness reports any failure as "not ready", naming it
        problems["database"] = type(exc).__name__
    try:
        checks["broker"] = bool(await app.broker.ping(timeout=2.0))
    except Exception as exc:  # noqa: BLE001
        problems["broker"] = type(exc).__name__
    ready = all(checks.values())
    body: dict[str, Any] = {"status": "ready" if ready else "not_ready", "checks": checks}
    if problems:
        body["problems"] = problems
    return JSONResponse(body, status_code=200 if ready else 503)


@health.get("/api/v1/asyncapi.json", tags=["health"])
async def asyncapi() -> Response:
    """The AsyncAPI document of paypost's exchanges, routing keys and messages."""
    return Response(asyncapi_text(), media_type="application/json")


@health.get("/metrics", tags=["health"])
async def metrics(request: Request) -> Response:
    try:
        await _paypost(request).refresh_queue_metrics()
    except Exception as exc:  # noqa: BLE001 - a scrape still answers with what it has when the broker is away
        log.warning("queue_metrics_unavailable", error=type(exc).__name__)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def create_app(
    paypost: Paypost, *, manage_lifecycle: bool = True,
    after_start: Callable[[], Awaitable[None]] | None = None,
) -> FastAPI:
    """The ASGI app. With ``manage_lifecycle`` it starts and stops paypost's consumers too."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if manage_lifecycle:
            await paypost.start()
        if after_start is not None:
            await after_start()
        try:
            yield
        finally:
            # uvicorn re-raises SIGTERM after serve() returns: clean-up belongs here.
            if manage_lifecycle:
                await paypost.stop()

    app = FastAPI(
        title="paypost", version=__version__, lifespan=lifespan,
        openapi_url="/api/v1/openapi.json", docs_url="/api/v1/docs", redoc_url=None,
    )
    app.state.paypost = paypost
    errors.install(app)
    app.include_router(router)
    app.include_router(health)
    console = FilePath(__file__).with_name("console")
    app.mount("/console", StaticFiles(directory=console), name="console")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(console / "index.html")

    return app
