"""The office's triage (contract section 8): failure groups, Save Changes by group, dry runs,
canaries, notes and the assignee, snoozed alerts, and the CSV export."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from paypost.bootstrap import Paypost
from paypost.domain.audit_chain import Verification
from paypost.domain.operations import CanaryPhase, CanaryPlan, OperationItem
from paypost.handlers.reactions import PostingReactions
from paypost.infra.runtime.settings import Settings
from tests.support.api_calls import get_posting, wait_status
from tests.support.tokens import OPERATOR, TOKENS, VIEWER
from tests.support.upstream import Upstream
from tests.support.waits import wait_for

pytestmark = pytest.mark.integration

A_OP = "a-op-token"  # an operator of clinic-a only


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"api_tokens": f"{TOKENS},{A_OP}:operator:otto:clinic-a"})


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _practice(api: httpx.AsyncClient, practice_id: str) -> None:
    r = await api.put(f"/api/v1/practices/{practice_id}", json={"name": practice_id, "ledger": {"kind": "builtin"}})
    assert r.status_code == 200, r.text
    r = await api.put(f"/api/v1/practices/{practice_id}/ehr-patients/EHR-1", json={})
    assert r.status_code == 200, r.text


async def _failed(api: httpx.AsyncClient, upstream: Upstream, practice_id: str, payment_id: str,
                  **fields: Any) -> dict[str, Any]:
    await upstream.payment(practice_id=practice_id, payment_id=payment_id, **fields)
    return await wait_status(api, practice_id, payment_id, "FAILED")


async def _groups(api: httpx.AsyncClient, **params: str) -> list[dict[str, Any]]:
    r = await api.get("/api/v1/failure-groups", params=params)
    assert r.status_code == 200, r.text
    return r.json()["items"]  # type: ignore[no-any-return]  # JSON of the shape the API documents


@pytest.fixture
async def failures(api: httpx.AsyncClient, upstream: Upstream) -> dict[str, str]:
    """In clinic-a: three payments of acct-x and one of acct-y not mapped, one in a currency the
    ledger refuses; in clinic-b: one not mapped. Returns each group's id by a short name."""
    for practice_id in ("clinic-a", "clinic-b"):
        await _practice(api, practice_id)
    for n in range(3):
        await _failed(api, upstream, "clinic-a", f"x-{n}", ehr_patient_id=None, patient_account_id="acct-x",
                      amount=f"{10 + n}.00")
    await _failed(api, upstream, "clinic-a", "y-0", ehr_patient_id=None, patient_account_id="acct-y")
    await _failed(api, upstream, "clinic-a", "eur-0", currency="EUR")
    await _failed(api, upstream, "clinic-b", "b-0", ehr_patient_id=None, patient_account_id="acct-x")
    groups = await _groups(api, practice_id="clinic-a")
    by_cause = {g["cause"]: g["group_id"] for g in groups}
    b = await _groups(api, practice_id="clinic-b")
    return {"x": by_cause["acct-x"], "y": by_cause["acct-y"],
            "eur": next(g["group_id"] for g in groups if g["error_code"] == "LEDGER_REJECTED"), "b": b[0]["group_id"]}


async def test_failed_postings_are_grouped_by_practice_code_and_cause(api: httpx.AsyncClient,
                                                                     failures: dict[str, str]) -> None:
    groups = await _groups(api, practice_id="clinic-a")
    assert [(g["error_code"], g["cause"], g["count"], g["amount"]) for g in groups] == [
        ("PATIENT_NOT_MAPPED", "acct-x", 3, "33.00"),
        ("LEDGER_REJECTED", "The ledger keeps USD; this entry is in EUR.", 1, "125.00"),
        ("PATIENT_NOT_MAPPED", "acct-y", 1, "125.00"),
    ]
    x = groups[0]
    assert x["group_id"] == failures["x"] and x["practice_id"] == "clinic-a"
    # What fixes it is said once, for the group: the Load Error's own words.
    assert x["message"] == "This patient account has no practice-management patient id."
    assert x["fix"].startswith("Enter the patient's practice-management id (the mapping)")
    assert groups[1]["fix"] == "Correct the cause the ledger gave, then retry; or clear it if posted by hand."
    assert datetime.fromisoformat(x["first_failed_at"]) <= datetime.fromisoformat(x["last_failed_at"])
    # The same account in another practice is another group.
    assert failures["b"] != failures["x"]
    every = await _groups(api)
    assert {g["practice_id"] for g in every} == {"clinic-a", "clinic-b"}


