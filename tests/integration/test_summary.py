"""GET /postings/summary: count and amount per Load Status for a practice and a span of days,
scoped as the report is, read through the report's practice and received-at index."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from paypost.bootstrap import Paypost
from paypost.domain.ports.postings import PostingFilter
from paypost.infra.mongo.reports import summary_pipeline
from paypost.infra.runtime.settings import Settings
from tests.support.api_calls import wait_status
from tests.support.tokens import TOKENS, VIEWER
from tests.support.upstream import Upstream

pytestmark = pytest.mark.integration

A_VIEW = "a-view-token"  # a viewer of clinic-a only
DAY = datetime(2026, 11, 2, tzinfo=UTC)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"api_tokens": f"{TOKENS},{A_VIEW}:viewer:ann:clinic-a"})


def _doc(practice_id: str, n: int, status: str, amount: str, at: datetime) -> dict[str, Any]:
    return {"_id": f"{practice_id}/p-{n}", "practice_id": practice_id, "payment_id": f"p-{n}", "kind": "payment",
            "patient_account_id": "acct-1", "amount": Decimal(amount), "currency": "USD", "method": "card",
            "load_status": status, "attempts_count": 1, "received_at": at, "updated_at": at}


@pytest.fixture
async def postings(paypost: Paypost) -> None:
    """clinic-a: on DAY, 2 LOADED (10 + 20.50), 3 FAILED (5 each), 1 HELD (7), 1 CLEARED (1.25);
    the day before, 1 LOADED (1000); clinic-b: on DAY, 4 FAILED (100 each)."""
    docs = [_doc("clinic-a", 1, "LOADED", "10.00", DAY), _doc("clinic-a", 2, "LOADED", "20.50", DAY),
            *[_doc("clinic-a", 10 + i, "FAILED", "5.00", DAY + timedelta(hours=i)) for i in range(3)],
            _doc("clinic-a", 20, "HELD", "7.00", DAY), _doc("clinic-a", 21, "CLEARED", "1.25", DAY),
            _doc("clinic-a", 30, "LOADED", "1000.00", DAY - timedelta(hours=1)),
            *[_doc("clinic-b", 40 + i, "FAILED", "100.00", DAY) for i in range(4)]]
    await paypost.collections.postings.insert_many(docs)


def _day(**params: str) -> dict[str, str]:
    return {"received_from": DAY.isoformat(), "received_to": (DAY + timedelta(days=1)).isoformat(), **params}


@pytest.mark.api_only
async def test_counts_and_amounts_per_load_status_for_a_practice_and_a_day(api: httpx.AsyncClient,
                                                                          postings: None) -> None:
    r = await api.get("/api/v1/postings/summary", params=_day(practice_id="clinic-a"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["statuses"] == {
        "PENDING": {"count": 0, "amount": "0.00"}, "LOADED": {"count": 2, "amount": "30.50"},
        "FAILED": {"count": 3, "amount": "15.00"}, "RETRYING": {"count": 0, "amount": "0.00"},
        "CLEARED": {"count": 1, "amount": "1.25"}, "HELD": {"count": 1, "amount": "7.00"}}
    assert body["total"] == {"count": 7, "amount": "53.75"}
    assert body["practice_id"] == "clinic-a"

    whole = (await api.get("/api/v1/postings/summary", params={"practice_id": "clinic-a"})).json()
    assert whole["statuses"]["LOADED"] == {"count": 3, "amount": "1030.50"}  # the day before counts too


@pytest.mark.api_only
async def test_the_summary_is_scoped_as_the_report(api: httpx.AsyncClient, postings: None) -> None:
    viewer = {"Authorization": f"Bearer {A_VIEW}"}
    mine = (await api.get("/api/v1/postings/summary", params=_day(), headers=viewer)).json()
    assert mine["statuses"]["FAILED"] == {"count": 3, "amount": "15.00"}  # none of clinic-b's
    everyone = (await api.get("/api/v1/postings/summary", params=_day(),
                              headers={"Authorization": f"Bearer {VIEWER}"})).json()
    assert everyone["statuses"]["FAILED"] == {"count": 7, "amount": "415.00"}

    other = await api.get("/api/v1/postings/summary", params=_day(practice_id="clinic-b"), headers=viewer)
    missing = await api.get("/api/v1/postings/summary", params=_day(practice_id="clinic-zz"), headers=viewer)
    assert other.status_code == 404
    assert other.json() == {"error": {**missing.json()["error"],
                                      "message": missing.json()["error"]["message"].replace("clinic-zz", "clinic-b")}}
    assert (await api.get("/api/v1/postings/summary", headers={"Authorization": ""})).status_code == 401


def _stages(explain: Any) -> list[str]:
    """Every plan stage named in an explain output, wherever the server put it."""
    found: list[str] = []
    if isinstance(explain, dict):
        for key, value in explain.items():
            if key == "stage" and isinstance(value, str):
                found.append(value)
            else:
                found += _stages(value)
    elif isinstance(explain, list):
        for value in explain:
            found += _stages(value)
    return found


def _examined(explain: Any) -> list[int]:
    found: list[int] = []
    if isinstance(explain, dict):
        for key, value in explain.items():
            if key == "totalDocsExamined":
                found.append(int(value))
            else:
                found += _examined(value)
    elif isinstance(explain, list):
        for value in explain:
            found += _examined(value)
    return found


@pytest.mark.api_only
async def test_the_summary_reads_only_the_practices_postings_of_the_span(paypost: Paypost, postings: None) -> None:
    where = PostingFilter(practice_id="clinic-a", received_from=DAY, received_to=DAY + timedelta(days=1))
    explain = await paypost.collections.db.command({
        "explain": {"aggregate": "postings", "pipeline": summary_pipeline(where), "cursor": {}},
        "verbosity": "executionStats"})
    stages = _stages(explain)
    assert "IXSCAN" in stages and "COLLSCAN" not in stages
    assert max(_examined(explain)) == 7  # clinic-a's postings of that day, none of the others


async def test_a_payment_published_shows_in_its_status_count(api: httpx.AsyncClient, upstream: Upstream,
                                                            practice: str) -> None:
    loaded = await upstream.payment(amount="60.00")
    failed = await upstream.payment(ehr_patient_id=None, patient_account_id="acct-sum", amount="45.00")
    await wait_status(api, practice, loaded["payment_id"], "LOADED")
    await wait_status(api, practice, failed["payment_id"], "FAILED")
    body = (await api.get("/api/v1/postings/summary", params={"practice_id": practice})).json()
    assert body["statuses"]["LOADED"] == {"count": 1, "amount": "60.00"}
    assert body["statuses"]["FAILED"] == {"count": 1, "amount": "45.00"}
    assert body["total"]["count"] == 2
