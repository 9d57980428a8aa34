"""Practices as tenants (contract section 6): every key sees and changes only its own practices."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from paypost.api.app import create_app
from paypost.bootstrap import Paypost
from paypost.domain.access import Principal, Role, Scope, token_hash
from paypost.handlers.keys import ApiKeys, FailedKeys
from paypost.infra.rabbit.asyncapi import asyncapi_text
from paypost.infra.runtime.settings import Settings
from tests.support.api_calls import wait_status
from tests.support.tokens import OPERATOR, TOKENS
from tests.support.upstream import Upstream
from tests.support.waits import wait_for

pytestmark = pytest.mark.integration

# Keys of PAYPOST_API_TOKENS beside the usual ones (OPERATOR sees every practice).
ROOT = "root-token"  # admin, every practice
A_VIEW = "a-view-token"  # viewer of clinic-a
A_OP = "a-op-token"  # operator of clinic-a
A_ADMIN = "a-admin-token"  # admin of clinic-a
AB_OP = "ab-op-token"  # operator of clinic-a and clinic-b
SCOPED_TOKENS = (f"{TOKENS},{ROOT}:admin:root,{A_VIEW}:viewer:ann:clinic-a,{A_OP}:operator:otto:clinic-a,"
                 f"{A_ADMIN}:admin:ada:clinic-a,{AB_OP}:operator:abe:clinic-a|clinic-b")
IN_A_ONLY = [A_VIEW, A_OP, A_ADMIN]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"api_tokens": SCOPED_TOKENS})


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class World:
    """Data in clinic-a and clinic-b: a loaded and a failed payment, a mapping, a settled transfer,
    an open alert, an operation and a key, each of clinic-b named so that it can be told apart."""

    b_loaded: str
    b_failed: str
    b_operation: str
    b_key: str
    b_alert: str
    a_loaded: str


async def _practice(api: httpx.AsyncClient, practice_id: str) -> None:
    r = await api.put(f"/api/v1/practices/{practice_id}", json={"name": f"Name of {practice_id}",
                                                                  "ledger": {"kind": "builtin"}, "enabled": True})
    assert r.status_code == 200, r.text
    r = await api.put(f"/api/v1/practices/{practice_id}/ehr-patients/EHR-1", json={})
    assert r.status_code == 200, r.text


@pytest.fixture
async def world(api: httpx.AsyncClient, upstream: Upstream) -> World:
    for practice_id in ("clinic-a", "clinic-b"):
        await _practice(api, practice_id)
    a = await upstream.payment(practice_id="clinic-a", payment_id="a-pay-1")
    b = await upstream.payment(practice_id="clinic-b", payment_id="b-pay-1", merchant_transfer_id="b-mt-1")
    failed = await upstream.payment(practice_id="clinic-b", payment_id="b-pay-2", ehr_patient_id=None,
                                    patient_account_id="b-acct-1")
    await wait_status(api, "clinic-a", a["payment_id"], "LOADED")
    await wait_status(api, "clinic-b", b["payment_id"], "LOADED")
    await wait_status(api, "clinic-b", failed["payment_id"], "FAILED")
    r = await api.put("/api/v1/practices/clinic-b/patient-accounts/b-acct-2/mapping", json={"ehr_patient_id": "EHR-1"})
    assert r.status_code == 200, r.text
    await upstream.send("transfer.settled", {
        "event_id": str(uuid.uuid4()), "practice_id": "clinic-b", "merchant_transfer_id": "b-mt-1",
        "payment_ids": ["b-pay-1"], "refund_ids": [], "gross_amount": "125.00", "fees_amount": "0.00",
        "net_amount": "125.00", "currency": "USD", "settled_at": "2026-11-25T12:00:00+00:00"})
    await wait_for(lambda: _ok(api.get("/api/v1/transfers/clinic-b/b-mt-1")))
    alerts = await wait_for(lambda: _alerts(api, "clinic-b"))
    r = await api.post("/api/v1/postings/changes", json={"practice_id": "clinic-b", "retry": ["b-pay-1"]})
    assert r.status_code == 202, r.text
    operation = r.json()["operation_id"]
    r = await api.post("/api/v1/api-keys", headers=auth(ROOT),
                       json={"name": "b-office", "role": "operator", "practices": ["clinic-b"]})
    assert r.status_code == 201, r.text
    return World(b_loaded="b-pay-1", b_failed="b-pay-2", b_operation=operation, b_key=r.json()["key_id"],
                 b_alert=alerts[0]["alert_id"], a_loaded="a-pay-1")


async def _ok(call: Any) -> bool:
    return bool((await call).status_code == 200)


async def _alerts(api: httpx.AsyncClient, practice_id: str) -> list[dict[str, Any]]:
    r = await api.get("/api/v1/alerts", params={"practice_id": practice_id})
    return r.json()["items"]  # type: ignore[no-any-return]  # JSON of the shape the API documents


def _b_markers(world: World) -> list[str]:
    """What only clinic-b's data carries: if an answer holds one of these, it leaked."""
    return ["clinic-b", "Name of clinic-b", world.b_loaded, world.b_failed, world.b_operation, world.b_key,
            "b-acct-1", "b-acct-2", "b-mt-1", "b-office"]


