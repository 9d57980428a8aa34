"""Failure groups at scale: the report reads the FAILED postings only, whatever the rest.

Prints the call's latency (a measurement, not a timed assert: this machine is shared); what it
asserts is what makes it fast, that the aggregation examines the FAILED postings alone. The size
is PAYPOST_SCALE_POSTINGS (default 200,000, of which one in 40 is FAILED).
"""

from __future__ import annotations

import os
import statistics
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from paypost.bootstrap import Paypost
from paypost.domain.access import EVERY
from paypost.infra.mongo.failure_groups import (
    GROUP_INDEX,
    WITHOUT_A_GROUP,
    MongoFailureGroups,
    error_from,
    group_fields,
    groups_pipeline,
)

pytestmark = pytest.mark.integration

TOTAL = int(os.environ.get("PAYPOST_SCALE_POSTINGS", "200000"))
FAILED_EVERY = 40  # 200,000 postings: 5,000 FAILED
GROUPS = 50


def _doc(i: int, start: datetime) -> dict[str, Any]:
    failed = i % FAILED_EVERY == 0
    doc: dict[str, Any] = {
        "_id": f"clinic-s/s-{i:07d}", "practice_id": "clinic-s", "payment_id": f"s-{i:07d}", "kind": "payment",
        "patient_account_id": f"acct-{i % 997}", "amount": Decimal("10.00"), "currency": "USD", "method": "card",
        "load_status": "FAILED" if failed else "LOADED", "attempts_count": 1,
        "received_at": start + timedelta(milliseconds=i), "updated_at": start}
    if failed:
        group = i // FAILED_EVERY % GROUPS
        doc.update(load_error={"code": "PATIENT_NOT_MAPPED", "message": "m", "fix": "f"},
                   group_id=f"g{group:015d}", group_cause=f"acct-{group}", failed_at=start)
    return doc


def _examined(explain: Any) -> list[int]:
    """Every totalDocsExamined in an explain output, wherever the server put it."""
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
async def test_failure_groups_read_only_the_failed_postings(paypost: Paypost, api: httpx.AsyncClient) -> None:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    began = time.perf_counter()
    for offset in range(0, TOTAL, 10_000):
        await paypost.collections.postings.insert_many(
            [_doc(i, start) for i in range(offset, min(offset + 10_000, TOTAL))], ordered=False)
    loaded_in = time.perf_counter() - began
    failed = len(range(0, TOTAL, FAILED_EVERY))

    timings = []
    r: httpx.Response | None = None
    for _ in range(7):
        began = time.perf_counter()
        r = await api.get("/api/v1/failure-groups", params={"practice_id": "clinic-s"})
        timings.append((time.perf_counter() - began) * 1000)
        assert r.status_code == 200, r.text
    assert r is not None
    items = r.json()["items"]
    assert len(items) == GROUPS and sum(g["count"] for g in items) == failed

    explain = await paypost.collections.db.command({
        "explain": {"aggregate": "postings", "pipeline": groups_pipeline("clinic-s", EVERY), "cursor": {},
                    "hint": GROUP_INDEX},
        "verbosity": "executionStats"})
    examined = _examined(explain)
    measured = (f"\nfailure groups: {TOTAL:,} postings ({failed:,} FAILED, {GROUPS} groups), "
                f"inserted in {loaded_in:.1f} s; GET /failure-groups median {statistics.median(timings):.1f} ms, "
                f"max {max(timings):.1f} ms "
                f"over {len(timings)} calls; documents examined {examined}")
    print(measured)  # noqa: T201 - the measurement is the point of this test: it is shown, not asserted
    assert examined and max(examined) == failed  # the FAILED postings, none of the others

    # The console's counts per Load Status beside them: every posting of the practice (no span given).
    timings = []
    for _ in range(3):
        began = time.perf_counter()
        r = await api.get("/api/v1/postings/summary", params={"practice_id": "clinic-s"})
        timings.append((time.perf_counter() - began) * 1000)
    assert r.json()["statuses"]["FAILED"]["count"] == failed and r.json()["total"]["count"] == TOTAL
    print(f"summary: GET /postings/summary of {TOTAL:,} postings median {statistics.median(timings):.1f} ms")  # noqa: T201 - shown, not asserted


@pytest.mark.api_only
async def test_a_start_groups_the_failed_postings_without_a_group_and_reads_no_other(paypost: Paypost) -> None:
    """FAILED postings of an earlier version (no group) get theirs at start, each as paypost groups a
    failure; a start finds them through the group index, fetching no posting that has its group."""
    start = datetime(2026, 11, 1, tzinfo=UTC)
    grouped = [_doc(i, start) for i in range(4_000)]  # a hundred FAILED among them, grouped
    earlier = []
    for i in range(4_000, 4_000 + 3 * FAILED_EVERY, FAILED_EVERY):  # three FAILED as an earlier version wrote them
        doc = _doc(i, start)
        for field in ("group_id", "group_cause", "failed_at"):
            del doc[field]
        earlier.append(doc)
    await paypost.collections.postings.insert_many([*grouped, *earlier])
    store = MongoFailureGroups(paypost.collections)

    explain = await paypost.collections.db.command({
        "explain": {"find": "postings", "filter": {"load_status": "FAILED", **WITHOUT_A_GROUP},
                    "hint": GROUP_INDEX},
        "verbosity": "executionStats"})
    assert _examined(explain) == [len(earlier)]  # only those without a group are read
    assert await store.backfill(batch=2) == len(earlier)

    for doc in earlier:
        row = await paypost.collections.postings.find_one({"_id": doc["_id"]})
        assert row is not None
        assert {k: row[k] for k in ("group_id", "group_cause", "failed_at")} == group_fields(
            "clinic-s", error_from(doc["load_error"]), doc["patient_account_id"], None, start)
    assert await store.backfill() == 0  # once
