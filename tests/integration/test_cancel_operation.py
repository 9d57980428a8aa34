"""A running Save Changes stopped (issue 30): POST /operations/{id}/cancel. The worker replaying it
reads the cancel in MongoDB between chunks; what it has not replayed stays FAILED, and the operation
ends ``cancelled`` with its counts."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from paypost.bootstrap import Paypost
from paypost.infra.runtime.settings import Settings
from tests.integration.test_heal_cut_short import fail_for_want_of_a_mapping
from tests.support.tokens import VIEWER
from tests.support.upstream import Upstream
from tests.support.waits import wait_for

N = 1_500  # three commands of 500, each replayed in one chunk
SLOW = 150.0  # replays a second: about ten seconds for the whole retry


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"replay_rate": SLOW})


async def test_a_running_retry_is_cancelled_and_the_rest_stays_failed(
    paypost: Paypost, api: httpx.AsyncClient, upstream: Upstream, practice: str,
) -> None:
    c = paypost.collections
    ids = await fail_for_want_of_a_mapping(upstream, c, N)
    r = await api.post("/api/v1/postings/changes", json={"practice_id": practice, "retry": ids})
    assert r.status_code == 202, r.text
    operation_id = r.json()["operation_id"]

    async def replaying() -> bool:  # the worker is in its first chunk
        return await c.postings.count_documents({"payment_id": {"$in": ids}, "load_status": {"$ne": "FAILED"}}) > 0

    await wait_for(replaying, timeout=30, interval=0.1)
    viewer = await api.post(f"/api/v1/operations/{operation_id}/cancel", headers={"Authorization": f"Bearer {VIEWER}"})
    assert viewer.status_code == 403, viewer.text  # an operator's
    cancelled = await api.post(f"/api/v1/operations/{operation_id}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["cancelled_by"] == "alice" and cancelled.json()["cancelled_at"]

    async def ended() -> bool:
        status: str = (await api.get(f"/api/v1/operations/{operation_id}")).json()["status"]
        return status == "cancelled"

    await wait_for(ended, timeout=60, interval=0.2)
    op = (await api.get(f"/api/v1/operations/{operation_id}")).json()
    results = [i["result"] for i in op["items"]]
    stopped = [i["payment_id"] for i in op["items"] if i["result"] == "cancelled"]
    assert op["total"] == op["done"] == N and None not in results
    assert 0 < op["cancelled"] == len(stopped) < N  # some replayed, the rest stopped
    assert results.count("retried") == N - len(stopped)
    await asyncio.sleep(1)  # a replay sent after the cancel, if there were one, would have landed
    still = await c.postings.count_documents({"payment_id": {"$in": stopped}, "load_status": "FAILED"})
    assert still == len(stopped)  # never replayed: still FAILED, to retry again later

    again = await api.post(f"/api/v1/operations/{operation_id}/cancel")
    assert again.status_code == 409 and "cancelled" in again.json()["error"]["message"]
    missing = await api.post("/api/v1/operations/no-such-op/cancel")
    assert missing.status_code == 404
