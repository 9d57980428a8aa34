"""``/postings``: the Merchant Transfers report (pages, CSV export, totals per Load Status) and one posting."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from paypost.api import render
from paypost.api.deps import API_V1, BAD_CURSOR, Caller, PracticeId
from paypost.api.export import csv_chunks
from paypost.domain.load_errors import LoadErrorCode
from paypost.domain.model import LoadStatus
from paypost.domain.ports.postings import PostingFilter
from paypost.domain.posting import PostingKey
from paypost.schemas.api.postings import PostingDetail, PostingPage, PostingSummaryOut
from paypost.schemas.types import CURSOR, PRACTICE_ID_PATTERN, Rfc3339

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


@router.get("/postings", response_model=PostingPage, responses=BAD_CURSOR)
async def list_postings(
    app: Caller, where: ReportFilter,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=1000, description=CURSOR)] = None,
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


async def _posting(app: Caller, key: PostingKey) -> dict[str, Any]:
    app.access.read([shown := render.detail(await app.reports.posting(key))])
    return shown


def _posting_ending_in(tail: str) -> Callable[..., Awaitable[dict[str, Any]]]:
    async def get_posting_ending(practice_id: PracticeId, payment_id: str, app: Caller) -> dict[str, Any]:
        return await _posting(app, PostingKey(practice_id, f"{payment_id}/{tail}"))

    get_posting_ending.__doc__ = (
        f"The posting whose payment id is ``{{payment_id}}/{tail}``: a payment id may hold a slash, so a GET at "
        f"a posting's {tail} path reads that posting (one with no such id is a 404). Its {tail} are in the "
        "posting itself (GET /postings/{practice_id}/{payment_id}).")
    return get_posting_ending


# Before the posting's own route, which would read these paths the same way: so the document says it.
for _tail in ("notes", "assignee"):
    router.add_api_route(f"/postings/{{practice_id}}/{{payment_id:path}}/{_tail}", _posting_ending_in(_tail),
                         methods=["GET"], response_model=PostingDetail, operation_id=f"get_posting_ending_in_{_tail}",
                         summary=f"A posting whose payment id ends in /{_tail}")


@router.get("/postings/{practice_id}/{payment_id:path}", response_model=PostingDetail)
async def get_posting(practice_id: PracticeId, payment_id: str, app: Caller) -> dict[str, Any]:
    """One posting with its attempts, Load Error history and audit trail."""
    return await _posting(app, PostingKey(practice_id, payment_id))


# The console's triage view opens on these totals; the document has always listed it under triage too.
@router.get("/postings/summary", response_model=PostingSummaryOut, tags=["triage"])
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
