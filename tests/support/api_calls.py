"""Reads of paypost's HTTP API the tests share: a posting, waiting for its status, a ledger, the report;
and the practice most tests start from."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.waits import wait_for


async def get_posting(api: httpx.AsyncClient, practice_id: str, payment_id: str) -> dict[str, Any] | None:
    r = await api.get(f"/api/v1/postings/{practice_id}/{payment_id}")
    if r.status_code == 404:
        return None
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]  # JSON of the shape the API documents


async def wait_status(api: httpx.AsyncClient, practice_id: str, payment_id: str, *statuses: str,
                      timeout: float = 10.0) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        p = await get_posting(api, practice_id, payment_id)
        return p if p and p["load_status"] in statuses else None

    return await wait_for(check, timeout)  # type: ignore[no-any-return]  # JSON of the shape the API documents


async def ledger(api: httpx.AsyncClient, practice_id: str, ehr: str) -> list[dict[str, Any]]:
    r = await api.get(f"/api/v1/practices/{practice_id}/ehr-patients/{ehr}/ledger")
    assert r.status_code == 200, r.text
    return r.json()["items"]  # type: ignore[no-any-return]  # JSON of the shape the API documents


async def rows(api: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    r = await api.get("/api/v1/postings", params={"limit": 500, **params})
    assert r.status_code == 200, r.text
    return r.json()["items"]  # type: ignore[no-any-return]  # JSON of the shape the API documents


async def builtin_practice(api: httpx.AsyncClient) -> str:
    """clinic-a with the built-in ledger and patients EHR-1 and EHR-2 registered."""
    r = await api.put("/api/v1/practices/clinic-a", json={"name": "Clinic A", "ledger": {"kind": "builtin"},
                                                           "enabled": True})
    assert r.status_code == 200, r.text
    for ehr in ("EHR-1", "EHR-2"):
        r = await api.put(f"/api/v1/practices/clinic-a/ehr-patients/{ehr}", json={})
        assert r.status_code == 200, r.text
    return "clinic-a"
