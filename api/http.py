"""The HTTP API, base path ``/api/v1`` (contract section 3)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal

import orjson
import structlog
from fastapi import APIRouter, Body, Depends, FastAPI, Path, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from paypost.api import errors, keys, render, triage
from paypost.api.access import AccessLog, Caller, authenticate
from paypost.api.errors import ApiError, error_response
from paypost.api.export import csv_chunks
from paypost.api.keys import PracticeList, WhoAmI
from paypost.api.routes import alerts_resolve
from paypost.domain.access import AccessDenied
from paypost.domain.alerts import AlertState
from paypost.domain.errors import BadCursor, RefusedHost, Unroutable
from paypost.domain.integrations import InvalidLedgerSettings, MissingSecretKey, UnknownLedgerKind
from paypost.domain.load_errors import LoadErrorCode
from paypost.domain.model import LoadStatus
from paypost.domain.ports import PostingFilter
from paypost.domain.posting import PostingKey
from paypost.handlers.application import Application
from paypost.handlers.changes import (
    EmptySelection,
    GroupClear,
    InvalidCanary,
    MissingReason,
    Selection,
    SelectionTooLarge,
    UnknownGroup,
)
from paypost.handlers.keys import InvalidKey
from paypost.handlers.practices import NotFound
from paypost.handlers.triage import AlertResolved, NotResolvable, NotSnoozable
from paypost.schemas import PAYPOST_VERSION
from paypost.schemas.api import (
    AlertPage,
    ChangesIn,
    EmptyBody,
    ErrorOut,
    HoldIn,
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
    PreviewOut,
    TransferOut,
)
from paypost.schemas.messages import ClearItem
from paypost.schemas.types import PRACTICE_ID_PATTERN

log = structlog.get_logger("paypost.api")


PracticeId = Annotated[str, Path(pattern=PRACTICE_ID_PATTERN, description="A practice id")]
AnyId = Annotated[str, Path(min_length=1, max_length=128)]
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (400, 401, 403, 404, 422)
}


def _app(request: Request) -> Application:
    """The unscoped handlers: only for the calls that need no key (health, readiness, metrics)."""
    app: Application = request.app.state.application
    return app


# Every route of this router (and of paypost.api.keys') gets its caller's scoped application: none can
# reach a handler unscoped, or forget the check.
router = APIRouter(prefix="/api/v1", responses={**ERRORS, 429: {"model": ErrorOut}},
                   dependencies=[Depends(authenticate)])


@router.put("/practices/{practice_id}", response_model=PracticeOut, tags=["practices"])
async def put_practice(practice_id: PracticeId, body: PracticeIn, app: Caller) -> dict[str, Any]:
    """Set up a practice's ledger integration."""
    ledger = body.ledger.model_dump(mode="json", exclude_none=True)
    return render.practice(await app.practices.put(practice_id, body.name, ledger, body.enabled))


@router.get("/practices/{practice_id}", response_model=PracticeOut, tags=["practices"])
async def get_practice(practice_id: PracticeId, app: Caller) -> dict[str, Any]:
    return render.practice(await app.practices.get(practice_id))


@router.post("/practices/{practice_id}/hold", response_model=PracticeOut, tags=["practices"])
async def hold_practice(practice_id: PracticeId, body: HoldIn, app: Caller) -> dict[str, Any]:
    """Hold a practice by hand (contract section 7): its payments are HELD until it is released."""
    return render.practice(await app.practices.hold(practice_id, body.reason))


@router.post("/practices/{practice_id}/release", response_model=PracticeOut, tags=["practices"])
async def release_practice(practice_id: PracticeId, app: Caller) -> dict[str, Any]:
    """Release a held practice: its held payments load by themselves, in the order received."""
    return render.practice(await app.practices.release(practice_id))


