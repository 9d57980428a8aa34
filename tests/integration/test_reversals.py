"""Money that moves back (contract section 10) end to end on the real RabbitMQ and MongoDB: voids,
returns, chargebacks and won disputes, each a posting of its own with a ledger entry against its
payment, exactly once."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.support.api_calls import get_posting, ledger, wait_status
from tests.support.upstream import Upstream
from tests.support.waits import wait_for

pytestmark = pytest.mark.integration

AT = "2026-11-26T10:00:00+00:00"


def reversal_body(kind: str, payment_id: str, **fields: Any) -> tuple[str, dict[str, Any]]:
    """A reversal message as an upstream publishes it: its routing key and body."""
    common = {"event_id": str(uuid.uuid4()), "practice_id": "clinic-a", "payment_id": payment_id,
              "occurred_at": AT}
    match kind:
        case "void":
            return "payment.voided", {**common, "void_id": f"void-{uuid.uuid4().hex[:8]}", **fields}
        case "return":
            return "payment.returned", {**common, "return_id": f"ret-{uuid.uuid4().hex[:8]}", "amount": "125.00",
                                        "currency": "USD", "return_code": "R01", **fields}
        case "chargeback":
            return "payment.disputed", {**common, "dispute_id": f"dsp-{uuid.uuid4().hex[:8]}", "amount": "125.00",
                                        "currency": "USD", "reason": "fraudulent", **fields}
    raise AssertionError(kind)


def own_id(body: dict[str, Any]) -> str:
    return str(body.get("void_id") or body.get("return_id") or body.get("dispute_id") or body["refund_id"])


async def reverse(upstream: Upstream, kind: str, payment_id: str, **fields: Any) -> dict[str, Any]:
    key, body = reversal_body(kind, payment_id, **fields)
    await upstream.send(key, body)
    return body


async def close_dispute(upstream: Upstream, dispute_id: str, outcome: str) -> dict[str, Any]:
    body = {"event_id": str(uuid.uuid4()), "practice_id": "clinic-a", "dispute_id": dispute_id,
            "outcome": outcome, "occurred_at": AT}
    await upstream.send("dispute.closed", body)
    return body


async def entries_of(api: httpx.AsyncClient, practice: str, payment_id: str) -> list[dict[str, Any]]:
    return [e for e in await ledger(api, practice, "EHR-1") if e["payment_id"] == payment_id]


@pytest.mark.parametrize(("kind", "amount"), [("void", None), ("return", "125.00"), ("chargeback", "125.00")])
async def test_a_reversal_posts_a_negative_entry_of_its_kind_against_its_payment(
        api: httpx.AsyncClient, upstream: Upstream, practice: str, kind: str, amount: str | None) -> None:
    payment = await upstream.payment(amount="125.00")
    await wait_status(api, practice, payment["payment_id"], "LOADED")

    body = await reverse(upstream, kind, payment["payment_id"])

    row = await wait_status(api, practice, own_id(body), "LOADED", "FAILED")
    assert row["load_status"] == "LOADED", row["load_error"]
    assert (row["kind"], row["reversed_payment_id"], row["refunded_payment_id"]) == (kind, payment["payment_id"], None)
    assert (row["amount"], row["currency"]) == ("125.00", "USD")  # a void's amount is what was left: all of it
    assert row["patient_account_id"] == payment["patient_account_id"] and row["ehr_patient_id"] == "EHR-1"
    entries = await entries_of(api, practice, payment["payment_id"])
    assert sorted((e["kind"], e["amount"], e["reversal_id"], e["refund_id"]) for e in entries) == sorted([
        ("payment", "125.00", None, None), (kind, "-125.00", own_id(body), None)])


async def test_a_void_reverses_what_is_left_after_a_partial_refund(api: httpx.AsyncClient, upstream: Upstream,
                                                                   practice: str) -> None:
    payment = await upstream.payment(amount="100.00")
    await wait_status(api, practice, payment["payment_id"], "LOADED")
    refund = await upstream.refund(payment_id=payment["payment_id"], amount="30.00")
    await wait_status(api, practice, refund["refund_id"], "LOADED")

    void = await reverse(upstream, "void", payment["payment_id"])

    row = await wait_status(api, practice, void["void_id"], "LOADED")
    assert row["amount"] == "70.00"
    entries = await entries_of(api, practice, payment["payment_id"])
    assert sorted(e["amount"] for e in entries) == ["-30.00", "-70.00", "100.00"]


async def test_a_reversal_delivered_twice_or_republished_posts_once(api: httpx.AsyncClient, upstream: Upstream,
                                                                    practice: str) -> None:
    payment = await upstream.payment(amount="90.00")
    await wait_status(api, practice, payment["payment_id"], "LOADED")
    key, body = reversal_body("return", payment["payment_id"], amount="90.00")

    await upstream.send(key, body)
    await upstream.send(key, body)  # the same event again
    await upstream.send(key, {**body, "event_id": str(uuid.uuid4())})  # republished with a new event id
    await wait_status(api, practice, body["return_id"], "LOADED")

    async def settled() -> list[dict[str, Any]] | None:
        row = await get_posting(api, practice, body["return_id"])
        return row["audit"] if row and [a["action"] for a in row["audit"]].count("loaded") == 1 else None

    await wait_for(settled)
    entries = await entries_of(api, practice, payment["payment_id"])
    assert sorted(e["amount"] for e in entries) == ["-90.00", "90.00"]


async def test_a_reversal_before_its_payment_waits_and_loads_by_itself(api: httpx.AsyncClient, upstream: Upstream,
                                                                       practice: str) -> None:
    payment_id = f"pay-{uuid.uuid4().hex[:8]}"
    chargeback = await reverse(upstream, "chargeback", payment_id, amount="40.00")
    waiting = await wait_status(api, practice, chargeback["dispute_id"], "FAILED")
    assert waiting["load_error"]["code"] == "ORIGINAL_PAYMENT_NOT_LOADED"
    assert waiting["reversed_payment_id"] == payment_id

    await upstream.payment(payment_id=payment_id, amount="40.00")

    row = await wait_status(api, practice, chargeback["dispute_id"], "LOADED", timeout=20.0)
    assert row["ehr_patient_id"] == "EHR-1"
    entries = await entries_of(api, practice, payment_id)
    assert sorted(e["amount"] for e in entries) == ["-40.00", "40.00"]


async def test_a_won_dispute_posts_the_amount_back_and_a_lost_one_nothing(
        api: httpx.AsyncClient, upstream: Upstream, practice: str) -> None:
    won_payment, lost_payment = await upstream.payment(amount="75.00"), await upstream.payment(amount="20.00")
    for p in (won_payment, lost_payment):
        await wait_status(api, practice, p["payment_id"], "LOADED")
    won = await reverse(upstream, "chargeback", won_payment["payment_id"], amount="75.00")
    lost = await reverse(upstream, "chargeback", lost_payment["payment_id"], amount="20.00")
    for d in (won, lost):
        await wait_status(api, practice, d["dispute_id"], "LOADED")

    await close_dispute(upstream, lost["dispute_id"], "lost")
    closed = await close_dispute(upstream, won["dispute_id"], "won")
    await upstream.send("dispute.closed", closed)  # delivered twice: one entry

    row = await wait_status(api, practice, f"{won['dispute_id']}.won", "LOADED")
    assert (row["kind"], row["dispute_id"], row["amount"]) == ("dispute_won", won["dispute_id"], "75.00")
    won_entries = await entries_of(api, practice, won_payment["payment_id"])
    assert sorted((e["kind"], e["amount"]) for e in won_entries) == [
        ("chargeback", "-75.00"), ("dispute_won", "75.00"), ("payment", "75.00")]
    assert await get_posting(api, practice, f"{lost['dispute_id']}.won") is None
    lost_entries = await entries_of(api, practice, lost_payment["payment_id"])
    assert sorted(e["amount"] for e in lost_entries) == ["-20.00", "20.00"]


async def test_a_won_dispute_before_its_chargeback_loads_waits_for_it(api: httpx.AsyncClient, upstream: Upstream,
                                                                      practice: str) -> None:
    payment_id = f"pay-{uuid.uuid4().hex[:8]}"
    dispute_id = f"dsp-{uuid.uuid4().hex[:8]}"
    await close_dispute(upstream, dispute_id, "won")
    waiting = await wait_status(api, practice, f"{dispute_id}.won", "FAILED")
    assert waiting["load_error"]["code"] == "ORIGINAL_PAYMENT_NOT_LOADED"

    await upstream.payment(payment_id=payment_id, amount="50.00")
    await reverse(upstream, "chargeback", payment_id, dispute_id=dispute_id, amount="50.00")

    await wait_status(api, practice, f"{dispute_id}.won", "LOADED", timeout=20.0)
    entries = await entries_of(api, practice, payment_id)
    assert sorted(e["amount"] for e in entries) == ["-50.00", "50.00", "50.00"]


@pytest.mark.parametrize(("key", "body", "where"), [
    ("payment.voided", {"practice_id": "clinic-a", "payment_id": "p"}, "void_id"),
    ("payment.returned", {"practice_id": "clinic-a", "return_id": "r", "payment_id": "p", "amount": "-5.00",
                          "currency": "USD", "return_code": "R01", "occurred_at": AT}, "amount"),
    ("payment.returned", {"practice_id": "clinic-a", "return_id": "r", "payment_id": "p", "amount": "5.00",
                          "currency": "USD", "return_code": "R01-TOO-LONG-A-CODE", "occurred_at": AT}, "return_code"),
    ("payment.disputed", {"practice_id": "clinic-a", "dispute_id": "d", "payment_id": "p", "amount": 5.0,
                          "currency": "USD", "reason": "x", "occurred_at": AT}, "amount"),
    ("dispute.closed", {"practice_id": "clinic-a", "dispute_id": "d", "outcome": "draw", "occurred_at": AT},
     "outcome"),
])
async def test_a_bad_reversal_message_is_an_unreadable_row(api: httpx.AsyncClient, upstream: Upstream,
                                                           practice: str, key: str, body: dict[str, Any],
                                                           where: str) -> None:
    event_id = str(uuid.uuid4())
    await upstream.send(key, {"event_id": event_id, **body})

    row = await wait_status(api, practice, event_id, "FAILED")

    assert row["kind"] == "unreadable"
    assert row["load_error"]["code"] == "INVALID_MESSAGE"
    assert where in row["load_error"]["message"]
    assert await get_posting(api, practice, "p") is None  # the payment it names is not touched


async def test_a_payments_detail_lists_what_took_money_back_and_what_is_left(
        api: httpx.AsyncClient, upstream: Upstream, practice: str) -> None:
    payment = await upstream.payment(amount="100.00")
    await wait_status(api, practice, payment["payment_id"], "LOADED")
    refund = await upstream.refund(payment_id=payment["payment_id"], amount="10.00")
    await wait_status(api, practice, refund["refund_id"], "LOADED")
    chargeback = await reverse(upstream, "chargeback", payment["payment_id"], amount="50.00")
    await wait_status(api, practice, chargeback["dispute_id"], "LOADED")
    detail = await get_posting(api, practice, payment["payment_id"])
    assert detail is not None and detail["left"] == "40.00"

    await close_dispute(upstream, chargeback["dispute_id"], "won")
    await wait_status(api, practice, f"{chargeback['dispute_id']}.won", "LOADED")

    detail = await get_posting(api, practice, payment["payment_id"])
    assert detail is not None
    assert [(t["kind"], t["payment_id"], t["amount"], t["load_status"]) for t in detail["taken_back"]] == [
        ("refund", refund["refund_id"], "10.00", "LOADED"),
        ("chargeback", chargeback["dispute_id"], "50.00", "LOADED"),
        ("dispute_won", f"{chargeback['dispute_id']}.won", "50.00", "LOADED")]
    assert detail["left"] == "90.00"
    reversal = await get_posting(api, practice, chargeback["dispute_id"])
    assert reversal is not None and reversal.get("taken_back") is None and reversal.get("left") is None


async def test_the_report_and_its_csv_show_the_kind_and_the_payment_reversed(
        api: httpx.AsyncClient, upstream: Upstream, practice: str) -> None:
    payment = await upstream.payment(amount="20.00")
    await wait_status(api, practice, payment["payment_id"], "LOADED")
    returned = await reverse(upstream, "return", payment["payment_id"], amount="20.00", return_code="R02")
    await wait_status(api, practice, returned["return_id"], "LOADED")

    r = await api.get("/api/v1/postings", params={"practice_id": practice})
    [row] = [i for i in r.json()["items"] if i["payment_id"] == returned["return_id"]]
    assert (row["kind"], row["reversed_payment_id"], row["return_code"], row["amount"]) == (
        "return", payment["payment_id"], "R02", "20.00")
    csv_text = (await api.get("/api/v1/postings.csv", params={"practice_id": practice})).text
    header, *lines = [line.split(",") for line in csv_text.strip().splitlines()]
    [mine] = [dict(zip(header, line, strict=True)) for line in lines if line[1] == returned["return_id"]]
    assert (mine["kind"], mine["reversed_payment_id"], mine["return_code"], mine["refunded_payment_id"]) == (
        "return", payment["payment_id"], "R02", "")


async def test_a_transfer_that_deducts_a_return_reconciles_with_it_counted(
        api: httpx.AsyncClient, upstream: Upstream, practice: str) -> None:
    kept = await upstream.payment(amount="100.00", merchant_transfer_id="MT-R")
    bounced = await upstream.payment(amount="30.00")
    for p in (kept, bounced):
        await wait_status(api, practice, p["payment_id"], "LOADED")
    returned = await reverse(upstream, "return", bounced["payment_id"], amount="30.00")
    settled = {"event_id": str(uuid.uuid4()), "practice_id": practice, "merchant_transfer_id": "MT-R",
               "payment_ids": [kept["payment_id"]], "refund_ids": [], "reversal_ids": [returned["return_id"]],
               "gross_amount": "70.00", "fees_amount": "2.00", "net_amount": "68.00", "currency": "USD",
               "settled_at": AT}
    await upstream.send("transfer.settled", settled)

    async def reconciled() -> dict[str, Any] | None:
        r = await api.get(f"/api/v1/transfers/{practice}/MT-R")
        return r.json() if r.status_code == 200 and r.json()["balanced"] else None

    transfer = await wait_for(reconciled, timeout=20)
    assert transfer["expected"]["count"] == 2
    assert transfer["loaded"] == {"count": 2, "amount": "70.00"}
    assert transfer["variance"] == "0.00"