def _fill(path: str, world: World) -> str:
    values = {"practice_id": "clinic-b", "payment_id": world.b_loaded, "ehr_patient_id": "EHR-1",
              "patient_account_id": "b-acct-2", "merchant_transfer_id": "b-mt-1", "operation_id": world.b_operation,
              "key_id": world.b_key, "alert_id": world.b_alert, "group_id": "b-group",
              "deposit_id": "b-dep-1", "month": "2026-10"}
    for name, value in values.items():
        path = path.replace("{" + name + "}", value).replace("{" + name + ":path}", value)
    assert "{" not in path, f"the walk does not know how to fill {path}: add the parameter to _fill"
    return path


# Bodies a change needs to get past validation (so that the scope, not the schema, refuses it).
BODIES: dict[str, dict[str, Any]] = {
    "/api/v1/practices/{practice_id}": {"name": "taken over", "ledger": {"kind": "builtin"}, "enabled": False},
    "/api/v1/practices/{practice_id}/ehr-patients/{ehr_patient_id}": {},
    "/api/v1/practices/{practice_id}/patient-accounts/{patient_account_id}/mapping": {"ehr_patient_id": "EHR-X"},
    "/api/v1/postings/changes": {"practice_id": "clinic-b", "retry": ["b-pay-2"],
                                 "clear": [{"payment_id": "b-pay-1", "reason": "taken over"}]},
    "/api/v1/api-keys": {"name": "intruder", "role": "viewer", "practices": ["clinic-b"]},
    "/api/v1/postings/{practice_id}/{payment_id}/notes": {"text": "taken over"},
    "/api/v1/postings/{practice_id}/{payment_id}/assignee": {"assignee": "intruder"},
    "/api/v1/alerts/{alert_id}/snooze": {"until": "2999-01-01T00:00:00+00:00", "reason": "taken over"},
    "/api/v1/practices/{practice_id}/deposits/{deposit_id}/match": {"merchant_transfer_ids": ["b-mt-1"],
                                                                    "reason": "taken over"},
    "/api/v1/practices/{practice_id}/deposits/{deposit_id}/unmatch": {"reason": "taken over"},
    "/api/v1/practices/{practice_id}/periods/{month}/close": {"note": "taken over", "force": True,
                                                             "reason": "taken over"},
}
# The contract's exceptions to "a call naming a practice out of scope is 404, with the body of a
# practice that does not exist", each on purpose:
# - these routes need no key and carry no practice's data (health, readiness, metrics, AsyncAPI);
# - a call without a key, or with one paypost does not know, is 401 (429 past 20 from one address)
#   before any practice is looked at, so it says nothing of one: the walk calls with valid keys;
# - a body that is not JSON at all names no practice (none can be read from it): 422. The walk
#   sends JSON, valid and not valid for the route.
NO_KEY_NEEDED = {"/healthz", "/readyz", "/metrics", "/api/v1/asyncapi.json"}
STREAMS = {"/api/v1/events/stream"}  # walked with practice_id=clinic-b only: otherwise it streams for ever
# Ids that name nothing, beside each id of clinic-b's that does not name the practice itself: such
# an id must be answered exactly as the id of nothing is.
NOTHING = {"operation_id": "op-none", "key_id": "key_none"}