async def test_a_group_follows_its_postings_and_keeps_its_id(api: httpx.AsyncClient, upstream: Upstream,
                                                             failures: dict[str, str]) -> None:
    r = await api.post("/api/v1/postings/changes", json={
        "practice_id": "clinic-a", "clear": [{"payment_id": "x-0", "reason": "posted by hand"}]})
    assert r.status_code == 202, r.text
    await wait_status(api, "clinic-a", "x-0", "CLEARED")
    await _failed(api, upstream, "clinic-a", "x-3", ehr_patient_id=None, patient_account_id="acct-x")
    await _failed(api, upstream, "clinic-a", "x-4", ehr_patient_id=None, patient_account_id="acct-x")
    x = next(g for g in await _groups(api, practice_id="clinic-a") if g["group_id"] == failures["x"])
    assert x["count"] == 4  # x-1, x-2, x-3, x-4
    # A mapping fix retries the group by itself: once they load, the group is gone.
    await api.put("/api/v1/practices/clinic-a/patient-accounts/acct-x/mapping", json={"ehr_patient_id": "EHR-1"})
    for p in ("x-1", "x-2", "x-3", "x-4"):
        await wait_status(api, "clinic-a", p, "LOADED")
    assert failures["x"] not in {g["group_id"] for g in await _groups(api, practice_id="clinic-a")}


async def test_groups_hold_only_practices_in_scope(api: httpx.AsyncClient, failures: dict[str, str]) -> None:
    r = await api.get("/api/v1/failure-groups", headers=auth(A_OP))
    assert {g["practice_id"] for g in r.json()["items"]} == {"clinic-a"}
    r = await api.get("/api/v1/failure-groups", params={"practice_id": "clinic-b"}, headers=auth(A_OP))
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    # A group of clinic-b named in a change to clinic-a is not one of clinic-a's groups.
    r = await api.post("/api/v1/postings/changes", headers=auth(A_OP),
                       json={"practice_id": "clinic-a", "retry_groups": [failures["b"]]})
    assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_group"
    assert (await get_posting(api, "clinic-b", "b-0") or {})["load_status"] == "FAILED"


