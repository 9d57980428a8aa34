"""``GET /access-log`` (contract section 12): who was shown which patients' payments; admin only,
within the key's scope."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from paypost.api.deps import API_V1, BAD_CURSOR, Caller
from paypost.domain.access_trail import AccessQuery
from paypost.schemas.api.access_log import AccessPage
from paypost.schemas.types import CURSOR, PRACTICE_ID_PATTERN, Rfc3339

router = APIRouter(prefix=API_V1, tags=["access log"])

Text = Annotated[str | None, Query(min_length=1, max_length=128)]


@router.get("/access-log", response_model=AccessPage, responses=BAD_CURSOR)
async def access_log(
    app: Caller,
    practice_id: Annotated[str | None, Query(pattern=PRACTICE_ID_PATTERN)] = None,
    payment_id: Text = None, patient_account_id: Text = None, key_id: Text = None,
    since: Rfc3339 | None = None, until: Rfc3339 | None = None,
    cursor: Annotated[str | None, Query(max_length=100, description=CURSOR)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """The access trail, newest first: each answer that showed postings, a ledger, alerts, an export
    or a patient search (an admin's key; entries of the practices in its scope)."""
    query = AccessQuery(practice_id=practice_id, payment_id=payment_id, patient_account_id=patient_account_id,
                        key_id=key_id, since=since, until=until)
    items, next_cursor = await app.access.page(query, limit, cursor)
    return {"items": items, "next_cursor": next_cursor}
