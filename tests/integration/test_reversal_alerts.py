"""What the office is told of money that moves back (contract section 10): a return's and a
chargeback's office task and patient flag, a void's task, each resolved by hand (audited) or by a
won dispute, never by a later load; ``payment.reversed.<practice_id>.<kind>`` events; and the
alerts in the practice's system."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from paypost.infra.rabbit.watch import WatchedEvent, watch_events
from paypost.infra.runtime.settings import Settings
from tests.integration.test_reversals import close_dispute, reverse
from tests.support.api_calls import get_posting, wait_status
from tests.support.ledgers import PATIENT, serve_reference_ledger
from tests.support.tokens import VIEWER
from tests.support.upstream import Upstream
from tests.support.waits import wait_for

pytestmark = pytest.mark.integration


async def open_alerts(api: httpx.AsyncClient, practice: str, payment_id: str) -> list[dict[str, Any]]:
    r = await api.get("/api/v1/alerts", params={"practice_id": practice, "state": "open"})
    assert r.status_code == 200, r.text
    return sorted((a for a in r.json()["items"] if a["payment_id"] == payment_id), key=lambda a: a["kind"])


async def alerts_once(api: httpx.AsyncClient, practice: str, payment_id: str, count: int) -> list[dict[str, Any]]:
    async def check() -> tuple[list[dict[str, Any]]] | None:
        found = await open_alerts(api, practice, payment_id)
        return (found,) if len(found) == count else None  # a tuple: truthy even when none is wanted

    found: tuple[list[dict[str, Any]]] = await wait_for(check)
    return found[0]


async def drain(events: asyncio.Queue[WatchedEvent], settle: float = 0.7) -> list[WatchedEvent]:
    got = []
    while True:
        try:
            got.append(await asyncio.wait_for(events.get(), timeout=settle))
        except TimeoutError:
            return got


@pytest.fixture
async def dashboard(settings: Settings, paypost: object) -> AsyncIterator[asyncio.Queue[WatchedEvent]]:
    async with watch_events(settings.amqp_url, ["#"]) as events:
        yield events


async def test_a_return_opens_a_task_naming_its_code_and_fee_and_a_patient_flag(
        api: httpx.AsyncClient, upstream: Upstream, practice: str,
        dashboard: asyncio.Queue[WatchedEvent]) -> None:
    payment = await upstream.payment(amount="125.00", method="ach", patient_account_id="acct-r")
    await wait_status(api, practice, payment["payment_id"], "LOADED")

    returned = await reverse(upstream, "return", payment["payment_id"], fee_amount="25.00")
    await wait_status(api, practice, returned["return_id"], "LOADED")

    flag, task = await alerts_once(api, practice, returned["return_id"], 2)
    assert (task["kind"], flag["kind"]) == ("task", "patient")
    assert flag["patient_account_id"] == "acct-r"
    assert task["title"] == f"Payment {payment['payment_id']} was returned by the bank (R01)"
    assert "R01: insufficient funds" in task["detail"] and "fee of 25.00 USD" in task["detail"]
    assert "owes it again" in flag["detail"]
    got = await drain(dashboard)
    keys = [e.routing_key for e in got if e.body.get("payment_id") == returned["return_id"]]
    assert keys.count(f"payment.reversed.{practice}.return") == 1
    assert keys.count(f"posting.loaded.{practice}") == 1
    assert sorted(k for k in keys if k.startswith("alert.opened")) == [
        f"alert.opened.{practice}.patient", f"alert.opened.{practice}.task"]
    [reversed_] = [e.body for e in got if e.routing_key.startswith("payment.reversed.")]
    assert (reversed_["kind"], reversed_["reversed_payment_id"], reversed_["return_code"], reversed_["amount"]) == (
        "return", payment["payment_id"], "R01", "125.00")
    [loaded] = [e.body for e in got if e.routing_key == f"posting.loaded.{practice}"
                and e.body["payment_id"] == returned["return_id"]]
    assert loaded["kind"] == "return"


@pytest.mark.parametrize(("code", "words"), [("R02", "account closed"), ("R10", "not authorized"),
                                             ("R29", "corporate customer"), ("X77", "the bank's")])
async def test_a_returns_task_says_what_its_code_means(api: httpx.AsyncClient, upstream: Upstream, practice: str,
                                                      code: str, words: str) -> None:
    payment = await upstream.payment(amount="10.00")
    await wait_status(api, practice, payment["payment_id"], "LOADED")
    returned = await reverse(upstream, "return", payment["payment_id"], amount="10.00", return_code=code)
    await wait_status(api, practice, returned["return_id"], "LOADED")

    _, task = await alerts_once(api, practice, returned["return_id"], 2)

    assert f"{code}: " in task["detail"] and words in task["detail"]
    assert "No returned-payment fee is set." in task["detail"]


async def test_a_void_opens_a_task_only(api: httpx.AsyncClient, upstream: Upstream, practice: str,
                                        dashboard: asyncio.Queue[WatchedEvent]) -> None:
    payment = await upstream.payment(amount="60.00")
    await wait_status(api, practice, payment["payment_id"], "LOADED")
    void = await reverse(upstream, "void", payment["payment_id"])
    await wait_status(api, practice, void["void_id"], "LOADED")

    [task] = await alerts_once(api, practice, void["void_id"], 1)

    assert task["kind"] == "task" and "voided" in task["title"]
    keys = [e.routing_key for e in await drain(dashboard)]
    assert f"payment.reversed.{practice}.void" in keys
    assert f"alert.opened.{practice}.patient" not in keys


async def test_the_office_resolves_a_reversals_alerts_by_hand_audited(api: httpx.AsyncClient, upstream: Upstream,
                                                                      practice: str,
                                                                      dashboard: asyncio.Queue[WatchedEvent]) -> None:
    payment = await upstream.payment(amount="80.00", patient_account_id="acct-h")
    await wait_status(api, practice, payment["payment_id"], "LOADED")
    chargeback = await reverse(upstream, "chargeback", payment["payment_id"], amount="80.00")
    await wait_status(api, practice, chargeback["dispute_id"], "LOADED")
    flag, task = await alerts_once(api, practice, chargeback["dispute_id"], 2)
    # A later failure and load of the same patient's payment does not resolve the chargeback's flag.
    failing = await upstream.payment(patient_account_id="acct-h", ehr_patient_id="EHR-404")
    await wait_status(api, practice, failing["payment_id"], "FAILED")
    r = await api.put(f"/api/v1/practices/{practice}/patient-accounts/acct-h/mapping", json={"ehr_patient_id": "EHR-1"})
    assert r.status_code == 200, r.text
    await wait_status(api, practice, failing["payment_id"], "LOADED")
    assert [a["alert_id"] for a in await open_alerts(api, practice, chargeback["dispute_id"])] == [
        flag["alert_id"], task["alert_id"]]

    viewer = await api.post(f"/api/v1/alerts/{task['alert_id']}/resolve", json={"reason": "called the patient"},
                            headers={"Authorization": f"Bearer {VIEWER}"})
    blank = await api.post(f"/api/v1/alerts/{task['alert_id']}/resolve", json={"reason": "  "})
    resolved = await api.post(f"/api/v1/alerts/{task['alert_id']}/resolve", json={"reason": "called the patient"})
    again = await api.post(f"/api/v1/alerts/{task['alert_id']}/resolve", json={"reason": "twice"})
    unknown = await api.post("/api/v1/alerts/task:clinic-a:nothing/resolve", json={"reason": "x"})

    assert (viewer.status_code, blank.status_code, resolved.status_code, again.status_code, unknown.status_code) == (
        403, 422, 200, 409, 404)
    assert resolved.json()["state"] == "resolved"
    assert [a["kind"] for a in await open_alerts(api, practice, chargeback["dispute_id"])] == ["patient"]
    row = await get_posting(api, practice, chargeback["dispute_id"])
    assert row is not None
    [audit] = [a for a in row["audit"] if a["action"] == "alert_resolved"]
    assert (audit["actor"], audit["reason"], audit["detail"]) == ("alice", "called the patient",
                                                                 f"alert {task['alert_id']}")
    got = await drain(dashboard)
    assert [e.body["alert_id"] for e in got if e.routing_key == f"alert.resolved.{practice}.task"
            and e.body["payment_id"] == chargeback["dispute_id"]] == [task["alert_id"]]


async def test_a_won_dispute_resolves_its_chargebacks_alerts(api: httpx.AsyncClient, upstream: Upstream,
                                                             practice: str) -> None:
    payment = await upstream.payment(amount="45.00")
    await wait_status(api, practice, payment["payment_id"], "LOADED")
    chargeback = await reverse(upstream, "chargeback", payment["payment_id"], amount="45.00")
    await wait_status(api, practice, chargeback["dispute_id"], "LOADED")
    await alerts_once(api, practice, chargeback["dispute_id"], 2)

    await close_dispute(upstream, chargeback["dispute_id"], "won")
    await wait_status(api, practice, f"{chargeback['dispute_id']}.won", "LOADED")

    await alerts_once(api, practice, chargeback["dispute_id"], 0)
    r = await api.get("/api/v1/alerts", params={"practice_id": practice})
    mine = [a for a in r.json()["items"] if a["payment_id"] == chargeback["dispute_id"]]
    assert sorted((a["kind"], a["state"]) for a in mine) == [("patient", "resolved"), ("task", "resolved")]


async def test_a_reversal_goes_to_the_practices_system_with_its_kind_and_its_alerts(
        api: httpx.AsyncClient, upstream: Upstream) -> None:
    async with serve_reference_ledger() as system:
        practice = "clinic-pms"
        r = await api.put(f"/api/v1/practices/{practice}", json={
            "name": "PMS", "ledger": {"kind": "http", "base_url": system.url, "timeout_seconds": 0.5},
            "enabled": True})
        assert r.status_code == 200, r.text
        payment = await upstream.payment(practice_id=practice, amount="125.00", method="ach",
                                         patient_account_id="acct-p", ehr_patient_id=PATIENT)
        await wait_status(api, practice, payment["payment_id"], "LOADED")
        returned = await reverse(upstream, "return", payment["payment_id"], practice_id=practice, fee_amount="15.00")
        await wait_status(api, practice, returned["return_id"], "LOADED")

        [entry] = [e for e in system.state.entries.values() if e["kind"] == "return"]
        assert (entry["payment_id"], entry["reversal_id"], entry["refund_id"], entry["amount"], entry["patient_id"]) \
            == (payment["payment_id"], returned["return_id"], None, "-125.00", PATIENT)

        async def filed() -> bool:
            return len(system.state.tasks) == 1 and len(system.state.flags) == 1

        await wait_for(filed)
        [task] = system.state.tasks.values()
        assert "R01: insufficient funds" in task["detail"] and "15.00" in task["detail"]
        [(patient, flag_id)] = system.state.flags
        assert patient == PATIENT

        r = await api.post(f"/api/v1/alerts/{flag_id}/resolve", json={"reason": "patient paid again"})
        assert r.status_code == 200, r.text

        async def flag_gone() -> bool:
            return not system.state.flags and len(system.state.tasks) == 1

        await wait_for(flag_gone)


async def test_reversal_alerts_stay_with_their_ids_however_often_announced(
        api: httpx.AsyncClient, upstream: Upstream, practice: str) -> None:
    payment = await upstream.payment(amount="30.00")
    await wait_status(api, practice, payment["payment_id"], "LOADED")
    key_body = await reverse(upstream, "return", payment["payment_id"], amount="30.00")
    await upstream.send("payment.returned", {**key_body, "event_id": str(uuid.uuid4())})  # republished
    await wait_status(api, practice, key_body["return_id"], "LOADED")
    await alerts_once(api, practice, key_body["return_id"], 2)  # opened after it loaded
    await asyncio.sleep(0.5)  # and no more after them
    assert len(await open_alerts(api, practice, key_body["return_id"])) == 2