def _names_b(template: str, params: dict[str, str], body: Any) -> bool:
    """Whether the call names clinic-b: in its path (a practice id, or an alert id, which holds
    its practice's), its query or its body."""
    in_body = isinstance(body, dict) and (body.get("practice_id") == "clinic-b"
                                          or "clinic-b" in body.get("practices", []))
    return "{practice_id}" in template or "{alert_id}" in template or params.get("practice_id") == "clinic-b" \
        or in_body


async def _state_of_b(paypost: Paypost, api: httpx.AsyncClient, world: World) -> dict[str, Any]:
    practice = (await api.get("/api/v1/practices/clinic-b")).json()
    failed = (await api.get(f"/api/v1/postings/clinic-b/{world.b_failed}")).json()
    listed = (await api.get("/api/v1/api-keys", headers=auth(ROOT))).json()["items"]
    keys = {k["key_id"]: k["revoked_at"] for k in listed}
    return {"practice": practice, "failed": failed["load_status"], "audit": len(failed["audit"]),
            "mapping": await paypost.mapping_store.get("clinic-b", "b-acct-2"),
            "patient": await paypost.directory.patient_registered("clinic-b", "EHR-X"), "keys": keys,
            "operations": await paypost.collections.operations.count_documents({})}


def _calls(document: dict[str, Any], world: World) -> Iterator[tuple[str, str, str, dict[str, str], Any]]:
    """Every call of the walk: each route and method of the document, with and without
    ``practice_id=clinic-b`` in its query, with a valid body and one that is not (where it takes one)."""
    for template, methods in document["paths"].items():
        if template in NO_KEY_NEEDED:
            continue
        for method in methods:
            queries = [{"practice_id": "clinic-b"}] if template in STREAMS else [{"practice_id": "clinic-b"}, {}]
            valid = BODIES.get(template) if method != "get" else None
            bodies = [valid] if valid is None else [valid, {**valid, "nonsense": True}]  # the second is a 422
            for params in queries:
                for body in bodies:
                    yield method, template, _fill(template, world), params, body


async def _wrong(api: httpx.AsyncClient, token: str, world: World, call: tuple[str, str, str, dict[str, str], Any],
                 r: httpx.Response, not_found_b: Any) -> str | None:
    """What is wrong with the answer ``r`` to ``call``, if anything."""
    method, template, path, params, body = call
    if _names_b(template, params, body):
        return None if r.status_code == 404 and r.json() == not_found_b else \
            "not the 404 of a practice that does not exist"
    text = r.text
    ids = [name for name in NOTHING if "{" + name + "}" in template]
    if ids:  # an id of clinic-b's (an operation, a key): answered exactly as the id of nothing
        b_id = {"operation_id": world.b_operation, "key_id": world.b_key}[ids[0]]
        other = await api.request(method, path.replace(b_id, NOTHING[ids[0]]), params=params, json=body,
                                  headers=auth(token))
        text = text.replace(b_id, NOTHING[ids[0]])  # the id the call sent, echoed
        if r.is_success or (r.status_code, text) != (other.status_code, other.text):
            return "not as for an id of nothing"
    return "shows clinic-b" if any(marker in text for marker in _b_markers(world)) else None