async def test_a_dry_run_says_what_it_would_do_and_changes_nothing(api: httpx.AsyncClient, paypost: Paypost,
                                                                   failures: dict[str, str]) -> None:
    before = [(await get_posting(api, "clinic-a", p) or {})["audit"] for p in ("x-0", "y-0", "eur-0")]
    r = await api.post("/api/v1/postings/changes", params={"dry_run": "true"}, json={
        "practice_id": "clinic-a", "retry": ["nothing-here"], "retry_groups": [failures["x"]],
        "clear_groups": [{"group_id": failures["eur"], "reason": "posted by hand"}]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == 5
    assert {(i["payment_id"], i["action"], i["result"]) for i in body["items"]} == {
        ("nothing-here", "retry", "rejected"), ("x-0", "retry", "retried"), ("x-1", "retry", "retried"),
        ("x-2", "retry", "retried"), ("eur-0", "clear", "cleared")}
    assert all(i["message"] for i in body["items"])
    after = [(await get_posting(api, "clinic-a", p) or {})["audit"] for p in ("x-0", "y-0", "eur-0")]
    assert after == before
    assert await paypost.collections.operations.count_documents({}) == 0


async def test_save_changes_by_group_applies_to_the_groups_postings(api: httpx.AsyncClient,
                                                                    failures: dict[str, str]) -> None:
    r = await api.post("/api/v1/postings/changes", json={
        "practice_id": "clinic-a", "clear_groups": [{"group_id": failures["x"], "reason": "posted by hand",
                                                     "manual_reference": "M-1"}],
        "retry_groups": [failures["eur"]]})
    assert r.status_code == 202, r.text
    operation_id = r.json()["operation_id"]

    async def completed() -> dict[str, Any] | None:
        op = (await api.get(f"/api/v1/operations/{operation_id}")).json()
        return op if op["status"] == "completed" else None

    op = await wait_for(completed)
    assert {(i["payment_id"], i["action"], i["result"]) for i in op["items"]} == {
        ("eur-0", "retry", "retried"), ("x-0", "clear", "cleared"), ("x-1", "clear", "cleared"),
        ("x-2", "clear", "cleared")}
    x1 = await get_posting(api, "clinic-a", "x-1")
    assert x1 is not None and x1["audit"][-1]["reason"] == "posted by hand"
    await wait_status(api, "clinic-a", "eur-0", "FAILED")  # the ledger refuses it again
    assert {g["cause"] for g in await _groups(api, practice_id="clinic-a")} == {
        "acct-y", "The ledger keeps USD; this entry is in EUR."}


@pytest.mark.parametrize(("body", "code"), [
    ({"retry_groups": ["0000000000000000"]}, "unknown_group"),
    ({"clear_groups": [{"group_id": "G", "reason": "  "}]}, "invalid_request"),
    ({"clear_groups": [{"group_id": "G"}]}, "invalid_request"),
    ({"retry_groups": [""]}, "invalid_request"),
    ({"clear": [{"payment_id": "x-0", "reason": "r"}], "canary": 1}, "invalid_canary"),
    ({"retry": ["x-0"], "canary": 0}, "invalid_request"),
    ({"retry": ["x-0"], "canary": "some"}, "invalid_request"),
])
@pytest.mark.parametrize("dry_run", [False, True])
async def test_a_bad_selection_is_refused_whole(api: httpx.AsyncClient, paypost: Paypost, failures: dict[str, str],
                                                body: dict[str, Any], code: str, dry_run: bool) -> None:
    r = await api.post("/api/v1/postings/changes", params={"dry_run": str(dry_run).lower()},
                       json={"practice_id": "clinic-a", **body})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == code and r.json()["error"]["message"]
    assert await paypost.collections.operations.count_documents({}) == 0


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/api/v1/postings/changes?dry_run=true", {"practice_id": "clinic-a", "retry": ["x-0"]}),
    ("POST", "/api/v1/postings/changes", {"practice_id": "clinic-a", "retry_groups": ["0000000000000000"]}),
    ("POST", "/api/v1/postings/clinic-a/x-0/notes", {"text": "looking"}),
    ("PUT", "/api/v1/postings/clinic-a/x-0/assignee", {"assignee": "victor"}),
])
async def test_a_viewer_cannot_triage(api: httpx.AsyncClient, failures: dict[str, str], method: str, path: str,
                                      body: dict[str, Any]) -> None:
    before = await get_posting(api, "clinic-a", "x-0")
    r = await api.request(method, path, json=body, headers=auth(VIEWER))
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "forbidden"
    assert await get_posting(api, "clinic-a", "x-0") == before


# Canaries.

async def _completed(api: httpx.AsyncClient, operation_id: str, timeout: float = 30) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        op = (await api.get(f"/api/v1/operations/{operation_id}")).json()
        return op if op["status"] == "completed" else None

    return await wait_for(check, timeout)  # type: ignore[no-any-return]  # JSON of the shape the API documents


@pytest.fixture
async def api_process(settings: Settings, paypost: Paypost) -> AsyncIterator[httpx.AsyncClient]:
    """A second paypost, serving the API only (no consumer, no sweep): what it records, the
    fixture's process (the worker) carries out."""
    other = Paypost(settings)
    await other.start(consume=False)
    transport = httpx.ASGITransport(app=other.http_app(manage_lifecycle=False))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://paypost-api",
                                     headers=auth(OPERATOR)) as client:
            yield client
    finally:
        await other.stop()


async def _unconfigured_failures(api: httpx.AsyncClient, upstream: Upstream, ids: list[str],
                                 ehr: dict[str, str]) -> None:
    """Payments of clinic-n that failed (no integration); then its integration is set up."""
    for p in ids:
        await _failed(api, upstream, "clinic-n", p, ehr_patient_id=ehr.get(p, "EHR-1"))
    await _practice(api, "clinic-n")


