"""The HTTP API of the office's triage (contract section 8): failure groups, notes, the assignee, snoozes,
and the counts and amounts per Load Status the console opens on.

Save Changes by group, its dry run and canaries are in ``api/http.py`` (one route, ``/postings/changes``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from paypost.api import render
from paypost.api.access import Caller, authenticate
from paypost.domain.ports.postings import PostingFilter
from paypost.domain.posting import PostingKey
from paypost.schemas.api import (
    AlertOut,
    AssigneeIn,
    AssigneeOut,
    ErrorOut,
    FailureGroupPage,
    NoteIn,
    NoteOut,
    PostingSummaryOut,
    SnoozeIn,
)
from paypost.schemas.types import PRACTICE_ID_PATTERN

PracticeId = Annotated[str, Path(pattern=PRACTICE_ID_PATTERN, description="A practice id")]
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorOut} for code in (400, 401, 403, 404, 409, 422, 429)}

# As every API router: each route gets its caller's scoped application, never an unscoped one.
router = APIRouter(prefix="/api/v1", responses=ERRORS, dependencies=[Depends(authenticate)], tags=["triage"])


@router.get("/failure-groups", response_model=FailureGroupPage, tags=["triage"])
async def failure_groups(
    app: Caller, practice_id: Annotated[str | None, Query(pattern=PRACTICE_ID_PATTERN)] = None,
) -> dict[str, Any]:
    """FAILED postings grouped by practice, Load Error and cause, largest count first."""
    groups = await app.triage.failure_groups(practice_id)
    return {"items": [render.failure_group(g) for g in groups]}


@router.get("/postings/summary", response_model=PostingSummaryOut, tags=["postings"])
async def postings_summary(
    app: Caller, practice_id: Annotated[str | None, Query(pattern=PRACTICE_ID_PATTERN)] = None,
    received_from: datetime | None = None, received_to: datetime | None = None,
) -> dict[str, Any]:
    """Count and amount per Load Status of the postings received in the span (``received_to``
    excluded), for one practice or every practice of the key's scope. Amounts are the rows' as
    published (a refund's is positive), as the report and the failure groups show them."""
    where = PostingFilter(practice_id=practice_id, received_from=received_from, received_to=received_to)
    totals = await app.reports.summary(where)
    return {"practice_id": practice_id, "received_from": render.iso(received_from),
            "received_to": render.iso(received_to), **render.summary(totals)}


@router.post("/postings/{practice_id}/{payment_id:path}/notes", status_code=201, response_model=NoteOut,
             tags=["triage"])
async def add_note(practice_id: PracticeId, payment_id: str, body: NoteIn, app: Caller) -> dict[str, Any]:
    """Add a note to a posting's audit trail (action ``note``)."""
    entry, count = await app.triage.add_note(PostingKey(practice_id, payment_id), body.text)
    return {"practice_id": practice_id, "payment_id": payment_id, "notes_count": count,
            "note": render.audit_entry(entry)}


@router.put("/postings/{practice_id}/{payment_id:path}/assignee", response_model=AssigneeOut, tags=["triage"])
async def put_assignee(practice_id: PracticeId, payment_id: str, body: AssigneeIn, app: Caller) -> dict[str, Any]:
    """Mark who is looking at a posting (``null``: nobody); recorded in its audit trail."""
    entry = await app.triage.assign(PostingKey(practice_id, payment_id), body.assignee)
    return {"practice_id": practice_id, "payment_id": payment_id,
            "assignee": body.assignee.strip() if body.assignee else None, "audit": render.audit_entry(entry)}


@router.post("/alerts/{alert_id:path}/snooze", response_model=AlertOut)
async def snooze_alert(alert_id: str, body: SnoozeIn, app: Caller) -> dict[str, Any]:
    """Keep an alert from escalating before ``until``; the alert shows its snooze."""
    return render.alert(await app.triage.snooze(alert_id, body.until, body.reason))