@pytest.mark.parametrize("token", IN_A_ONLY)
async def test_every_route_hides_a_practice_out_of_scope(api: httpx.AsyncClient, paypost: Paypost, world: World,
                                                         token: str) -> None:
    """Every route of the OpenAPI document, with a key of clinic-a (each role): every call naming
    clinic-b is 404 with exactly the body of a practice that does not exist, whether its body is
    valid or not; an id of clinic-b's is answered as an id of nothing; no answer holds clinic-b's data."""
    before = await _state_of_b(paypost, api, world)
    document = (await api.get("/api/v1/openapi.json")).json()
    missing = (await api.get("/api/v1/practices/clinic-zz")).json()  # a practice that does not exist
    not_found_b = json.loads(json.dumps(missing).replace("clinic-zz", "clinic-b"))
    wrong, walked = [], set()
    for call in _calls(document, world):
        method, template, path, params, body = call
        r = await api.request(method, path, params=params, json=body, headers=auth(token))
        walked.add((method, template))
        if (reason := await _wrong(api, token, world, call, r, not_found_b)) is not None:
            wrong.append((reason, method, template, params, body, r.status_code, r.text[:200]))
    assert wrong == [], "\n".join(map(repr, wrong))
    assert len(walked) >= 15  # every route of the document was walked
    assert await _state_of_b(paypost, api, world) == before  # and nothing of clinic-b changed


@pytest.mark.parametrize(("token", "practice", "expected"), [
    (A_VIEW, "clinic-a", 403), (A_OP, "clinic-a", 200), (A_ADMIN, "clinic-a", 200), (ROOT, "clinic-a", 200),
    (A_VIEW, "clinic-b", 404), (A_OP, "clinic-b", 404), (A_ADMIN, "clinic-b", 404), (AB_OP, "clinic-b", 200),
    (ROOT, "clinic-b", 200),
])
async def test_each_role_and_scope_changes_what_it_may(api: httpx.AsyncClient, paypost: Paypost, world: World,
                                                       token: str, practice: str, expected: int) -> None:
    r = await api.put(f"/api/v1/practices/{practice}/patient-accounts/acct-new/mapping",
                      json={"ehr_patient_id": "EHR-1"}, headers=auth(token))
    assert r.status_code == expected, r.text
    assert (await paypost.mapping_store.get(practice, "acct-new") is not None) == (expected == 200)
    r = await api.get(f"/api/v1/postings/{practice}/{world.a_loaded if practice == 'clinic-a' else world.b_loaded}",
                      headers=auth(token))
    assert r.status_code == (404 if expected == 404 else 200)


async def test_out_of_scope_is_404_before_the_role_and_the_body(api: httpx.AsyncClient, world: World) -> None:
    # A viewer's change to another practice: 404 (not 403), even with a body that is not valid.
    changes = await api.post("/api/v1/postings/changes", headers=auth(A_VIEW),
                             json={"practice_id": "clinic-b", "retry": ["b-pay-2"]})
    assert changes.status_code == 404
    bad_body = await api.put("/api/v1/practices/clinic-b", json={"nonsense": True}, headers=auth(A_VIEW))
    assert bad_body.status_code == 404
    missing = await api.put("/api/v1/practices/clinic-zz", json={"nonsense": True}, headers=auth(A_VIEW))
    assert bad_body.json() == json.loads(missing.text.replace("clinic-zz", "clinic-b"))
    # The practice in a body is looked at before the body is validated, and before the role.
    invalid = await api.post("/api/v1/postings/changes", headers=auth(A_OP),
                             json={"practice_id": "clinic-b", "retry": "not a list"})
    assert (invalid.status_code, invalid.json()) == (404, bad_body.json())
    for token in (A_VIEW, A_OP):  # neither may manage keys, but a practice out of scope comes first
        key = await api.post("/api/v1/api-keys", headers=auth(token),
                             json={"name": "x", "role": "viewer", "practices": ["clinic-b"]})
        assert (key.status_code, key.json()) == (404, bad_body.json())


