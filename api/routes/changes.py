"""``/postings/changes`` and ``/operations``: Save Changes (retry and clear, by payment or by failure
group, with its dry run and canary) and the operation that follows it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from paypost.api import render
from paypost.api.deps import API_V1, CONFLICT, AnyId, Caller, error_answer
from paypost.api.errors import ApiError
from paypost.domain.errors import Unroutable
from paypost.handlers.changes import GroupClear, Selection
from paypost.schemas.api.changes import ChangesIn, OperationAccepted, OperationOut, PreviewOut
from paypost.schemas.messages import ClearItem

router = APIRouter(prefix=API_V1, tags=["postings"])


@router.post("/postings/changes", status_code=202, response_model=OperationAccepted, responses={
    200: {"model": PreviewOut, "description": "dry_run=true: what it would do; nothing changed"},
    **error_answer(422, "invalid_request", "unknown_group", "selection_too_large", "invalid_canary",
                   when="A selection refused whole (nothing selected, a blank reason, a group that holds nothing)"),
    **error_answer(503, when="Save Changes could not be sent in full (paypost's topology is damaged); nothing applied"),
})
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
        shown = [{"payment_id": i.payment_id, "action": i.action, "result": i.result, "message": i.message}
                 for i in items]
        app.access.read([{"practice_id": body.practice_id, **row} for row in shown],  # contract section 12
                        {"practice_id": body.practice_id, "dry_run": "true"})
        return JSONResponse({"total": len(items), "items": shown})
    try:
        operation_id = await app.save_changes(body.practice_id, body.retry, [], app.who.name, selection)
    except Unroutable as exc:
        raise ApiError(503, "commands_unroutable", f"Save Changes could not be sent in full: {exc}. "
                       "paypost's topology is damaged; restart paypost to declare it again.") from exc
    return JSONResponse({"operation_id": operation_id}, status_code=202)


@router.post("/operations/{operation_id}/cancel", response_model=OperationOut, responses=CONFLICT)
async def cancel_operation(operation_id: AnyId, app: Caller) -> dict[str, Any]:
    """Stop a running Save Changes: what is not yet replayed stays FAILED and the operation ends
    ``cancelled`` with its counts. One already completed (or cancelled) is a 409."""
    op = await app.reports.operation(operation_id)
    if op["status"] in ("completed", "cancelled") or op.get("cancelled_at") is not None:
        raise ApiError(409, "operation_finished", f"Operation {operation_id} is already {op['status']}.")
    if not await app.save_changes.cancel(op, app.who.name):
        raise ApiError(409, "operation_finished", f"Operation {operation_id} was cancelled already.")
    return render.operation(await app.reports.operation(operation_id))


@router.get("/operations/{operation_id}", response_model=OperationOut)
async def get_operation(operation_id: AnyId, app: Caller) -> dict[str, Any]:
    """Progress and per-item result of a Save Changes."""
    operation = render.operation(await app.reports.operation(operation_id))
    items = operation.get("items") or []
    app.access.read([{"practice_id": operation.get("practice_id"), **item} for item in items],  # section 12
                    {"practice_id": operation.get("practice_id"), "operation_id": operation_id})
    return operation
