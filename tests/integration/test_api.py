"""The HTTP API: tokens and roles, JSON errors, paging and filters."""

from __future__ import annotations

import httpx
import pytest

from paypost.bootstrap import Paypost
from tests.support.api_calls import wait_status
from tests.support.tokens import OPERATOR, VIEWER
from tests.support.upstream import Upstream

pytestmark = pytest.mark.integration

# Each change an operator may make, named by what it changes (see ``changed``).
CHANGES = [
    ("practice", "PUT", "/api/v1/practices/clinic-z", {"name": "Z", "ledger": {"kind": "builtin"}, "enabled": True}),
    ("patient", "PUT", "/api/v1/practices/clinic-a/ehr-patients/EHR-9", {}),
    ("mapping", "PUT", "/api/v1/practices/clinic-a/patient-accounts/acct-1/mapping", {"ehr_patient_id": "EHR-9"}),
]
READS = [
    "/api/v1/postings",
    "/api/v1/postings/clinic-a/pay-1",
    "/api/v1/practices/clinic-a/ehr-patients/EHR-1/ledger",
]
# Contract section 3: every call of the HTTP API.
CONTRACT_CALLS = [
    ("put", "/api/v1/practices/{practice_id}"),
    ("put", "/api/v1/practices/{practice_id}/ehr-patients/{ehr_patient_id}"),
    ("get", "/api/v1/practices/{practice_id}/ehr-patients/{ehr_patient_id}/ledger"),
    ("put", "/api/v1/practices/{practice_id}/patient-accounts/{patient_account_id}/mapping"),
    ("get", "/api/v1/postings"),
    ("get", "/api/v1/postings/{practice_id}/{payment_id}"),
    ("post", "/api/v1/postings/changes"),
    ("get", "/api/v1/operations/{operation_id}"),
    ("get", "/api/v1/transfers/{practice_id}/{merchant_transfer_id}"),
    ("get", "/api/v1/alerts"),
    # Section 8 (1.1): the office's triage.
    ("get", "/api/v1/failure-groups"),
    ("post", "/api/v1/postings/{practice_id}/{payment_id}/notes"),
    ("put", "/api/v1/postings/{practice_id}/{payment_id}/assignee"),
    ("post", "/api/v1/alerts/{alert_id}/snooze"),
    ("get", "/api/v1/postings.csv"),
    # Section 12 (1.2): patient data.
    ("get", "/api/v1/access-log"),
    ("post", "/api/v1/practices/{practice_id}/legal-hold"),
    ("delete", "/api/v1/practices/{practice_id}/legal-hold"),
]


async def changed(api: httpx.AsyncClient, paypost: Paypost) -> set[str]:
    """Which of the CHANGES can be seen (read as the operator)."""
    seen = set()
    operator = {"Authorization": f"Bearer {OPERATOR}"}
    if (await api.get("/api/v1/practices/clinic-z", headers=operator)).status_code != 404:
        seen.add("practice")
    if (await api.get("/api/v1/practices/clinic-a/ehr-patients/EHR-9/ledger", headers=operator)).status_code != 404:
        seen.add("patient")
    if await paypost.mapping_store.get("clinic-a", "acct-1") is not None:
        seen.add("mapping")
    return seen


@pytest.mark.api_only
@pytest.mark.parametrize(("change", "method", "path", "body"), CHANGES)
async def test_an_operators_change_is_seen(api: httpx.AsyncClient, paypost: Paypost, practice: str, change: str,
                                           method: str, path: str, body: dict[str, object]) -> None:
    # What ``changed`` looks at is what each change changes: the tests below rely on it.
    r = await api.request(method, path, json=body)
    assert r.status_code == 200, r.text
    assert await changed(api, paypost) == {change}


@pytest.mark.api_only
@pytest.mark.parametrize(("change", "method", "path", "body"), CHANGES)
@pytest.mark.parametrize("auth", [None, "Bearer nope", "Basic b3A6dG9rZW4="])
async def test_missing_or_unknown_token_gets_401_and_changes_nothing(
    api: httpx.AsyncClient, paypost: Paypost, practice: str, change: str, method: str, path: str,
    body: dict[str, object], auth: str | None,
) -> None:
    headers = {"Authorization": auth} if auth else {}
    api.headers.pop("Authorization")
    r = await api.request(method, path, json=body, headers=headers)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"
    assert r.headers["www-authenticate"] == "Bearer"
    assert await changed(api, paypost) == set()


