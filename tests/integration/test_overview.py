"""The overview of a key's practices (issue 30): every practice in scope with its FAILED payments
(count, amount, oldest), its system's hold and its open alerts, most failures first, paged; one
aggregation served by the FAILED postings' partial index (the failure groups')."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from paypost.bootstrap import Paypost
from paypost.domain.access import EVERY, Scope
from paypost.infra.mongo.failure_groups import OVERVIEW_INDEX, overview_pipeline
from paypost.infra.runtime.settings import Settings
from tests.support.api_calls import wait_status
from tests.support.upstream import Upstream

pytestmark = pytest.mark.integration

SCOPED = "scoped-token"  # a viewer of clinic-a and clinic-b


@pytest.fixture
def settings(settings: Settings) -> Settings:
    tokens = settings.api_tokens.get_secret_value() if settings.api_tokens else ""
    return settings.model_copy(update={"api_tokens": f"{tokens},{SCOPED}:viewer:sam:clinic-a|clinic-b"})


async def practice(api: httpx.AsyncClient, practice_id: str) -> None:
    r = await api.put(f"/api/v1/practices/{practice_id}", json={
        "name": f"Clinic {practice_id[-1].upper()}", "ledger": {"kind": "builtin"}, "enabled": True})
    assert r.status_code == 200, r.text


async def fail(api: httpx.AsyncClient, upstream: Upstream, practice_id: str, amount: str) -> str:
    body = await upstream.payment(practice_id=practice_id, ehr_patient_id=None, patient_account_id="acct-ov",
                                  amount=amount)
    await wait_status(api, practice_id, body["payment_id"], "FAILED")
    return str(body["payment_id"])


async def test_every_practice_in_scope_most_failures_first_with_hold_and_alerts(
    api: httpx.AsyncClient, upstream: Upstream,
) -> None:
    for practice_id in ("clinic-a", "clinic-b", "clinic-c", "clinic-d"):
        await practice(api, practice_id)
    await fail(api, upstream, "clinic-b", "10.00")
    await fail(api, upstream, "clinic-b", "5.50")
    await fail(api, upstream, "clinic-c", "99.00")
    r = await api.post("/api/v1/practices/clinic-d/hold", json={"reason": "upgrade"})
    assert r.status_code == 200, r.text

    r = await api.get("/api/v1/overview")
    assert r.status_code == 200, r.text
    page = r.json()
    assert [p["practice_id"] for p in page["items"]] == ["clinic-b", "clinic-c", "clinic-a", "clinic-d"]
    assert page["total"] == 4 and page["next_cursor"] is None
    b = page["items"][0]
    assert b["name"] == "Clinic B" and b["enabled"] is True and b["hold"] is None
    assert b["failed"]["count"] == 2 and b["failed"]["amount"] == "15.50"
    assert b["failed"]["oldest_failed_at"] is not None
    assert b["open_alerts"] >= 2  # an office task per failed payment (and the account's flag)
    a, d = page["items"][2], page["items"][3]
    assert a["failed"] == {"count": 0, "amount": "0.00", "oldest_failed_at": None} and a["open_alerts"] == 0
    assert d["hold"] == "held"

    # Paged: the cursor goes on where the page ended, in the same order.
    first = (await api.get("/api/v1/overview", params={"limit": 3})).json()
    rest = (await api.get("/api/v1/overview", params={"limit": 3, "cursor": first["next_cursor"]})).json()
    assert [p["practice_id"] for p in first["items"] + rest["items"]] == \
        ["clinic-b", "clinic-c", "clinic-a", "clinic-d"]
    assert rest["next_cursor"] is None
    r = await api.get("/api/v1/overview", params={"cursor": "not-ours"})
    assert r.status_code == 400

    # A key for two practices sees those two only, whatever the others hold.
    r = await api.get("/api/v1/overview", headers={"Authorization": f"Bearer {SCOPED}"})
    assert [p["practice_id"] for p in r.json()["items"]] == ["clinic-b", "clinic-a"]
    assert r.json()["total"] == 2


async def test_the_aggregation_reads_the_failed_postings_through_their_partial_index(paypost: Paypost) -> None:
    c = paypost.collections
    for scope in (EVERY, Scope.of(["clinic-a", "clinic-b"])):
        pipeline = overview_pipeline(scope, 50, 0, c.practices.name, c.outages.name, c.alerts.name)
        plan: dict[str, Any] = await c.postings.database.command(
            "explain", {"aggregate": c.postings.name, "pipeline": pipeline, "cursor": {}, "hint": OVERVIEW_INDEX},
            verbosity="queryPlanner")
        text = str(plan)
        assert OVERVIEW_INDEX in text and "COLLSCAN" not in text.split("$unionWith")[0]
        scan = plan["stages"][0]["$cursor"]["queryPlanner"]["winningPlan"]["queryPlan"]["inputStage"]["inputStage"]
        assert scan["stage"] == "IXSCAN" and scan["isPartial"] is True  # only FAILED postings are read
