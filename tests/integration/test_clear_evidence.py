"""Clear with evidence (contract section 7): a clear whose manual reference names an entry is looked
up in the practice's system; the posting shows clear_verified, and its transfer counts the clears
the system did not confirm. On the real broker and database, the reference server over HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from paypost.local.reference_ledger import Faults, LedgerState
from paypost.testing.ledger_suite import PATIENT
from tests.support.api_calls import get_posting, wait_status
from tests.support.ledgers import serve_reference_ledger
from tests.support.upstream import Upstream
from tests.support.waits import wait_for

pytestmark = pytest.mark.integration


async def completed(api: httpx.AsyncClient, operation_id: str) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        op = (await api.get(f"/api/v1/operations/{operation_id}")).json()
        return op if op["status"] == "completed" else None

    return await wait_for(done)  # type: ignore[no-any-return]  # what done() returned


async def test_a_clear_is_checked_against_the_system_and_its_transfer_counts_the_unconfirmed(
    api: httpx.AsyncClient, upstream: Upstream,
) -> None:
    # The system refuses these entries (the account is closed), so the office posts them by hand.
    state = LedgerState(patients={PATIENT}, faults=Faults(reject_patients=[PATIENT]))
    async with serve_reference_ledger(state) as server:
        r = await api.put("/api/v1/practices/clinic-e", json={
            "name": "E", "ledger": {"kind": "http", "base_url": server.url, "timeout_seconds": 5}, "enabled": True})
        assert r.status_code == 200, r.text
        ids = ["pay-e1", "pay-e2", "pay-e3", "pay-e4"]
        for pid in ids:
            await upstream.payment(practice_id="clinic-e", payment_id=pid, ehr_patient_id=PATIENT, amount="40.00",
                                   merchant_transfer_id="MT-E")
        for pid in ids:
            await wait_status(api, "clinic-e", pid, "FAILED")
        async with httpx.AsyncClient(base_url=server.url) as office:  # entries the office posted by hand
            await office.put("/_manual/CHK-1", json={"amount": "40.00"})
            await office.put("/_manual/CHK-2", json={"amount": "39.00"})
        r = await api.post("/api/v1/postings/changes", json={"practice_id": "clinic-e", "retry": [], "clear": [
            {"payment_id": "pay-e1", "reason": "posted by hand", "manual_reference": "CHK-1"},  # found, same amount
            {"payment_id": "pay-e2", "reason": "posted by hand", "manual_reference": "CHK-2"},  # another amount
            {"payment_id": "pay-e3", "reason": "posted by hand", "manual_reference": "CHK-404"},  # not there
            {"payment_id": "pay-e4", "reason": "posted by hand"},  # nothing to check
        ]})
        assert r.status_code == 202, r.text
        op = await completed(api, r.json()["operation_id"])
        assert [i["result"] for i in op["items"]] == ["cleared"] * 4
        assert "holds no entry CHK-404" in next(i["message"] for i in op["items"] if i["payment_id"] == "pay-e3")

        verified = {pid: (await get_posting(api, "clinic-e", pid) or {}).get("clear_verified") for pid in ids}
        assert verified == {"pay-e1": True, "pay-e2": False, "pay-e3": False, "pay-e4": None}

        await upstream.send("transfer.settled", {
            "event_id": "ev-mt-e", "practice_id": "clinic-e", "merchant_transfer_id": "MT-E", "payment_ids": ids,
            "refund_ids": [], "gross_amount": "160.00", "fees_amount": "0.00", "net_amount": "160.00",
            "currency": "USD", "settled_at": "2026-11-26T10:00:00+00:00"})

        async def transfer() -> dict[str, Any] | None:
            t = await api.get("/api/v1/transfers/clinic-e/MT-E")
            return t.json() if t.status_code == 200 else None

        settled = await wait_for(transfer)
        assert settled["cleared"]["count"] == 4 and settled["unverified_clears"] == 3


async def test_with_the_built_in_ledger_there_is_nothing_to_check(
    api: httpx.AsyncClient, upstream: Upstream, practice: str,
) -> None:
    body = await upstream.payment(ehr_patient_id=None, patient_account_id="acct-ev")
    await wait_status(api, practice, body["payment_id"], "FAILED")
    r = await api.post("/api/v1/postings/changes", json={"practice_id": practice, "retry": [], "clear": [
        {"payment_id": body["payment_id"], "reason": "posted by hand", "manual_reference": "CHK-9"}]})
    await completed(api, r.json()["operation_id"])
    row = await wait_status(api, practice, body["payment_id"], "CLEARED")
    assert row["clear_verified"] is None