async def test_lists_hold_only_practices_in_scope(api: httpx.AsyncClient, world: World) -> None:
    async def practices_of(path: str, token: str) -> set[str]:
        r = await api.get(path, headers=auth(token))
        assert r.status_code == 200, r.text
        return {item["practice_id"] for item in r.json()["items"]}

    assert await practices_of("/api/v1/postings", A_VIEW) == {"clinic-a"}
    assert await practices_of("/api/v1/postings", AB_OP) == {"clinic-a", "clinic-b"}
    assert await practices_of("/api/v1/alerts", A_VIEW) == set()  # clinic-a has no open alert
    assert await practices_of("/api/v1/alerts", AB_OP) == {"clinic-b"}
    assert await practices_of("/api/v1/practices", A_VIEW) == {"clinic-a"}
    assert await practices_of("/api/v1/practices", AB_OP) == {"clinic-a", "clinic-b"}
    r = await api.get("/api/v1/practices", headers=auth(A_VIEW))
    assert r.json() == {"items": [{"practice_id": "clinic-a", "name": "Name of clinic-a", "enabled": True}]}
    r = await api.get("/api/v1/postings", params={"practice_id": "clinic-b"}, headers=auth(A_VIEW))
    assert r.status_code == 404


@pytest.mark.api_only
async def test_whoami_names_the_role_and_practices(api: httpx.AsyncClient) -> None:
    r = await api.get("/api/v1/whoami", headers=auth(AB_OP))
    assert r.json() == {"name": "abe", "role": "operator", "practices": ["clinic-a", "clinic-b"]}
    r = await api.get("/api/v1/whoami", headers=auth(OPERATOR))
    assert r.json() == {"name": "alice", "role": "operator", "practices": ["*"]}


async def test_the_live_feed_carries_only_events_in_scope(paypost: Paypost, upstream: Upstream,
                                                          api: httpx.AsyncClient) -> None:
    for practice_id in ("clinic-a", "clinic-b"):
        await _practice(api, practice_id)
    feed = paypost.application.for_principal(Principal("ann", Role.VIEWER, Scope.of(["clinic-a"]))).feed
    seen: list[str] = []

    async def watch() -> None:
        async for event in feed.subscribe():
            seen.append(event.body["practice_id"])
            if event.body.get("payment_id") == "a-last":
                return

    watching = asyncio.create_task(watch())
    await asyncio.sleep(0.5)  # subscribed
    await upstream.payment(practice_id="clinic-b", payment_id="b-first")
    await wait_status(api, "clinic-b", "b-first", "LOADED")
    await upstream.payment(practice_id="clinic-a", payment_id="a-last")
    await asyncio.wait_for(watching, 10)
    assert seen == ["clinic-a"]
    r = await api.get("/api/v1/events/stream", params={"practice_id": "clinic-b"}, headers=auth(A_VIEW))
    assert r.status_code == 404


