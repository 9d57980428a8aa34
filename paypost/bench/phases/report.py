"""5. The report at scale: synthetic postings stored in bulk, then the report's filtered pages and
a transfer's reconciliation timed through the HTTP API."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import orjson

from paypost.bench.load import PRACTICE, Publisher
from paypost.bench.rendering import percentile
from paypost.bench.rig import Rig
from paypost.infra.mongo.database import Collections, Doc
from paypost.infra.mongo.failure_groups import error_from, group_fields


async def measure(rig: Rig, rows: int) -> None:
    rig.log(f"report: {rows:,} postings stored")
    await fill_postings(rig.c, rows)
    await seed_transfer(rig.http, rig.publisher, rig.c)
    report = await time_report(rig.http)
    rig.results.add("report p95 (filtered, paged)", percentile(report["postings"], 95), "ms", "report_p95_ms",
                    f"{rows:,} postings; target <= 50 ms")
    rig.results.add("transfer reconciliation p95", percentile(report["transfer"], 95), "ms",
                    "reconciliation_p95_ms", "a transfer of 500 payments")


async def fill_postings(c: Collections, n: int) -> None:
    """Synthetic report rows, shaped as paypost writes them, inserted in bulk."""
    statuses = ["LOADED"] * 90 + ["FAILED"] * 6 + ["CLEARED"] * 3 + ["PENDING"]
    codes = ["PATIENT_NOT_MAPPED", "PATIENT_NOT_FOUND", "LEDGER_REJECTED"]
    now = datetime.now(UTC)
    batch: list[Doc] = []
    for i in range(n):
        status = statuses[i % len(statuses)]
        practice = f"clinic-{i % 50}"
        error = {"code": codes[i % 3], "message": "m", "fix": "f"} if status == "FAILED" else None
        account = f"acct-{i % 5000}"
        batch.append({
            "_id": f"{practice}/s-{i}", "practice_id": practice, "payment_id": f"s-{i}", "kind": "payment",
            "patient_account_id": account, "event_ehr_patient_id": None, "ehr_patient_id": "EHR-1",
            "amount": Decimal("10.00"), "currency": "USD", "method": "card",
            "merchant_transfer_id": f"MT-{i // 400}", "event_id": f"e-{i}",
            "load_status": status, "load_error": error, "attempts_count": 1, "attempts": [], "audit": [],
            "received_at": now - timedelta(seconds=n - i), "updated_at": now, "replays": 0, "dead_letters": [],
            # A FAILED row's failure group, as paypost writes it with the failure.
            **group_fields(practice, error_from(error), account, None, now),
        })
        if len(batch) == 10_000:
            await c.postings.insert_many(batch, ordered=False)
            batch = []
    if batch:
        await c.postings.insert_many(batch, ordered=False)


async def seed_transfer(http: httpx.AsyncClient, publisher: Publisher, c: Collections) -> None:
    ids = [f"p-{i}" for i in range(500)]
    docs = c.postings.find({"payment_id": {"$in": ids}, "practice_id": PRACTICE}, {"amount": 1})
    gross = sum([d["amount"] async for d in docs], Decimal(0))
    body = {"event_id": str(uuid.uuid4()), "practice_id": PRACTICE, "merchant_transfer_id": "MT-bench-500",
            "payment_ids": ids, "refund_ids": [], "gross_amount": f"{gross:.2f}", "fees_amount": "10.00",
            "net_amount": f"{gross - 10:.2f}", "currency": "USD", "settled_at": datetime.now(UTC).isoformat()}
    await publisher.one("t-500", orjson.dumps(body), routing_key="transfer.settled")
    for _ in range(200):
        if (await http.get(f"/api/v1/transfers/{PRACTICE}/MT-bench-500")).status_code == 200:
            return
        await asyncio.sleep(0.05)


async def time_report(http: httpx.AsyncClient, rounds: int = 60) -> dict[str, list[float]]:
    queries = [
        {"practice_id": "clinic-7", "limit": 50},
        {"practice_id": "clinic-7", "status": "FAILED", "limit": 50},
        {"practice_id": "clinic-8", "error_code": "PATIENT_NOT_FOUND", "limit": 100},
        {"practice_id": "clinic-9", "merchant_transfer_id": "MT-109", "limit": 50},
        {"status": "FAILED", "limit": 50},
    ]
    timings: dict[str, list[float]] = {"postings": [], "transfer": []}
    for i in range(rounds):
        params: dict[str, Any] = dict(queries[i % len(queries)])
        started = time.perf_counter()
        page = (await http.get("/api/v1/postings", params=params)).json()
        timings["postings"].append((time.perf_counter() - started) * 1000)
        if page.get("next_cursor"):  # the next page too: paging must stay fast deep in the report
            started = time.perf_counter()
            (await http.get("/api/v1/postings", params={**params, "cursor": page["next_cursor"]})).raise_for_status()
            timings["postings"].append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        (await http.get(f"/api/v1/transfers/{PRACTICE}/MT-bench-500")).raise_for_status()
        timings["transfer"].append((time.perf_counter() - started) * 1000)
    return timings