@router.put("/practices/{practice_id}/ehr-patients/{ehr_patient_id}", response_model=PatientOut, tags=["ledger"])
async def put_ehr_patient(
    practice_id: PracticeId, ehr_patient_id: AnyId, app: Caller,
    body: Annotated[EmptyBody | None, Body()] = None,
) -> dict[str, Any]:
    """Register a patient in the built-in ledger (no patient names are needed or kept)."""
    created = await app.practices.register_patient(practice_id, ehr_patient_id)
    return {"practice_id": practice_id, "ehr_patient_id": ehr_patient_id, "created": created}


@router.get("/practices/{practice_id}/ehr-patients/{ehr_patient_id}/ledger", response_model=LedgerOut,
            tags=["ledger"])
async def get_ledger(practice_id: PracticeId, ehr_patient_id: AnyId, app: Caller) -> dict[str, Any]:
    """A patient's entries in the built-in ledger."""
    entries = await app.practices.ledger(practice_id, ehr_patient_id)
    return {"items": [render.ledger_entry(e) for e in entries]}


@router.put("/practices/{practice_id}/patient-accounts/{patient_account_id}/mapping", response_model=MappingOut,
            tags=["mappings"])
async def put_mapping(
    practice_id: PracticeId, patient_account_id: AnyId, body: MappingIn, app: Caller
) -> dict[str, Any]:
    """Enter or correct a mapping; paypost then retries that patient's mapping failures by itself."""
    retried = await app.mappings.update(
        practice_id, patient_account_id, body.ehr_patient_id, actor=app.who.name, source=f"api by {app.who.name}"
    )
    return {"practice_id": practice_id, "patient_account_id": patient_account_id,
            "ehr_patient_id": body.ehr_patient_id, "retried": retried}


def report_filter(
    practice_id: Annotated[str | None, Query(pattern=PRACTICE_ID_PATTERN)] = None,
    status: LoadStatus | None = None,
    error_code: LoadErrorCode | None = None,
    merchant_transfer_id: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    patient_account_id: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    received_from: datetime | None = None,
    received_to: datetime | None = None,
) -> PostingFilter:
    """The report's filters, the same for its pages and its export."""
    return PostingFilter(
        practice_id=practice_id, status=status, error_code=error_code, merchant_transfer_id=merchant_transfer_id,
        patient_account_id=patient_account_id, received_from=received_from, received_to=received_to,
    )


ReportFilter = Annotated[PostingFilter, Depends(report_filter)]


@router.get("/postings", response_model=PostingPage, tags=["postings"])
async def list_postings(
    app: Caller, where: ReportFilter,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> dict[str, Any]:
    """The Merchant Transfers report rows, newest first, paged."""
    docs, next_cursor = await app.reports.page(where, limit, cursor)
    return {"items": [render.row(d) for d in docs], "next_cursor": next_cursor}


@router.get("/postings.csv", tags=["postings"], response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}}, "description": "The report as CSV, streamed"}})
async def export_postings(app: Caller, where: ReportFilter) -> StreamingResponse:
    """Every row the filters select, newest first, as CSV: streamed, a batch at a time."""
    rows = app.reports.every_row(where)  # a practice out of scope is refused here, before the stream starts
    return StreamingResponse(csv_chunks(rows), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": 'attachment; filename="postings.csv"',
                                      "Cache-Control": "no-store"})


@router.get("/postings/{practice_id}/{payment_id:path}", response_model=PostingDetail, tags=["postings"])
async def get_posting(practice_id: str, payment_id: str, app: Caller) -> dict[str, Any]:
    """One posting with its attempts, Load Error history and audit trail."""
    return render.detail(await app.reports.posting(PostingKey(practice_id, payment_id)))


@router.post("/postings/changes", status_code=202, response_model=OperationAccepted, tags=["postings"],
             responses={200: {"model": PreviewOut, "description": "dry_run=true: what it would do; nothing changed"}})