@pytest.mark.api_only
@pytest.mark.parametrize("ends_by", ["revoked", "expired"])
async def test_an_open_live_feed_ends_once_its_key_is_revoked_or_expired(paypost: Paypost, api: httpx.AsyncClient,
                                                                         ends_by: str) -> None:
    import uvicorn

    from paypost.local.servers import free_port

    # Long enough for the feed to open first on cores other test workers keep busy (2 s was not).
    expires = datetime.now(UTC) + timedelta(seconds=8) if ends_by == "expired" else None
    r = await api.post("/api/v1/api-keys", headers=auth(ROOT), json={
        "name": "feed", "role": "viewer", "practices": ["*"],
        "expires_at": expires.isoformat() if expires else None})
    made = r.json()
    port = free_port()
    app = create_app(paypost.application, asyncapi_text, key_check_every=0.2)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn says it started with a flag, not an event
        await asyncio.sleep(0.02)
    url = f"http://127.0.0.1:{port}/api/v1/events/stream"
    ticket = (await api.post("/api/v1/events/tickets", headers=auth(made["token"]))).json()["ticket"]
    try:
        async with httpx.AsyncClient(timeout=10) as client, client.stream(
                "GET", url, params={"ticket": ticket}) as feed:
            assert feed.status_code == 200
            lines = feed.aiter_lines()
            assert await anext(lines) == ": connected"
            await asyncio.sleep(0.5)
            if ends_by == "revoked":  # open, then revoked while it streams
                assert (await api.delete(f"/api/v1/api-keys/{made['key_id']}", headers=auth(ROOT))).is_success
            left = (expires - datetime.now(UTC)).total_seconds() if expires else 0.0
            rest = await asyncio.wait_for(_to_the_end(lines), timeout=left + 5)  # it ends by itself
        assert "event: end" in rest and "revoked or has expired" in rest
        async with httpx.AsyncClient() as client:
            assert (await client.get(url, headers=auth(made["token"]))).status_code == 401
        assert (await api.post("/api/v1/events/tickets", headers=auth(made["token"]))).status_code == 401
    finally:
        await paypost.event_hub.close()  # ends any stream left, so the server can stop
        server.should_exit = True
        await serving


async def _to_the_end(lines: AsyncIterator[str]) -> str:
    return "\n".join([line async for line in lines])


# Keys made through the API.

async def test_a_key_is_made_used_listed_and_revoked(api: httpx.AsyncClient, paypost: Paypost,
                                                     world: World) -> None:
    r = await api.post("/api/v1/api-keys", headers=auth(ROOT),
                       json={"name": "a-office", "role": "viewer", "practices": ["clinic-a"]})
    assert r.status_code == 201, r.text
    made = r.json()
    assert set(made) >= {"key_id", "name", "role", "practices", "created_at", "expires_at", "token"}
    assert made["practices"] == ["clinic-a"] and made["expires_at"] is None
    token = made["token"]

    who = await api.get("/api/v1/whoami", headers=auth(token))
    assert who.json() == {"name": "a-office", "role": "viewer", "practices": ["clinic-a"]}
    assert (await api.get("/api/v1/postings/clinic-b/b-pay-1", headers=auth(token))).status_code == 404

    listed = (await api.get("/api/v1/api-keys", headers=auth(ROOT))).json()["items"]
    assert made["key_id"] in {k["key_id"] for k in listed}
    assert token not in json.dumps(listed) and all("token" not in k for k in listed)
    stored = await paypost.collections.db["api_keys"].find_one({"_id": made["key_id"]})
    assert stored is not None and token not in json.dumps(stored, default=str)
    assert stored["token_sha256"] == hashlib.sha256(token.encode()).hexdigest()

    r = await api.delete(f"/api/v1/api-keys/{made['key_id']}", headers=auth(ROOT))
    assert r.status_code == 200 and r.json()["revoked_at"] is not None
    assert (await api.get("/api/v1/whoami", headers=auth(token))).status_code == 401  # at once

    trail = await paypost.api_keys.trail()
    assert [(t["action"], t["actor"], t["key_id"]) for t in trail[:2]] == [
        ("revoke", "root", made["key_id"]), ("create", "root", made["key_id"])]


@pytest.mark.api_only
async def test_an_expired_key_gets_401(api: httpx.AsyncClient) -> None:
    # Far enough ahead that a loaded machine's first calls (2 s seen in CI) still come before it.
    expires = datetime.now(UTC) + timedelta(seconds=8)
    r = await api.post("/api/v1/api-keys", headers=auth(ROOT),
                       json={"name": "brief", "role": "viewer", "practices": ["*"], "expires_at": expires.isoformat()})
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    assert (await api.get("/api/v1/whoami", headers=auth(token))).status_code == 200
    await asyncio.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.5)
    assert (await api.get("/api/v1/whoami", headers=auth(token))).status_code == 401