async def test_a_canary_that_loads_lets_the_rest_follow(api: httpx.AsyncClient, api_process: httpx.AsyncClient,
                                                        upstream: Upstream) -> None:
    ids = [f"n-{i}" for i in range(5)]
    await _unconfigured_failures(api, upstream, ids, {})
    r = await api_process.post("/api/v1/postings/changes",
                               json={"practice_id": "clinic-n", "retry": ids, "canary": 2})
    assert r.status_code == 202, r.text
    op = await _completed(api_process, r.json()["operation_id"])
    assert [i["result"] for i in op["items"]] == ["retried"] * 5
    assert op["canary"] == {"size": 2, "state": "passed", "payment_ids": ["n-0", "n-1"]}
    assert op["message"] is None
    for p in ids:
        await wait_status(api, "clinic-n", p, "LOADED")


async def test_a_canary_that_fails_stops_the_rest(api: httpx.AsyncClient, api_process: httpx.AsyncClient,
                                                  upstream: Upstream) -> None:
    # The first two go to a patient the ledger does not know: they fail again when replayed.
    ids = ["bad-0", "bad-1", "ok-0", "ok-1"]
    await _unconfigured_failures(api, upstream, ids, {"bad-0": "EHR-404", "bad-1": "EHR-404"})
    r = await api_process.post("/api/v1/postings/changes", json={
        "practice_id": "clinic-n", "retry": ids, "canary": 2,
        "clear": [{"payment_id": "ok-1", "reason": "posted by hand"}]})
    assert r.status_code == 202, r.text
    op = await _completed(api_process, r.json()["operation_id"])
    results = [(i["payment_id"], i["action"], i["result"]) for i in op["items"]]
    assert results == [("bad-0", "retry", "retried"), ("bad-1", "retry", "retried"), ("ok-0", "retry", "unchanged"),
                       ("ok-1", "retry", "unchanged"), ("ok-1", "clear", "unchanged")]
    assert op["canary"]["state"] == "stopped"
    assert "canary" in op["message"] and "bad-0 is FAILED" in op["message"]
    assert all(i["message"] == op["message"] for i in op["items"][2:])
    for p in ids:
        posting = await get_posting(api, "clinic-n", p)
        assert posting is not None and posting["load_status"] == "FAILED"
    assert (await get_posting(api, "clinic-n", "bad-0") or {})["load_error"]["code"] == "PATIENT_NOT_FOUND"
    assert (await get_posting(api, "clinic-n", "ok-0") or {})["load_error"]["code"] == "INTEGRATION_NOT_CONFIGURED"


# Notes and the assignee.

async def test_notes_and_the_assignee_join_the_sealed_audit_trail(api: httpx.AsyncClient, paypost: Paypost,
                                                                  failures: dict[str, str]) -> None:
    r = await api.post("/api/v1/postings/clinic-a/x-0/notes", json={"text": "called the front desk"})
    assert r.status_code == 201, r.text
    assert r.json()["notes_count"] == 1 and r.json()["note"]["action"] == "note"
    r = await api.post("/api/v1/postings/clinic-a/x-0/notes", json={"text": "waiting for the chart number"})
    assert r.json()["notes_count"] == 2
    r = await api.put("/api/v1/postings/clinic-a/x-0/assignee", json={"assignee": "carol"})
    assert r.status_code == 200, r.text

    posting = await get_posting(api, "clinic-a", "x-0")
    assert posting is not None
    notes = [(a["actor"], a["action"], a["detail"]) for a in posting["audit"] if a["action"] in ("note", "assign")]
    assert notes == [("alice", "note", "called the front desk"), ("alice", "note", "waiting for the chart number"),
                     ("alice", "assign", "assigned to carol")]
    row = next(r for r in (await api.get("/api/v1/postings", params={"practice_id": "clinic-a"})).json()["items"]
               if r["payment_id"] == "x-0")
    assert (row["assignee"], row["notes_count"]) == ("carol", 2)

    r = await api.put("/api/v1/postings/clinic-a/x-0/assignee", json={"assignee": None})
    assert r.status_code == 200 and r.json()["assignee"] is None
    assert (await get_posting(api, "clinic-a", "x-0") or {})["assignee"] is None

    async def sealed_whole() -> Verification | None:  # the access trail's writer may add a record meanwhile
        await paypost.sealer.seal_all()
        verified = await paypost.sealer.verify()
        return verified if verified.unsealed == 0 else None

    verified = await wait_for(sealed_whole, timeout=15)
    assert verified.problems == []