async def save_changes(
    body: ChangesIn, app: Caller,
    dry_run: Annotated[bool, Query(description="say what it would do, and change nothing")] = False,
) -> Any:
    """Save Changes: retry and clear a selection (payments or failure groups) as one operation;
    follow it at /operations/{id}. With ``canary: k`` the rest waits for the first k retries to load."""
    selection = Selection(
        clear=[ClearItem(payment_id=c.payment_id, reason=c.reason, manual_reference=c.manual_reference)
               for c in body.clear],
        retry_groups=body.retry_groups,
        clear_groups=[GroupClear(g.group_id, g.reason, g.manual_reference) for g in body.clear_groups],
        canary=body.canary)
    if dry_run:
        items = await app.save_changes.preview(body.practice_id, Selection(
            retry=body.retry, clear=selection.clear, retry_groups=selection.retry_groups,
            clear_groups=selection.clear_groups, canary=selection.canary))
        return JSONResponse({"total": len(items), "items": [
            {"payment_id": i.payment_id, "action": i.action, "result": i.result, "message": i.message}
            for i in items]})
    try:
        operation_id = await app.save_changes(body.practice_id, body.retry, [], app.who.name, selection)
    except Unroutable as exc:
        raise ApiError(503, "commands_unroutable", f"Save Changes could not be sent in full: {exc}. "
                       "paypost's topology is damaged; restart paypost to declare it again.") from exc
    return JSONResponse({"operation_id": operation_id}, status_code=202)


@router.get("/operations/{operation_id}", response_model=OperationOut, tags=["postings"])
async def get_operation(operation_id: AnyId, app: Caller) -> dict[str, Any]:
    """Progress and per-item result of a Save Changes."""
    return render.operation(await app.reports.operation(operation_id))


@router.get("/transfers/{practice_id}/{merchant_transfer_id}", response_model=TransferOut, tags=["transfers"])
async def get_transfer(practice_id: PracticeId, merchant_transfer_id: AnyId, app: Caller) -> dict[str, Any]:
    """Reconciliation of a merchant transfer, current as of this call."""
    transfer, reconciliation = await app.reports.transfer(practice_id, merchant_transfer_id)
    return render.transfer(transfer, reconciliation)


