"""The ``http`` ledger integration against the reference ledger, with faults injected."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn

from infra.local_services import free_port
from infra.reference_ledger import Faults, LedgerState, create_reference_ledger
from tests.conftest import Upstream
from tests.integration.helpers import wait_status

pytestmark = pytest.mark.integration


@pytest.fixture
async def reference_ledger() -> AsyncIterator[tuple[str, LedgerState]]:
    state = LedgerState(patients={"EHR-1", "EHR-CLOSED"})
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_reference_ledger(state), host="127.0.0.1", port=port,
                                           log_level="critical", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", state
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def http_practice(api: httpx.AsyncClient, reference_ledger: tuple[str, LedgerState]) -> str:
    url, _ = reference_ledger
    r = await api.put("/api/v1/practices/clinic-h", json={
        "name": "H", "ledger": {"kind": "http", "base_url": url, "timeout_seconds": 0.5}, "enabled": True})
    assert r.status_code == 200, r.text
    return "clinic-h"


async def test_payment_loads_into_the_http_ledger(api: httpx.AsyncClient, upstream: Upstream, http_practice: str,
                                                  reference_ledger: tuple[str, LedgerState]) -> None:
    _, state = reference_ledger
    body = await upstream.payment(practice_id=http_practice)
    posting = await wait_status(api, http_practice, body["payment_id"], "LOADED")
    assert posting["ehr_patient_id"] == "EHR-1"
    [entry] = state.entries.values()
    assert entry["payment_id"] == body["payment_id"] and entry["amount"] == "125.00"
    assert entry["idempotency_key"] == f"paypost:{http_practice}:{body['payment_id']}"


@pytest.mark.parametrize(("fields", "faults", "code", "detail"), [
    ({"ehr_patient_id": "EHR-404"}, Faults(), "PATIENT_NOT_FOUND", "EHR-404"),
    ({"ehr_patient_id": "EHR-CLOSED"}, Faults(reject_patients=["EHR-CLOSED"]), "LEDGER_REJECTED", "closed"),
    ({}, Faults(error_rate=1.0), "LEDGER_UNAVAILABLE", "503"),
    ({}, Faults(timeout_rate=1.0, timeout_seconds=2), "LEDGER_UNAVAILABLE", "did not answer"),
])
async def test_http_ledger_failures(api: httpx.AsyncClient, upstream: Upstream, http_practice: str,
                                    reference_ledger: tuple[str, LedgerState], fields: dict[str, str],
                                    faults: Faults, code: str, detail: str) -> None:
    _, state = reference_ledger
    state.faults = faults
    body = await upstream.payment(practice_id=http_practice, **fields)
    posting = await wait_status(api, http_practice, body["payment_id"], "FAILED", timeout=15)
    assert posting["load_error"]["code"] == code
    assert detail in posting["load_error"]["message"]
    assert state.entries == {}


async def test_unreachable_ledger_is_unavailable(api: httpx.AsyncClient, upstream: Upstream) -> None:
    r = await api.put("/api/v1/practices/clinic-x", json={
        "name": "X", "ledger": {"kind": "http", "base_url": f"http://127.0.0.1:{free_port()}"}, "enabled": True})
    assert r.status_code == 200
    body = await upstream.payment(practice_id="clinic-x")
    posting = await wait_status(api, "clinic-x", body["payment_id"], "FAILED", timeout=15)
    assert posting["load_error"]["code"] == "LEDGER_UNAVAILABLE"


async def test_committed_then_dropped_responses_never_post_twice(
    api: httpx.AsyncClient, upstream: Upstream, http_practice: str, reference_ledger: tuple[str, LedgerState]
) -> None:
    _, state = reference_ledger
    state.faults = Faults(drop_after_commit_rate=0.3, error_rate=0.1)
    bodies = [await upstream.payment(practice_id=http_practice, payment_id=f"drop-{i}") for i in range(40)]
    statuses = [
        (await wait_status(api, http_practice, b["payment_id"], "LOADED", "FAILED", timeout=20))["load_status"]
        for b in bodies
    ]
    loaded_ids = {b["payment_id"] for b, s in zip(bodies, statuses, strict=True) if s == "LOADED"}
    assert len(loaded_ids) >= 30  # a few may exhaust their attempts: FAILED, never double-posted
    entries = list(state.entries.values())
    assert len(entries) == len({e["payment_id"] for e in entries})  # one entry per payment
    assert {e["payment_id"] for e in entries} >= loaded_ids