@pytest.mark.parametrize(("path", "body", "status"), [
    ("/api/v1/postings/clinic-a/x-0/notes", {"text": ""}, 422),
    ("/api/v1/postings/clinic-a/x-0/notes", {"text": "   "}, 422),
    ("/api/v1/postings/clinic-a/x-0/notes", {"text": "x" * 4001}, 422),
    ("/api/v1/postings/clinic-a/x-0/notes", {}, 422),
    ("/api/v1/postings/clinic-a/no-such/notes", {"text": "hello"}, 404),
    ("/api/v1/postings/clinic-b/b-0/notes", {"text": "hello"}, 404),  # out of A_OP's scope
    ("/api/v1/postings/clinic-a/x-0/assignee", {}, 422),
    ("/api/v1/postings/clinic-a/x-0/assignee", {"assignee": ""}, 422),
])
async def test_bad_notes_are_refused(api: httpx.AsyncClient, failures: dict[str, str], path: str,
                                     body: dict[str, Any], status: int) -> None:
    method = "PUT" if path.endswith("assignee") else "POST"
    r = await api.request(method, path, json=body, headers=auth(A_OP))
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] and r.json()["error"]["message"]
    if "clinic-b" in path:
        assert (await get_posting(api, "clinic-b", "b-0") or {})["notes_count"] == 0


# Snoozed alerts.

async def test_a_snoozed_alert_does_not_escalate_before_its_time(api: httpx.AsyncClient, paypost: Paypost,
                                                                 failures: dict[str, str]) -> None:
    alerts = (await api.get("/api/v1/alerts", params={"practice_id": "clinic-a"})).json()["items"]
    task = next(a for a in alerts if a["kind"] == "task" and a["payment_id"] == "x-0")
    other = next(a for a in alerts if a["kind"] == "task" and a["payment_id"] == "x-1")
    # An hour ahead: the snooze's call and the first sweep come before it however loaded the machine
    # (2 s ahead once was not); the second sweep is run with a clock past it.
    until = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)  # BSON keeps milliseconds
    r = await api.post(f"/api/v1/alerts/{task['alert_id']}/snooze",
                       json={"until": until.isoformat(), "reason": "the office is closed today"})
    assert r.status_code == 200, r.text
    shown = r.json()
    assert datetime.fromisoformat(shown["snoozed_until"]) == until
    assert (shown["snooze_reason"], shown["snoozed_by"], shown["state"]) == ("the office is closed today",
                                                                             "alice", "open")

    at_once = PostingReactions(paypost.alerts, paypost.transfers, paypost.outcomes, paypost.operations, 0)
    await at_once.escalate_due()
    states = {a["alert_id"]: a["state"]
              for a in (await api.get("/api/v1/alerts", params={"practice_id": "clinic-a"})).json()["items"]}
    assert states[task["alert_id"]] == "open" and states[other["alert_id"]] == "escalated"

    after_it = PostingReactions(paypost.alerts, paypost.transfers, paypost.outcomes, paypost.operations, 0,
                                clock=lambda: until + timedelta(seconds=1))
    await after_it.escalate_due()
    listed = (await api.get("/api/v1/alerts", params={"practice_id": "clinic-a"})).json()["items"]
    assert next(a for a in listed if a["alert_id"] == task["alert_id"])["state"] == "escalated"


@pytest.mark.parametrize(("until", "reason", "token", "status"), [
    (timedelta(seconds=-5), "past", OPERATOR, 422),
    (timedelta(days=91), "too far", OPERATOR, 422),
    (timedelta(hours=1), "", OPERATOR, 422),
    (None, "no offset", OPERATOR, 422),
    (timedelta(hours=1), "viewer", VIEWER, 403),
])
async def test_bad_snoozes_are_refused(api: httpx.AsyncClient, failures: dict[str, str], until: timedelta | None,
                                       reason: str, token: str, status: int) -> None:
    alerts = (await api.get("/api/v1/alerts", params={"practice_id": "clinic-a"})).json()["items"]
    alert_id = alerts[0]["alert_id"]
    when = (datetime.now(UTC) + until).isoformat() if until else "2030-01-01T00:00:00"
    r = await api.post(f"/api/v1/alerts/{alert_id}/snooze", json={"until": when, "reason": reason},
                       headers=auth(token))
    assert r.status_code == status, r.text
    assert r.json()["error"]["message"]
    listed = (await api.get("/api/v1/alerts", params={"practice_id": "clinic-a"})).json()["items"]
    assert next(a for a in listed if a["alert_id"] == alert_id)["snoozed_until"] is None