@pytest.mark.api_only
@pytest.mark.parametrize(("change", "method", "path", "body"), CHANGES)
async def test_viewer_cannot_change_anything(api: httpx.AsyncClient, paypost: Paypost, practice: str, change: str,
                                             method: str, path: str, body: dict[str, object]) -> None:
    r = await api.request(method, path, json=body, headers={"Authorization": f"Bearer {VIEWER}"})
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "forbidden"
    assert await changed(api, paypost) == set()


@pytest.mark.parametrize("path", READS)
async def test_viewer_can_read(api: httpx.AsyncClient, upstream: Upstream, practice: str, path: str) -> None:
    await upstream.payment(payment_id="pay-1")  # so that every read has something to show
    await wait_status(api, practice, "pay-1", "LOADED")

    r = await api.get(path, headers={"Authorization": f"Bearer {VIEWER}"})

    assert r.status_code == 200, r.text
    assert r.json() == (await api.get(path)).json()  # what the operator reads


@pytest.mark.api_only
@pytest.mark.parametrize("path", READS)
async def test_reads_need_a_token(api: httpx.AsyncClient, path: str) -> None:
    r = await api.get(path, headers={"Authorization": ""})
    assert r.status_code == 401


@pytest.mark.api_only
async def test_health_needs_no_token(api: httpx.AsyncClient) -> None:
    api.headers.pop("Authorization")
    assert (await api.get("/healthz")).json()["status"] == "ok"
    ready = await api.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": True, "broker": True}
    metrics = await api.get("/metrics")
    assert metrics.status_code == 200 and "python_info" in metrics.text


@pytest.mark.api_only
async def test_openapi_document_has_every_call_of_the_contract(api: httpx.AsyncClient) -> None:
    api.headers.pop("Authorization")
    r = await api.get("/api/v1/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    missing = [(method, path) for method, path in CONTRACT_CALLS if method not in paths.get(path, {})]
    assert missing == []


@pytest.mark.api_only
@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("PUT", "/api/v1/practices/bad%20id", {"name": "x", "ledger": {"kind": "builtin"}}, 422),
        ("PUT", "/api/v1/practices/ok", {"name": "x", "ledger": {"kind": "sftp"}}, 400),  # no adapter of that kind
        ("PUT", "/api/v1/practices/ok", {"name": "x", "ledger": {"kind": "Not a kind!"}}, 422),
        ("PUT", "/api/v1/practices/ok", {"name": "x", "ledger": {"base_url": "https://x.example"}}, 422),
        ("PUT", "/api/v1/practices/ok", {"name": "x", "ledger": {"kind": "sftp", "a.b": 1}}, 422),  # unstorable
        ("PUT", "/api/v1/practices/ok", {"name": "x", "ledger": {"kind": "sftp", "n": 10**30}}, 422),
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


@pytest.mark.api_only
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
        params: dict[str, str | int] = {"practice_id": practice, "limit": 3}
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


@pytest.mark.api_only
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


@pytest.mark.api_only
async def test_asyncapi_is_served(api: httpx.AsyncClient) -> None:
    r = await api.get("/api/v1/asyncapi.json", headers={"Authorization": ""})
    assert r.status_code == 200
    assert r.json()["info"]["title"] == "paypost"


@pytest.mark.api_only
async def test_text_that_no_database_can_store_is_a_422(api: httpx.AsyncClient) -> None:
    r = await api.put("/api/v1/practices/clinic-u", content=b'{"name": "\\udaba", "ledger": {"kind": "builtin"}}',
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    assert "unicode" in r.json()["error"]["message"].lower()
    r = await api.put("/api/v1/practices/clinic-u", json={"name": "x", "ledger": {"kind": "http",
                      "base_url": "http://127.0.0.1:9", "extra": 1}})
    assert r.status_code == 422
