"""``/practices/{id}/periods/{YYYY-MM}``: a month's report, its CSV, and its close (contract section 11)."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse, StreamingResponse

from paypost.api.deps import API_V1, CONFLICT, Caller, PracticeId, error_answer
from paypost.api.errors import ApiError
from paypost.api.routes.deposits import month_end
from paypost.domain.periods import CSV_COLUMNS, PeriodClosed, PeriodError, PeriodNotReady, Total, csv_fields
from paypost.domain.ports import Record
from paypost.handlers.periods import Month
from paypost.schemas.api.deposits import CloseIn, PeriodOut

router = APIRouter(prefix=API_V1, tags=["periods"])


def _total(t: Total) -> dict[str, Any]:
    return {"count": t.count, "amount": f"{t.amount:.2f}"}


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k not in ("_id", "sealed")}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def period_out(practice_id: str, month: Month) -> dict[str, Any]:
    r = month.report
    return {
        "practice_id": practice_id, "month": r.month, "time_zone": r.time_zone,
        "by_kind": {k: _total(t) for k, t in sorted(r.by_kind.items())},
        "by_method": {k: _total(t) for k, t in sorted(r.by_method.items())},
        "by_kind_and_method": {kind: {m: _total(t) for m, t in sorted(methods.items())}
                               for kind, methods in sorted(r.by_kind_and_method.items())},
        "by_status": {k: _total(t) for k, t in sorted(r.by_status.items())},
        "clears": {"verified": _total(r.clears_verified), "not_verified": _total(r.clears_unverified)},
        "transfers": {"reconciled": _total(r.facts.transfers_reconciled),
                      "not_reconciled": _total(r.facts.transfers_unreconciled)},
        "deposits": {"matched": _total(r.facts.deposits_matched), "not_matched": _total(r.facts.deposits_unmatched)},
        "late_for_closed_period": _total(r.late),
        "late_payment_ids": sorted(row.payment_id for row in month.rows if row.late_for_closed_period),
        "net_amount": f"{r.net_amount:.2f}", "ready": r.ready,
        "blockers": [{"kind": b.kind, "count": b.count, "amount": f"{b.amount:.2f}"} for b in r.blockers],
        "closed": _plain(month.close) if month.close is not None else None,
    }


MONTH = r"(1\d|[2-8]\d|9[0-8])\d{2}-(0[1-9]|1[0-2])"  # years 1000 to 9899: each has its next month
MonthPath = Annotated[str, Path(pattern=f"^{MONTH}$", description="a month, YYYY-MM")]
MonthOrCsv = Annotated[str, Path(pattern=f"^{MONTH}(\\.csv)?$",
                                  description="a month, YYYY-MM; YYYY-MM.csv for its rows")]


def _month(value: str) -> str:
    return value.removesuffix(".csv")


@router.get("/practices/{practice_id}/periods/{month}", response_model=PeriodOut,
            responses={200: {"content": {"text/csv": {}}}})
async def get_period(practice_id: PracticeId, month: MonthOrCsv, app: Caller) -> Any:
    """The month's figures, readiness and blockers; ``{YYYY-MM}.csv`` exports its rows."""
    try:
        found = await month_end(app).month(practice_id, _month(month))
    except PeriodError as exc:
        raise ApiError(400, "invalid_month", str(exc)) from exc
    filters = {"practice_id": practice_id, "month": _month(month)}
    if not month.endswith(".csv"):
        shown = period_out(practice_id, found)
        app.access.read([{"practice_id": practice_id, "payment_id": p} for p in shown["late_payment_ids"]], filters)
        return shown
    rows = sorted(found.rows, key=lambda r: (r.occurred_at, r.payment_id))

    async def each() -> AsyncIterator[Record]:
        for row in rows:
            yield {"practice_id": practice_id, "payment_id": row.payment_id, "row": row}

    async def lines() -> AsyncIterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        async for item in app.access.export(each(), filters):  # recorded in the access trail when it ends
            writer.writerow(csv_fields(item["row"]))
            if buffer.tell() > 65_536:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    name = f"{practice_id}-{_month(month)}.csv"
    return StreamingResponse(lines(), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{name}"',
                                      "Cache-Control": "no-store"})


@router.post("/practices/{practice_id}/periods/{month}/close", response_model=PeriodOut, responses={
    **CONFLICT,
    **error_answer(400, "invalid_request", when="A month that has not ended yet in the practice's time zone"),
})
async def close_period(practice_id: PracticeId, month: MonthPath, body: CloseIn, app: Caller) -> Any:
    """Close a ready month (operator); 409 with its blockers unless forced with a reason."""
    try:
        closed = await month_end(app).close(practice_id, month, body.note, body.force, body.reason)
    except PeriodNotReady as exc:
        return JSONResponse(status_code=409, content={"error": {
            "code": "period_not_ready", "message": str(exc),
            "blockers": [{"kind": b.kind, "count": b.count, "amount": f"{b.amount:.2f}"} for b in exc.blockers]}})
    except PeriodClosed as exc:
        raise ApiError(409, "period_closed", str(exc)) from exc
    except PeriodError as exc:
        raise ApiError(400, "invalid_request", str(exc)) from exc
    return period_out(practice_id, closed)
