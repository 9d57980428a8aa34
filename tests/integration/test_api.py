"""The HTTP API: tokens and roles, JSON errors, paging and filters."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import OPERATOR, VIEWER, Upstream
from tests.integration.helpers import wait_status

pytestmark = pytest.mark.integration

CHANGES = [
    ("PUT", "/api/v1/practices/clinic-z", {"name": "Z", "ledger": {"kind": "builtin"}, "enabled": True}),
    ("PUT", "/api/v1/practices/clinic-a/ehr-patients/EHR-9", {}),
    ("PUT", "/api/v1/practices/clinic-a/patient-accounts/acct-1/mapping", {"ehr_patient_id": "EHR-9"}),
]
READS = [
    "/api/v1/postings",
    "/api/v1/postings/clinic-a/pay-1",
    "/api/v1/practices/clinic-a/ehr-patients/EHR-1/ledger",
]


@pytest.mark.parametrize(("method", "path", "body"), CHANGES)
@pytest.mark.parametrize("auth", [None, "Bearer nope", "Basic b3A6dG9rZW4="])
async def test_missing_or_unknown_token_gets_401_and_changes_nothing(
    api: httpx.AsyncClient, practice: str, method: str, path: str, body: dict[str, object], auth: str | None
) -> None:
    headers = {"Authorization": auth} if auth else {}
    api.headers.pop("Authorization")
    r = await api.request(method, path, json=body, headers=headers)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"
    assert r.headers["www-authenticate"] == "Bearer"
    api.headers["Authorization"] = f"Bearer {OPERATOR}"
    assert (await api.get("/api/v1/practices/clinic-z")).status_code == 404
    assert (await api.get("/api/v1/practices/clinic-a/ehr-patients/EHR-9/ledger")).status_code == 404


@pytest.mark.parametrize(("method", "path", "body"), CHANGES)
async def test_viewer_cannot_change_anything(api: httpx.AsyncClient, paypost: object, practice: str, method: str,
                                             path: str, body: dict[str, object]) -> None:
    r = await api.request(method, path, json=body, headers={"Authorization": f"Bearer {VIEWER}"})
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "forbidden"
    assert (await api.get("/api/v1/practices/clinic-z")).status_code == 404
    assert (await api.get("/api/v1/practices/clinic-a/ehr-patients/EHR-9/ledger")).status_code == 404
    assert await paypost.mapping_store.get("clinic-a", "acct-1") is None  # type: ignore[attr-defined]


@pytest.mark.parametrize("path", READS)
async def test_viewer_can_read(api: httpx.AsyncClient, practice: str, path: str) -> None:
    r = await api.get(path, headers={"Authorization": f"Bearer {VIEWER}"})
    assert r.status_code in (200, 404)
    if r.status_code == 404:
        assert r.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("path", READS)
async def test_reads_need_a_token(api: httpx.AsyncClient, path: str) -> None:
    r = await api.get(path, headers={"Authorization": ""})
    assert r.status_code == 401


async def test_health_needs_no_token(api: httpx.AsyncClient) -> None:
    api.headers.pop("Authorization")
    assert (await api.get("/healthz")).json()["status"] == "ok"
    ready = await api.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": True, "broker": True}
    metrics = await api.get("/metrics")
    assert metrics.status_code == 200 and "python_info" in metrics.text
    openapi = await api.get("/api/v1/openapi.json")
    assert "/api/v1/postings/changes" in openapi.json()["paths"] or "/api/v1/postings" in openapi.json()["paths"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("PUT", "/api/v1/practices/bad%20id", {"name": "x", "ledger": {"kind": "builtin"}}, 422),
        ("PUT", "/api/v1/practices/ok", {"name": "x", "ledger": {"kind": "sftp"}}, 422),
        ("PUT", "/api/v1/practices/ok", {"name": "", "ledger": {"kind": "builtin"}}, 422),
        ("PUT", "/api/v1/practices/ok", {"name": "x", "ledger": {"kind": "http", "base_url": "not a url"}}, 422),
        ("PUT", "/api/v1/practices/ok", None, 422),
        ("PUT", "/api/v1/practices/clinic-a/patient-accounts/a/mapping", {"ehr_patient_id": ""}, 422),
        ("PUT", "/api/v1/practices/clinic-a/patient-accounts/a/mapping", {}, 422),
        ("GET", "/api/v1/postings?limit=501", None, 422),
        ("GET", "/api/v1/postings?limit=0", None, 422),
        ("GET", "/api/v1/postings?status=LOST", None, 422),
        ("GET", "/api/v1/postings?error_code=OOPS", None, 422),
        ("GET", "/api/v1/postings?cursor=garbage!!", None, 400),
        ("GET", "/api/v1/postings/clinic-a/nothing-here", None, 404),
        ("GET", "/api/v1/practices/clinic-a/ehr-patients/EHR-404/ledger", None, 404),
        ("DELETE", "/api/v1/postings", None, 405),
    ],
)
async def test_bad_input_gets_a_json_4xx_naming_what_is_wrong(
    api: httpx.AsyncClient, practice: str, method: str, path: str, body: object, status: int
) -> None:
    r = await api.request(method, path, json=body) if body is not None else await api.request(method, path)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] and error["message"]


async def test_malformed_json_body_is_a_422(api: httpx.AsyncClient) -> None:
    r = await api.put("/api/v1/practices/ok", content=b"{nope", headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_request"


async def test_report_pages_newest_first_with_filters(api: httpx.AsyncClient, upstream: Upstream,
                                                      practice: str) -> None:
    ids = []
    for i in range(7):
        body = await upstream.payment(payment_id=f"page-{i}", merchant_transfer_id="MT-P" if i % 2 else None,
                                      ehr_patient_id=None if i == 3 else "EHR-1")
        await wait_status(api, practice, body["payment_id"], "LOADED", "FAILED")
        ids.append(body["payment_id"])

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, object] = {"practice_id": practice, "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = (await api.get("/api/v1/postings", params=params)).json()
        seen += [row["payment_id"] for row in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))

    failed = (await api.get("/api/v1/postings", params={"status": "FAILED"})).json()["items"]
    assert [r["payment_id"] for r in failed] == ["page-3"]
    by_code = (await api.get("/api/v1/postings", params={"error_code": "PATIENT_NOT_MAPPED"})).json()["items"]
    assert [r["payment_id"] for r in by_code] == ["page-3"]
    by_transfer = (await api.get("/api/v1/postings", params={"merchant_transfer_id": "MT-P"})).json()["items"]
    assert [r["payment_id"] for r in by_transfer] == ["page-5", "page-3", "page-1"]
    other = (await api.get("/api/v1/postings", params={"practice_id": "clinic-b"})).json()["items"]
    assert other == []
    row = failed[0]
    assert set(row) >= {"practice_id", "payment_id", "kind", "patient_account_id", "ehr_patient_id", "amount",
                        "currency", "method", "merchant_transfer_id", "load_status", "load_error",
                        "attempts_count", "received_at", "updated_at"}
    assert set(row["load_error"]) == {"code", "message", "fix"}


async def test_practice_and_patient_setup(api: httpx.AsyncClient) -> None:
    r = await api.put("/api/v1/practices/clinic-h", json={
        "name": "H", "ledger": {"kind": "http", "base_url": "http://127.0.0.1:9/ledger"}, "enabled": True})
    assert r.status_code == 200
    assert r.json()["ledger"]["kind"] == "http"
    first = await api.put("/api/v1/practices/clinic-h/ehr-patients/E-1", json={})
    again = await api.put("/api/v1/practices/clinic-h/ehr-patients/E-1", json={})
    assert first.json()["created"] is True and again.json()["created"] is False
    assert (await api.get("/api/v1/practices/clinic-h/ehr-patients/E-1/ledger")).json() == {"items": []}


async def test_metrics_count_outcomes_and_queue_depths(api: httpx.AsyncClient, upstream: Upstream,
                                                       practice: str) -> None:
    body = await upstream.payment(ehr_patient_id=None)
    await wait_status(api, practice, body["payment_id"], "FAILED")
    loaded = await upstream.payment()
    await wait_status(api, practice, loaded["payment_id"], "LOADED")
    text = (await api.get("/metrics")).text
    assert 'paypost_payments_received_total{kind="payment"}' in text
    assert 'paypost_postings_failed_total{error_code="PATIENT_NOT_MAPPED"}' in text
    assert 'paypost_postings_loaded_total{kind="posting"}' in text
    assert "paypost_posting_latency_seconds_bucket" in text
    assert 'paypost_queue_messages{queue="paypost.postings"}' in text
    assert "paypost_dead_letter_queue_depth 0.0" in text
    assert "paypost_consumer_lag_messages" in text


async def test_asyncapi_is_served(api: httpx.AsyncClient) -> None:
    r = await api.get("/api/v1/asyncapi.json", headers={"Authorization": ""})
    assert r.status_code == 200
    assert r.json()["info"]["title"] == "paypost"


async def test_text_that_no_database_can_store_is_a_422(api: httpx.AsyncClient) -> None:
    r = await api.put("/api/v1/practices/clinic-u", content=b'{"name": "\\udaba", "ledger": {"kind": "builtin"}}',
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    assert "unicode" in r.json()["error"]["message"].lower()
    r = await api.put("/api/v1/practices/clinic-u", json={"name": "x", "ledger": {"kind": "http",
                      "base_url": "http://127.0.0.1:9", "extra": 1}})
    assert r.status_code == 422