@router.get("/alerts", response_model=AlertPage, tags=["alerts"])
async def list_alerts(
    app: Caller,
    practice_id: Annotated[str | None, Query(pattern=PRACTICE_ID_PATTERN)] = None,
    state: Annotated[Literal["open", "escalated", "resolved"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 500,
) -> dict[str, Any]:
    """Office tasks and patient flags; ``state=open`` includes escalated ones."""
    alerts = await app.reports.alerts(practice_id, AlertState(state) if state else None, limit)
    return {"items": [render.alert(a) for a in alerts]}


@router.get("/practices", response_model=PracticeList, tags=["practices"])
async def list_practices(app: Caller) -> dict[str, Any]:
    """The practices in the key's scope (the console offers them to pick from)."""
    return {"items": [render.practice_listed(p) for p in await app.practices.in_scope()]}


@router.get("/whoami", response_model=WhoAmI, tags=["console"])
async def whoami(app: Caller) -> dict[str, Any]:
    """The name, role and practices behind the token (the console shows the changes a role may make)."""
    return {"name": app.who.name, "role": app.who.role.value, "practices": app.who.scope.names()}


@router.get("/events/stream", tags=["console"])
async def event_stream(
    request: Request, app: Caller,
    practice_id: Annotated[str | None, Query(pattern=PRACTICE_ID_PATTERN)] = None,
    access_token: Annotated[str | None, Query(description="EventSource cannot send headers")] = None,
) -> StreamingResponse:
    """Server-sent events: every event of ``paypost.events`` for the key's practices (or one), live.

    The key is checked again every few seconds while the stream is open: once it is revoked or
    expired, an ``end`` event says so and the stream closes (a new one then gets 401)."""
    if practice_id is not None:
        app.guard.read(practice_id)
    keys = request.app.state.application.keys
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


health = APIRouter()


@health.get("/healthz", tags=["health"])
async def healthz() -> dict[str, str]:
    return {"status": "ok", "version": PAYPOST_VERSION}


@health.get("/readyz", tags=["health"])
async def readyz(request: Request) -> JSONResponse:
    found = await _app(request).readiness.problems()
    checks = {service: problem is None for service, problem in found.items()}
    problems = {service: problem for service, problem in found.items() if problem is not None}
    ready = all(checks.values())
    body: dict[str, Any] = {"status": "ready" if ready else "not_ready", "checks": checks}
    if problems:
        body["problems"] = problems
    return JSONResponse(body, status_code=200 if ready else 503)


@health.get("/api/v1/asyncapi.json", tags=["health"])
async def asyncapi(request: Request) -> Response:
    """The AsyncAPI document of paypost's exchanges, routing keys and messages."""
    document: Callable[[], str] = request.app.state.asyncapi
    return Response(document(), media_type="application/json")


@health.get("/metrics", tags=["health"])
async def metrics(request: Request) -> Response:
    try:
        await _app(request).refresh_metrics()
    except Exception as exc:  # noqa: BLE001 - a scrape still answers with what it has when the broker is away
        log.warning("queue_metrics_unavailable", error=type(exc).__name__)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def create_app(
    application: Application, asyncapi: Callable[[], str], *,
    on_start: Callable[[], Awaitable[None]] | None = None,
    on_stop: Callable[[], Awaitable[None]] | None = None,
    key_check_every: float = 5.0,
) -> FastAPI:
    """The ASGI app over ``application``'s handlers (its ``keys`` say who holds which token);
    ``asyncapi`` writes the AsyncAPI document of the broker's side.

    ``on_start`` and ``on_stop`` run in the app's lifespan (the composition root starts and stops
    the consumers there: uvicorn re-raises SIGTERM after serve() returns, so clean-up belongs here).
    ``key_check_every``: how often, in seconds, an open live feed checks that its key still holds.
    """

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if on_start is not None:
            await on_start()
        try:
            yield
        finally:
            if on_stop is not None:
                await on_stop()

    app = FastAPI(
        title="paypost", version=PAYPOST_VERSION, lifespan=lifespan,
        openapi_url="/api/v1/openapi.json", docs_url="/api/v1/docs", redoc_url=None,
    )
    app.state.application = application
    app.state.asyncapi = asyncapi
    app.state.key_check_every = key_check_every
    errors.install(app)
    _install_handler_errors(app)
    app.include_router(router)
    app.include_router(triage.router)
    app.include_router(alerts_resolve.router)  # (1.2) api/routes/alerts_resolve.py
    app.include_router(keys.router)
    app.include_router(health)
    app.add_middleware(AccessLog)
    console = FilePath(__file__).with_name("console")
    app.mount("/console", StaticFiles(directory=console), name="console")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(console / "index.html")

    return app


def _install_handler_errors(app: FastAPI) -> None:
    """The handlers' named errors, as the API answers them."""

    answers: dict[type[Exception], tuple[int, str]] = {
        NotFound: (404, "not_found"),
        MissingSecretKey: (400, "secret_key_missing"),
        RefusedHost: (400, "refused_host"),
        UnknownLedgerKind: (400, "unknown_ledger_kind"),
        InvalidLedgerSettings: (400, "invalid_ledger_settings"),
        AccessDenied: (403, "forbidden"),
        InvalidKey: (422, "invalid_request"),
        UnknownGroup: (422, "unknown_group"),
        SelectionTooLarge: (422, "selection_too_large"),
        InvalidCanary: (422, "invalid_canary"),
        NotSnoozable: (422, "invalid_request"),
        AlertResolved: (409, "alert_resolved"),
        NotResolvable: (422, "invalid_request"),
    }

    async def _answer(_: Request, exc: Exception) -> JSONResponse:
        status, code = next(answers[kind] for kind in type(exc).__mro__ if kind in answers)
        return error_response(status, code, str(exc))

    for error in answers:
        app.add_exception_handler(error, _answer)

    @app.exception_handler(BadCursor)
    async def _bad_cursor(_: Request, exc: BadCursor) -> JSONResponse:
        return error_response(400, "invalid_cursor", str(exc))

    @app.exception_handler(MissingReason)
    @app.exception_handler(EmptySelection)
    async def _refused(_: Request, exc: Exception) -> JSONResponse:
        return error_response(422, "invalid_request", str(exc))
