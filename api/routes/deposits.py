"""``/practices/{id}/deposits`` and ``/practices/{id}/aging`` (contract section 11)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from paypost.api.deps import API_V1, CONFLICT, AnyId, Caller, PracticeId
from paypost.api.errors import ApiError
from paypost.domain.deposits import AgingBucket, Deposit, DepositError, DepositStatus
from paypost.handlers.month_end import ScopedMonthEnd
from paypost.handlers.tenancy import ScopedApplication
from paypost.schemas.api.deposits import AgingOut, DepositAudit, DepositList, DepositOut, MatchIn, UnmatchIn

router = APIRouter(prefix=API_V1, tags=["deposits"])


def month_end(app: ScopedApplication) -> ScopedMonthEnd:
    if app.month_end is None:
        raise ApiError(404, "not_found", "This paypost does not keep deposits.")
    return app.month_end


def deposit_out(d: Deposit) -> dict[str, Any]:
    return {
        "deposit_id": d.deposit_id, "amount": f"{d.amount:.2f}", "currency": d.currency,
        "deposited_at": d.deposited_at.isoformat(), "status": d.status.value,
        "merchant_transfer_ids": list(d.merchant_transfer_ids),
        "difference": None if d.difference is None else f"{d.difference:.2f}",
        "candidates": [list(c) for c in d.candidates] if d.status is DepositStatus.AMBIGUOUS else None,
        "named_transfer_ids": list(d.named_transfer_ids), "bank_reference": d.bank_reference,
        "search_cut_short": d.search_cut_short,
    }


def buckets_out(buckets: dict[str, AgingBucket]) -> dict[str, Any]:
    return {name: {"count": b.count, "amount": f"{b.amount:.2f}"} for name, b in buckets.items()}


@router.get("/practices/{practice_id}/deposits", response_model=DepositList)
async def list_deposits(practice_id: PracticeId, app: Caller,
                        status: DepositStatus | None = None) -> dict[str, Any]:
    """The practice's deposits, newest first: matched, unmatched, or ambiguous with their candidates."""
    return {"items": [deposit_out(d) for d in await month_end(app).deposits(practice_id, status)]}


@router.get("/practices/{practice_id}/deposits/{deposit_id}/audit", response_model=DepositAudit)
async def deposit_audit(practice_id: PracticeId, deposit_id: AnyId, app: Caller) -> dict[str, Any]:
    """Who matched or unmatched the deposit, when and why."""
    items = await month_end(app).deposit_audit(practice_id, deposit_id)
    return {"items": [{**i, "at": i["at"].isoformat()} for i in items]}


@router.post("/practices/{practice_id}/deposits/{deposit_id}/match", response_model=DepositOut, responses=CONFLICT)
async def match_deposit(practice_id: PracticeId, deposit_id: AnyId, body: MatchIn, app: Caller) -> dict[str, Any]:
    """Match a deposit by hand to transfers no other deposit holds (operator; audited)."""
    try:
        return deposit_out(await month_end(app).match(practice_id, deposit_id, body.merchant_transfer_ids,
                                                      body.reason))
    except DepositError as exc:
        raise ApiError(409, "deposit_conflict", str(exc)) from exc


@router.post("/practices/{practice_id}/deposits/{deposit_id}/unmatch", response_model=DepositOut,
             responses=CONFLICT)
async def unmatch_deposit(practice_id: PracticeId, deposit_id: AnyId, body: UnmatchIn, app: Caller) -> dict[str, Any]:
    """Undo a deposit's match: its transfers are open again (operator; audited)."""
    try:
        return deposit_out(await month_end(app).unmatch(practice_id, deposit_id, body.reason))
    except DepositError as exc:
        raise ApiError(409, "deposit_conflict", str(exc)) from exc


@router.get("/practices/{practice_id}/aging", response_model=AgingOut)
async def aging(practice_id: PracticeId, app: Caller) -> dict[str, Any]:
    """Transfers without a deposit and deposits without a transfer, by age in days."""
    transfers, deposits = await month_end(app).aging(practice_id)
    return {"practice_id": practice_id, "transfers": buckets_out(transfers), "deposits": buckets_out(deposits)}