@pytest.mark.api_only
@pytest.mark.parametrize(("token", "body", "expected"), [
    (A_OP, {"name": "x", "role": "viewer", "practices": ["clinic-a"]}, 403),  # only an admin manages keys
    (A_ADMIN, {"name": "x", "role": "viewer", "practices": ["clinic-b"]}, 404),  # out of its scope
    (A_ADMIN, {"name": "x", "role": "viewer", "practices": ["*"]}, 403),  # wider than its scope
    (A_ADMIN, {"name": "x", "role": "admin", "practices": ["clinic-a"]}, 201),
    (ROOT, {"name": "x", "role": "viewer", "practices": []}, 422),
    (ROOT, {"name": "x", "role": "viewer", "practices": ["*"], "expires_at": "2020-01-01T00:00:00Z"}, 422),
    (ROOT, {"name": "x", "role": "root", "practices": ["*"]}, 422),
])
async def test_an_admin_makes_keys_within_its_role_and_scope(api: httpx.AsyncClient, token: str,
                                                             body: dict[str, Any], expected: int) -> None:
    r = await api.post("/api/v1/api-keys", headers=auth(token), json=body)
    assert r.status_code == expected, r.text


async def test_a_scoped_admin_sees_and_revokes_only_its_keys(api: httpx.AsyncClient, world: World) -> None:
    listed = (await api.get("/api/v1/api-keys", headers=auth(A_ADMIN))).json()["items"]
    assert world.b_key not in {k["key_id"] for k in listed}
    r = await api.delete(f"/api/v1/api-keys/{world.b_key}", headers=auth(A_ADMIN))
    assert r.status_code == 404
    assert r.json() == (await api.delete("/api/v1/api-keys/key_none", headers=auth(A_ADMIN))).json() | {
        "error": {"code": "not_found", "message": f"No API key {world.b_key}."}}


# Brute force and the access log.

@pytest.mark.api_only
async def test_unknown_keys_from_one_address_get_429_and_a_valid_key_is_still_served(api: httpx.AsyncClient) -> None:
    for n in range(20):
        r = await api.get("/api/v1/postings", headers=auth(f"guess-{n}"))
        assert r.status_code == 401
    r = await api.get("/api/v1/postings", headers=auth("guess-21"))
    assert r.status_code == 429
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert r.json()["error"]["code"] == "too_many_requests"
    assert (await api.get("/api/v1/postings", headers=auth(OPERATOR))).status_code == 200  # never refused
    assert (await api.get("/api/v1/postings", headers=auth("guess-22"))).status_code == 429


@pytest.mark.api_only
async def test_api_processes_on_one_database_share_the_count(paypost: Paypost, api: httpx.AsyncClient) -> None:
    other = Paypost(paypost.settings)  # a second API process: its own app, the same database
    try:
        transport = httpx.ASGITransport(app=other.http_app(manage_lifecycle=False))
        async with httpx.AsyncClient(transport=transport, base_url="http://paypost") as second:
            for n in range(10):
                assert (await api.get("/api/v1/whoami", headers=auth(f"guess-a{n}"))).status_code == 401
                assert (await second.get("/api/v1/whoami", headers=auth(f"guess-b{n}"))).status_code == 401
            refused = await api.get("/api/v1/whoami", headers=auth("guess-21"))
            assert refused.status_code == 429 and 1 <= int(refused.headers["retry-after"]) <= 60
            assert (await second.get("/api/v1/whoami", headers=auth("guess-22"))).status_code == 429
            assert (await second.get("/api/v1/whoami", headers=auth(OPERATOR))).status_code == 200  # never refused
    finally:
        await other.mongo.close()


class Clock:
    def __init__(self) -> None:
        # From the real time: a count's document lapses by a TTL index at its window's end, and
        # MongoDB's TTL monitor (about once a minute) would remove one dated in the past mid-test.
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


