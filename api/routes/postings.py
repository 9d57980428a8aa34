"""``/postings``: the Merchant Transfers report (pages, CSV export, totals per Load Status) and one posting."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from paypost.api import render
from paypost.api.deps import API_V1, CONFLICT, Caller, PracticeId
from paypost.api.export import csv_chunks
from paypost.domain.load_errors import LoadErrorCode
from paypost.domain.model import LoadStatus
from paypost.domain.ports.postings import PostingFilter
from paypost.domain.posting import PostingKey
from paypost.schemas.api.postings import PostingDetail, PostingPage, PostingSummaryOut
from paypost.schemas.types import PRACTICE_ID_PATTERN, Rfc3339

router = APIRouter(prefix=API_V1, tags=["postings"])


def report_filter(
    practice_id: Annotated[str | None, Query(pattern=PRACTICE_ID_PATTERN)] = None,
    status: LoadStatus | None = None,
    error_code: LoadErrorCode | None = None,
    merchant_transfer_id: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    patient_account_id: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    received_from: Rfc3339 | None = None,
    received_to: Rfc3339 | None = None,
) -> PostingFilter:
    """The report's filters, the same for its pages and its export."""
    return PostingFilter(
        practice_id=practice_id, status=status, error_code=error_code, merchant_transfer_id=merchant_transfer_id,
        patient_account_id=patient_account_id, received_from=received_from, received_to=received_to,
    )


ReportFilter = Annotated[PostingFilter, Depends(report_filter)]


@router.get("/postings", response_model=PostingPage)
async def list_postings(
    app: Caller, where: ReportFilter,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=1000, description="the next_cursor of the page before, as "
                                       "it came; any other is a 400 invalid_cursor")] = None,
) -> dict[str, Any]:
    """The Merchant Transfers report rows, newest first, paged."""
    docs, next_cursor = await app.reports.page(where, limit, cursor)
    app.access.read(items := [render.row(d) for d in docs], where)
    return {"items": items, "next_cursor": next_cursor}


@router.get("/postings.csv", response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}}, "description": "The report as CSV, streamed"}})
async def export_postings(app: Caller, where: ReportFilter) -> StreamingResponse:
    """Every row the filters select, newest first, as CSV: streamed, a batch at a time."""
    rows = app.reports.every_row(where)  # a practice out of scope is refused here, before the stream starts
    return StreamingResponse(csv_chunks(app.access.export(rows, where)), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": 'attachment; filename="postings.csv"',
                                      "Cache-Control": "no-store"})


@router.get("/postings/{practice_id}/{payment_id:path}", response_model=PostingDetail)
async def get_posting(practice_id: PracticeId, payment_id: str, app: Caller) -> dict[str, Any]:
    """One posting with its attempts, Load Error history and audit trail."""
    app.access.read([shown := render.detail(await app.reports.posting(PostingKey(practice_id, payment_id)))])
    return shown


# The console's triage view opens on these totals; the document has always listed it under triage too.
@router.get("/postings/summary", response_model=PostingSummaryOut, tags=["triage"], responses=CONFLICT)
async def postings_summary(
    app: Caller, practice_id: Annotated[str | None, Query(pattern=PRACTICE_ID_PATTERN)] = None,
    received_from: Rfc3339 | None = None, received_to: Rfc3339 | None = None,
) -> dict[str, Any]:
    """Count and amount per Load Status of the postings received in the span (``received_to``
    excluded), for one practice or every practice of the key's scope. Amounts are the rows' as
    published (a refund's is positive), as the report and the failure groups show them."""
    where = PostingFilter(practice_id=practice_id, received_from=received_from, received_to=received_to)
    totals = await app.reports.summary(where)
    return {"practice_id": practice_id, "received_from": render.iso(received_from),
            "received_to": render.iso(received_to), **render.summary(totals)}
