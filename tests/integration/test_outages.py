"""A practice's system that stops answering (contract section 7, outages): its payments wait, HELD,
one office task says so, and when it answers again they load by themselves in the order received;
meanwhile every other practice loads as fast as ever. Held and released by hand too.

The test settings hold a practice after 3 s without an answer and probe it every second.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from paypost.infra.rabbit.watch import watch_events
from paypost.infra.runtime.settings import Settings
from tests.support.api_calls import get_posting, wait_status
from tests.support.ledgers import PATIENT, ReferenceLedger
from tests.support.upstream import Upstream
from tests.support.waits import drain

PMS = "clinic-pms"


@pytest.fixture
async def pms_practice(api: httpx.AsyncClient, system: ReferenceLedger) -> str:
    r = await api.put(f"/api/v1/practices/{PMS}", json={
        "name": "PMS", "ledger": {"kind": "http", "base_url": system.url, "timeout_seconds": 5, "tasks": False},
        "enabled": True})
    assert r.status_code == 200, r.text
    return PMS


async def statuses(api: httpx.AsyncClient, practice_id: str, ids: list[str]) -> dict[str, str]:
    found = {}
    for payment_id in ids:
        posting = await get_posting(api, practice_id, payment_id)
        found[payment_id] = posting["load_status"] if posting else "MISSING"
    return found


async def until_all(api: httpx.AsyncClient, practice_id: str, ids: list[str], status: str,
                    timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        now = await statuses(api, practice_id, ids)
        if set(now.values()) == {status}:
            return
        assert time.monotonic() < deadline, f"not all {status} within {timeout}s: {now}"
        await asyncio.sleep(0.2)


async def outage_tasks(api: httpx.AsyncClient, practice_id: str, state: str | None = None) -> list[dict[str, Any]]:
    params = {"practice_id": practice_id, **({"state": state} if state else {})}
    r = await api.get("/api/v1/alerts", params=params)
    assert r.status_code == 200, r.text
    return [a for a in r.json()["items"] if a["alert_id"].startswith("outage:")]


async def test_an_outage_holds_its_payments_opens_one_task_and_they_load_in_order_when_it_ends(
    api: httpx.AsyncClient, upstream: Upstream, settings: Settings, practice: str, pms_practice: str,
    system: ReferenceLedger,
) -> None:
    system.state.down_until = time.monotonic() + 3600  # down until the test brings it back
    async with watch_events(settings.amqp_url, ["posting.held.#", "posting.failed.#", "alert.#"]) as events:
        ids = [f"out-{i:02d}" for i in range(20)]
        for payment_id in ids:  # one after another: "the order received" is this order
            await upstream.payment(practice_id=pms_practice, payment_id=payment_id, ehr_patient_id=PATIENT)
            await asyncio.sleep(0.02)

        # Another practice loads as fast as ever meanwhile: no shared queue waits behind the outage.
        started = time.monotonic()
        other = [await upstream.payment(practice_id=practice) for _ in range(10)]
        for body in other:
            await wait_status(api, practice, body["payment_id"], "LOADED", timeout=5)
        other_took = time.monotonic() - started

        await until_all(api, pms_practice, ids, "HELD", timeout=20)  # held 3 s after the first unanswered
        practice_doc = (await api.get(f"/api/v1/practices/{pms_practice}")).json()
        assert practice_doc["hold"]["health"] == "held" and practice_doc["hold"]["held_by"] is None
        assert practice_doc["hold"]["waiting"] == 20
        [task] = await outage_tasks(api, pms_practice, "open")
        assert "unreachable" in task["title"]
        tried_while_held = len(system.state.request_times)
        await asyncio.sleep(2.5)
        # One payment every second (its attempts each), not every payment.
        assert len(system.state.request_times) - tried_while_held <= 3 * settings.ledger_attempts

        system.state.down_until = 0.0  # the system answers again
        await until_all(api, pms_practice, ids, "LOADED", timeout=30)
        got = await drain(events, settle=1.0)

    loaded_in = [e["payment_id"] for e in system.state.entries.values()]
    assert loaded_in == ids  # in the order received, each once
    assert other_took < 3.0, other_took  # under the 3 s it takes even to hold the outage
    assert await outage_tasks(api, pms_practice, "open") == []
    [resolved] = await outage_tasks(api, pms_practice)
    assert resolved["state"] == "resolved" and resolved["alert_id"] == task["alert_id"]
    keys = [e.routing_key for e in got]
    assert sorted(e.body["payment_id"] for e in got if e.routing_key == f"posting.held.{pms_practice}") == ids
    assert not [k for k in keys if k.startswith("posting.failed.")]
    assert keys.count(f"alert.opened.{pms_practice}.task") == 1  # the outage's task, once
    assert keys.count(f"alert.resolved.{pms_practice}.task") == 1
    assert (await api.get(f"/api/v1/practices/{pms_practice}")).json()["hold"] is None


async def test_a_short_blip_parks_payments_briefly_and_they_load_without_being_held(
    api: httpx.AsyncClient, upstream: Upstream, pms_practice: str, system: ReferenceLedger,
) -> None:
    system.state.down_until = time.monotonic() + 1.0  # shorter than the 3 s after which it is held
    ids = [f"blip-{i}" for i in range(5)]
    for payment_id in ids:
        await upstream.payment(practice_id=pms_practice, payment_id=payment_id, ehr_patient_id=PATIENT)
    await until_all(api, pms_practice, ids, "LOADED", timeout=15)
    for payment_id in ids:
        posting = await get_posting(api, pms_practice, payment_id)
        assert posting is not None and "held" not in [a["action"] for a in posting["audit"]]
    assert await outage_tasks(api, pms_practice) == []
    # Each once. (Payments whose own first try was under way as the system went away may load
    # after those parked behind them: the order kept is that of the parked ones.)
    assert sorted(e["payment_id"] for e in system.state.entries.values()) == ids


async def test_an_operator_holds_a_practice_by_hand_and_its_payments_load_when_released(
    api: httpx.AsyncClient, upstream: Upstream, pms_practice: str, system: ReferenceLedger,
) -> None:
    r = await api.post(f"/api/v1/practices/{pms_practice}/hold", json={"reason": "PMS upgrade tonight"})
    assert r.status_code == 200, r.text
    assert r.json()["hold"]["health"] == "held" and r.json()["hold"]["held_by"] == "alice"
    assert r.json()["hold"]["reason"] == "PMS upgrade tonight" and r.json()["hold"]["next_try_at"] is None
    ids = [f"hand-{i}" for i in range(5)]
    for payment_id in ids:
        await upstream.payment(practice_id=pms_practice, payment_id=payment_id, ehr_patient_id=PATIENT)
    await until_all(api, pms_practice, ids, "HELD", timeout=10)
    await asyncio.sleep(1.5)
    assert system.state.entries == {}  # nothing goes to the system while held by hand

    r = await api.post(f"/api/v1/practices/{pms_practice}/release")
    assert r.status_code == 200, r.text
    assert r.json()["hold"] is None
    await until_all(api, pms_practice, ids, "LOADED", timeout=10)
    assert [e["payment_id"] for e in system.state.entries.values()] == ids
    held = await get_posting(api, pms_practice, ids[0])
    assert held is not None
    assert [(a["action"], a["actor"]) for a in held["audit"] if a["action"] == "held"] == [("held", "alice")]


@pytest.mark.api_only
async def test_hold_and_release_are_operators_and_name_a_practice_in_scope(
    api: httpx.AsyncClient, pms_practice: str,
) -> None:
    from tests.support.tokens import VIEWER

    r = await api.post(f"/api/v1/practices/{pms_practice}/hold", json={"reason": "x"},
                       headers={"Authorization": f"Bearer {VIEWER}"})
    assert r.status_code == 403, r.text
    r = await api.post("/api/v1/practices/nowhere/hold", json={"reason": "x"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = await api.post(f"/api/v1/practices/{pms_practice}/hold", json={})
    assert r.status_code == 422 and "reason" in r.json()["error"]["message"]
    assert (await api.get(f"/api/v1/practices/{pms_practice}")).json()["hold"] is None