async def test_a_snooze_of_an_alert_out_of_scope_or_resolved_is_refused(api: httpx.AsyncClient,
                                                                        failures: dict[str, str]) -> None:
    b_alert = (await api.get("/api/v1/alerts", params={"practice_id": "clinic-b"})).json()["items"][0]
    body = {"until": (datetime.now(UTC) + timedelta(hours=1)).isoformat(), "reason": "later"}
    r = await api.post(f"/api/v1/alerts/{b_alert['alert_id']}/snooze", json=body, headers=auth(A_OP))
    missing = await api.post("/api/v1/alerts/task:clinic-b:none/snooze", json=body, headers=auth(A_OP))
    # The same answer as for a practice that does not exist, whether or not the alert does.
    assert r.status_code == missing.status_code == 404
    assert r.json() == missing.json() == {"error": {"code": "not_found", "message": "Practice clinic-b is not set up."}}
    in_scope = await api.post("/api/v1/alerts/task:clinic-a:none/snooze", json=body, headers=auth(A_OP))
    assert in_scope.status_code == 404 and in_scope.json()["error"]["message"] == "No alert task:clinic-a:none."
    r = await api.post("/api/v1/postings/changes", json={
        "practice_id": "clinic-a", "clear": [{"payment_id": "y-0", "reason": "posted by hand"}]})
    await wait_status(api, "clinic-a", "y-0", "CLEARED")

    async def resolved() -> str | None:
        alerts = (await api.get("/api/v1/alerts", params={"practice_id": "clinic-a"})).json()["items"]
        found = [a["alert_id"] for a in alerts if a["payment_id"] == "y-0" and a["kind"] == "task"
                 and a["state"] == "resolved"]
        return found[0] if found else None

    task = await wait_for(resolved)
    r = await api.post(f"/api/v1/alerts/{task}/snooze", json=body)
    assert r.status_code == 409 and r.json()["error"]["code"] == "alert_resolved"


# The export.

async def _insert_rows(paypost: Paypost, count: int, failed_every: int = 10) -> None:
    start = datetime(2026, 11, 25, tzinfo=UTC)
    docs = [{"_id": f"clinic-e/e-{i:06d}", "practice_id": "clinic-e", "payment_id": f"e-{i:06d}", "kind": "payment",
             "patient_account_id": f"acct-{i % 7}", "ehr_patient_id": None, "amount": Decimal(f"{i % 500}.5"),
             "currency": "USD", "method": "card", "merchant_transfer_id": "=HYPERLINK(1)" if i == 0 else None,
             "load_status": "FAILED" if i % failed_every == 0 else "LOADED",
             "load_error": {"code": "LEDGER_UNAVAILABLE", "message": "The ledger, \"kept\" failing.", "fix": "f"}
             if i % failed_every == 0 else None,
             "attempts_count": 1, "received_at": start + timedelta(seconds=i), "updated_at": start}
            for i in range(count)]
    await paypost.collections.postings.insert_many(docs)


