"""Refunds and reversals of one payment never take back more than the payment (contract section 10,
``REVERSAL_EXCEEDS_PAYMENT``), however many workers load them at once: the count is one conditional
write on the payment's posting (``infra/mongo/reversals.py``)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest

from paypost.bootstrap import Paypost
from paypost.domain.load_errors import LoadErrorCode, load_error
from paypost.domain.posting import KeptMessage, PostingKey
from paypost.handlers.posting import Outcome
from paypost.infra.mongo.reversals import MongoPaymentBalances
from paypost.infra.runtime.settings import Settings
from tests.support.api_calls import ledger, rows, wait_status
from tests.support.payloads import payment_body
from tests.support.upstream import Upstream
from tests.support.waits import wait_for

pytestmark = pytest.mark.integration

AT = "2026-11-26T10:00:00+00:00"


def refund(payment_id: str, amount: str, refund_id: str | None = None) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "practice_id": "clinic-a",
            "refund_id": refund_id or f"ref-{uuid.uuid4().hex[:8]}", "payment_id": payment_id, "amount": amount,
            "currency": "USD", "occurred_at": AT}


def kept(routing_key: str, body: dict[str, Any]) -> KeptMessage:
    return KeptMessage(orjson.dumps(body), routing_key, body["event_id"], {})


async def payment_sum(api: httpx.AsyncClient, practice: str, payment_id: str) -> Decimal:
    entries = await ledger(api, practice, "EHR-1")
    return sum((Decimal(e["amount"]) for e in entries if e["payment_id"] == payment_id), Decimal("0"))


@pytest.fixture
async def second_worker(paypost: Paypost, settings: Settings) -> AsyncIterator[Paypost]:
    """Another paypost process on the same broker and database, consuming too."""
    other = Paypost(settings, retry_seconds=10)
    await other.start()
    try:
        yield other
    finally:
        await other.stop()


async def test_partial_refunds_load_until_the_payment_is_used_up(api: httpx.AsyncClient, upstream: Upstream,
                                                                 practice: str) -> None:
    payment = await upstream.payment(amount="100.00")
    await wait_status(api, practice, payment["payment_id"], "LOADED")
    partial = [refund(payment["payment_id"], a) for a in ("30.00", "30.00", "40.00")]
    for body in partial:
        await upstream.send("payment.refunded", body)
        await wait_status(api, practice, body["refund_id"], "LOADED")

    too_much = refund(payment["payment_id"], "0.01")
    await upstream.send("payment.refunded", too_much)
    row = await wait_status(api, practice, too_much["refund_id"], "FAILED")
    returned = {"event_id": str(uuid.uuid4()), "practice_id": practice, "return_id": f"ret-{uuid.uuid4().hex[:6]}",
                "payment_id": payment["payment_id"], "amount": "5.00", "currency": "USD", "return_code": "R01",
                "occurred_at": AT}
    await upstream.send("payment.returned", returned)
    returned_row = await wait_status(api, practice, returned["return_id"], "FAILED")

    words = load_error(LoadErrorCode.REVERSAL_EXCEEDS_PAYMENT)
    for failed in (row, returned_row):
        assert failed["load_error"]["code"] == "REVERSAL_EXCEEDS_PAYMENT"
        assert failed["load_error"]["message"].startswith(words.message)
        assert failed["load_error"]["fix"] == (
            "Check the payment in the payments platform; clear this once it is reviewed.")
    assert "0.00 is left of payment" in row["load_error"]["message"]
    assert await payment_sum(api, practice, payment["payment_id"]) == Decimal("0.00")
    # The office sees them as one failure group: the payment is the cause.
    r = await api.get("/api/v1/failure-groups", params={"practice_id": practice})
    groups = [g for g in r.json()["items"] if g["error_code"] == "REVERSAL_EXCEEDS_PAYMENT"]
    assert [(g["cause"], g["count"]) for g in groups] == [(payment["payment_id"], 2)]
    # Reviewed in the platform, the office clears it: nothing more is taken from the payment.
    r = await api.post("/api/v1/postings/changes", json={
        "practice_id": practice, "retry": [], "clear": [{"payment_id": too_much["refund_id"], "reason": "duplicate"}]})
    assert r.status_code == 202, r.text
    await wait_status(api, practice, too_much["refund_id"], "CLEARED")
    assert await payment_sum(api, practice, payment["payment_id"]) == Decimal("0.00")


async def test_a_failed_entry_gives_its_count_back(api: httpx.AsyncClient, upstream: Upstream,
                                                  practice: str) -> None:
    """A refund whose entry the ledger refuses (another currency) takes nothing from the payment."""
    payment = await upstream.payment(amount="50.00")
    await wait_status(api, practice, payment["payment_id"], "LOADED")
    refused = {**refund(payment["payment_id"], "50.00"), "currency": "EUR"}
    await upstream.send("payment.refunded", refused)
    assert (await wait_status(api, practice, refused["refund_id"], "FAILED"))["load_error"]["code"] == "LEDGER_REJECTED"

    whole = refund(payment["payment_id"], "50.00")
    await upstream.send("payment.refunded", whole)

    await wait_status(api, practice, whole["refund_id"], "LOADED")
    assert await payment_sum(api, practice, payment["payment_id"]) == Decimal("0.00")


async def test_two_workers_loading_refunds_of_one_payment_at_once_never_take_back_more(
        paypost: Paypost, second_worker: Paypost, api: httpx.AsyncClient, upstream: Upstream,
        practice: str) -> None:
    """Six refunds of 30.00 of a 100.00 payment, handled at the same moment, three on each worker's
    posting service: exactly three load (90.00), three fail, whichever order the writes land in."""
    services = [paypost.posting_service, second_worker.posting_service]
    for round_ in range(4):
        payment = payment_body(amount="100.00")
        await upstream.send("payment.posted", payment)
        await wait_status(api, practice, payment["payment_id"], "LOADED")
        refunds = [refund(payment["payment_id"], "30.00") for _ in range(6)]

        outcomes = await asyncio.gather(*(services[i % 2].handle(kept("payment.refunded", body))
                                          for i, body in enumerate(refunds)))

        assert all(isinstance(o, Outcome) for o in outcomes)
        statuses = sorted((o.load_status.value if o.load_status else "", o.error_code.value if o.error_code else "")
                          for o in outcomes)
        assert statuses == [("FAILED", "REVERSAL_EXCEEDS_PAYMENT")] * 3 + [("LOADED", "")] * 3, round_
        assert await payment_sum(api, practice, payment["payment_id"]) == Decimal("10.00")
        amount, taken = await MongoPaymentBalances(paypost.collections).taken(
            PostingKey(practice, payment["payment_id"])) or (None, [])
        assert amount == Decimal("100.00") and sum(t for _, t in taken) == Decimal("90.00")
        loaded = {o.key.payment_id for o in outcomes if o.error_code is None}
        assert {i for i, _ in taken} == loaded  # what is counted is exactly what loaded


async def test_two_consuming_workers_and_a_void_racing_refunds_never_go_below_zero(
        second_worker: Paypost, api: httpx.AsyncClient, upstream: Upstream, practice: str) -> None:
    """Through the broker: refunds, a return and a void of one payment published at once, consumed by
    two workers. What loads never takes back more than the payment, and the rest fails for it."""
    payment = payment_body(amount="100.00")
    await upstream.send("payment.posted", payment)
    await wait_status(api, practice, payment["payment_id"], "LOADED")
    refunds = [refund(payment["payment_id"], "25.00") for _ in range(5)]
    void = {"event_id": str(uuid.uuid4()), "practice_id": practice, "void_id": f"void-{uuid.uuid4().hex[:6]}",
            "payment_id": payment["payment_id"], "occurred_at": AT}

    await asyncio.gather(*(upstream.send("payment.refunded", r) for r in refunds),
                         upstream.send("payment.voided", void))

    ids = [r["refund_id"] for r in refunds] + [void["void_id"]]

    async def all_settled() -> list[dict[str, Any]] | None:
        found = [r for r in await rows(api, practice_id=practice) if r["payment_id"] in ids
                 and r["load_status"] in ("LOADED", "FAILED")]
        return found if len(found) == len(ids) else None

    settled = await wait_for(all_settled, timeout=30)
    loaded = [r for r in settled if r["load_status"] == "LOADED"]
    failed = [r for r in settled if r["load_status"] == "FAILED"]
    assert {r["load_error"]["code"] for r in failed} <= {"REVERSAL_EXCEEDS_PAYMENT"}
    assert sum(Decimal(r["amount"]) for r in loaded) == Decimal("100.00")  # used up exactly, never more
    assert await payment_sum(api, practice, payment["payment_id"]) == Decimal("0.00")
