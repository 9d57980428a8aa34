"""The office's triage (contract section 8): failure groups, and a posting's notes and assignee.

Save Changes by group, its dry run and canaries are in ``changes``; the totals per Load Status the
console opens on, in ``postings``; an alert's snooze, in ``alerts``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from paypost.api import render
from paypost.api.deps import API_V1, Caller, PracticeId
from paypost.domain.posting import PostingKey
from paypost.schemas.api.triage import AssigneeIn, AssigneeOut, FailureGroupPage, NoteIn, NoteOut
from paypost.schemas.types import PRACTICE_ID_PATTERN

router = APIRouter(prefix=API_V1, tags=["triage"])


@router.get("/failure-groups", response_model=FailureGroupPage)
async def failure_groups(
    app: Caller, practice_id: Annotated[str | None, Query(pattern=PRACTICE_ID_PATTERN)] = None,
) -> dict[str, Any]:
    """FAILED postings grouped by practice, Load Error and cause, largest count first."""
    groups = await app.triage.failure_groups(practice_id)
    # A group's cause may be a patient's account (a mapping failure): who saw it is on record (section 12).
    app.access.read(items := [render.failure_group(g) for g in groups], {"practice_id": practice_id})
    return {"items": items}


@router.post("/postings/{practice_id}/{payment_id:path}/notes", status_code=201, response_model=NoteOut)
async def add_note(practice_id: PracticeId, payment_id: str, body: NoteIn, app: Caller) -> dict[str, Any]:
    """Add a note to a posting's audit trail (action ``note``)."""
    entry, count = await app.triage.add_note(PostingKey(practice_id, payment_id), body.text)
    return {"practice_id": practice_id, "payment_id": payment_id, "notes_count": count,
            "note": render.audit_entry(entry)}


@router.put("/postings/{practice_id}/{payment_id:path}/assignee", response_model=AssigneeOut)
async def put_assignee(practice_id: PracticeId, payment_id: str, body: AssigneeIn, app: Caller) -> dict[str, Any]:
    """Mark who is looking at a posting (``null``: nobody); recorded in its audit trail."""
    entry = await app.triage.assign(PostingKey(practice_id, payment_id), body.assignee)
    return {"practice_id": practice_id, "payment_id": payment_id,
            "assignee": body.assignee.strip() if body.assignee else None, "audit": render.audit_entry(entry)}