async def _asgi_get(app: Any, path: str, query: str, token: str) -> tuple[int, dict[str, str], list[bytes]]:
    """A GET straight through the ASGI app, each body message kept as it was sent."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
             "headers": [(b"authorization", f"Bearer {token}".encode()), (b"host", b"paypost")],
             "client": ("127.0.0.1", 1), "server": ("paypost", 80)}
    sent: list[dict[str, Any]] = []
    requested, finished = False, asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await finished.wait()  # the client stays until the answer is complete
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            finished.set()

    await app(scope, receive, send)
    start = sent[0]
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, [m.get("body", b"") for m in sent[1:] if m.get("body")]


@pytest.mark.api_only
async def test_the_export_is_streamed_a_batch_at_a_time(paypost: Paypost) -> None:
    await _insert_rows(paypost, 3000)
    app = paypost.http_app(manage_lifecycle=False)
    status, headers, chunks = await _asgi_get(app, "/api/v1/postings.csv", "practice_id=clinic-e", OPERATOR)
    assert status == 200 and headers["content-type"].startswith("text/csv")
    # Written as the rows arrive: a header, then one chunk per 500 rows, none of them the whole report.
    assert len(chunks) == 1 + 3000 // 500
    assert max(len(c) for c in chunks) < sum(len(c) for c in chunks) / 4
    rows = list(csv.reader(io.StringIO(b"".join(chunks).decode())))
    assert rows[0][:6] == ["practice_id", "payment_id", "kind", "patient_account_id", "ehr_patient_id", "amount"]
    body = [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]
    assert len(body) == 3000
    assert body[0]["payment_id"] == "e-002999" and body[-1]["payment_id"] == "e-000000"  # newest first
    assert body[-1]["amount"] == "0.50" and body[0]["amount"] == "499.50"
    assert body[-1]["merchant_transfer_id"] == "'=HYPERLINK(1)"  # never a formula in a spreadsheet
    assert body[-1]["load_error_message"] == 'The ledger, "kept" failing.'
    assert datetime.fromisoformat(body[0]["received_at"]) == datetime(2026, 11, 25, 0, 49, 59, tzinfo=UTC)

    status, _, chunks = await _asgi_get(app, "/api/v1/postings.csv", "practice_id=clinic-e&status=FAILED", VIEWER)
    failed = list(csv.reader(io.StringIO(b"".join(chunks).decode())))[1:]
    assert status == 200 and len(failed) == 300 and {r[10] for r in failed} == {"FAILED"}


@pytest.mark.api_only
async def test_the_export_honours_the_scope_and_refuses_bad_filters(paypost: Paypost, api: httpx.AsyncClient) -> None:
    await _insert_rows(paypost, 20)
    r = await api.get("/api/v1/postings.csv", params={"practice_id": "clinic-e"}, headers=auth(A_OP))
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = await api.get("/api/v1/postings.csv", headers=auth(A_OP))
    assert r.status_code == 200 and r.text.count("\n") == 1  # the header alone: clinic-a has no posting
    r = await api.get("/api/v1/postings.csv", params={"status": "LOST"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    r = await api.get("/api/v1/postings.csv", headers={"Authorization": ""})
    assert r.status_code == 401


async def test_a_verdict_whose_process_stopped_is_carried_out_by_another(api: httpx.AsyncClient, paypost: Paypost,
                                                                          upstream: Upstream) -> None:
    ids = ["s-0", "s-1", "s-2"]
    await _unconfigured_failures(api, upstream, ids, {})
    long_ago = datetime.now(UTC) - timedelta(minutes=5)
    items = [OperationItem(p, "retry") for p in ids]
    canary = CanaryPlan(payment_ids=("s-0",), rest_retry=("s-1", "s-2"), rest_clear=(),
                        deadline=long_ago + timedelta(minutes=30))
    store = paypost.operation_store
    await store.create("op-stale", "clinic-n", "alice", items, long_ago, canary)
    # A process found the canary loaded, claimed "proceeding", and stopped before sending the rest.
    assert await store.claim_canary("op-stale", CanaryPhase.WAITING, CanaryPhase.PROCEEDING, None, long_ago)
    await paypost.canaries.advance()  # any other process's sweep (the fixture's runs one too)

    for p in ("s-1", "s-2"):
        await wait_status(api, "clinic-n", p, "LOADED")

    async def recorded() -> dict[str, Any] | None:  # the results are written once the command's retry returns
        shown: dict[str, Any] = (await api.get("/api/v1/operations/op-stale")).json()
        return shown if all(i["result"] for i in shown["items"] if i["payment_id"] != "s-0") else None

    shown = await wait_for(recorded)
    # The rest was sent once it was taken over; the canary itself never was (this test made it up).
    assert [(i["payment_id"], i["result"]) for i in shown["items"]] == [("s-0", None), ("s-1", "retried"),
                                                                        ("s-2", "retried")]
    assert shown["canary"]["state"] == "passed"
    assert await paypost.collections.operations.count_documents({"_id": "op-stale", "canary_undecided": True}) == 0