def _app_with_clock(paypost: Paypost, clock: Clock) -> httpx.ASGITransport:
    """paypost's API whose count of unknown keys reads ``clock``."""
    keys = ApiKeys(paypost.api_keys, {token_hash(OPERATOR): Principal("alice", Role.OPERATOR, Scope.of(["*"]))},
                   FailedKeys(paypost.failed_key_counts, clock=clock))
    return httpx.ASGITransport(app=create_app(replace(paypost.application, keys=keys), asyncapi_text),
                               client=("203.0.113.7", 4000))


@pytest.mark.api_only
async def test_the_refusal_lifts_once_the_minute_has_passed(paypost: Paypost) -> None:
    clock = Clock()
    async with httpx.AsyncClient(transport=_app_with_clock(paypost, clock), base_url="http://paypost") as client:
        for n in range(20):
            assert (await client.get("/api/v1/whoami", headers=auth(f"guess-{n}"))).status_code == 401
            clock.now += timedelta(seconds=1)  # the 20th at 19 s
        clock.now += timedelta(seconds=20)  # 40 s after the first
        refused = await client.get("/api/v1/whoami", headers=auth("guess-21"))
        assert (refused.status_code, refused.headers["retry-after"]) == (429, "20")
        clock.now += timedelta(seconds=19)
        assert (await client.get("/api/v1/whoami", headers=auth("guess-22"))).status_code == 429
        clock.now += timedelta(seconds=1)  # the minute has passed
        assert (await client.get("/api/v1/whoami", headers=auth("guess-23"))).status_code == 401


@pytest.mark.api_only
async def test_one_address_refused_leaves_another_served(paypost: Paypost) -> None:
    app = paypost.http_app(manage_lifecycle=False)
    blocked = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("198.51.100.1", 1)),
                                base_url="http://paypost")
    other = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("198.51.100.2", 1)),
                              base_url="http://paypost")
    async with blocked, other:
        statuses = [(await blocked.get("/api/v1/whoami", headers=auth(f"g-{n}"))).status_code for n in range(21)]
        assert statuses == [401] * 20 + [429]
        assert (await other.get("/api/v1/whoami", headers=auth("g-other"))).status_code == 401
        assert (await blocked.get("/api/v1/whoami", headers=auth(OPERATOR))).status_code == 200


@pytest.mark.api_only
async def test_a_revoked_key_counts_as_unknown(api: httpx.AsyncClient) -> None:
    made = (await api.post("/api/v1/api-keys", headers=auth(ROOT),
                           json={"name": "gone", "role": "viewer", "practices": ["*"]})).json()
    await api.delete(f"/api/v1/api-keys/{made['key_id']}", headers=auth(ROOT))
    statuses = [(await api.get("/api/v1/whoami", headers=auth(made["token"]))).status_code for _ in range(21)]
    assert statuses == [401] * 20 + [429]


async def test_each_call_is_logged_without_its_token(api: httpx.AsyncClient, world: World) -> None:
    with capture_logs() as logs:
        await api.get("/api/v1/postings/clinic-a/a-pay-1", headers=auth(A_VIEW))
        await api.post("/api/v1/postings/changes", headers=auth(A_VIEW),
                       json={"practice_id": "clinic-b", "retry": ["b-pay-2"]})
        await api.get("/api/v1/events/stream", params={"ticket": "secret-guess", "practice_id": "clinic-a"},
                      headers={"Authorization": ""})
    calls = [entry for entry in logs if entry["event"] == "api_call"]
    assert [(c["key"], c["role"], c["method"], c["route"], c["practice"], c["status"]) for c in calls] == [
        ("ann", "viewer", "GET", "/api/v1/postings/{practice_id}/{payment_id:path}", "clinic-a", 200),
        ("ann", "viewer", "POST", "/api/v1/postings/changes", "clinic-b", 404),
        (None, None, "GET", "/api/v1/events/stream", None, 401),
    ]
    assert all(isinstance(c["duration_ms"], float) for c in calls)
    text = repr(logs)
    assert A_VIEW not in text and "secret-guess" not in text and "b-pay-2" not in text

