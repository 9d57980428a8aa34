"""The fault suite's shared pieces: scenario sizes, the figures each scenario prints and the
accounting behind them, a practice written straight into the database, and a publisher that
survives a broker restart."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import Any, Self

import aio_pika
import orjson

from paypost.infra.mongo.database import Collections
from tests.support.ledgers import builtin_entries
from tests.support.waits import wait_for

# A practice's system served by the test process itself (the reference ledger) shares that process's
# event loop with paypost: on a loaded machine (CI's two cores, four test processes) its answers took
# over 2 s at times, paypost rightly took it for down, held the practice's payments, and a scenario
# about something else (the outbox, drops and 5xx) never began or never ended. Such a system has the
# time a loaded machine needs; what those scenarios test is not the timeout.
LOADED_MACHINE_TIMEOUT = 10


def scale(default: int) -> int:
    """Scenario sizes scale with PAYPOST_FAULT_SCALE (1.0 = the issue's sizes)."""
    return max(10, int(default * float(os.environ.get("PAYPOST_FAULT_SCALE", "1.0"))))


@dataclass
class Figures:
    scenario: str
    published: int = 0
    loaded: int = 0
    failed: int = 0
    cleared: int = 0
    pending: int = 0
    double_posts: int = 0
    lost: int = 0

    def line(self) -> str:
        return (f"[fault] {self.scenario}: published={self.published} loaded={self.loaded} failed={self.failed} "
                f"cleared={self.cleared} pending={self.pending} double_posts={self.double_posts} lost={self.lost}")


async def account(c: Collections, scenario: str, payment_ids: list[str], practice: str = "clinic-a",
                  ledger_entries: list[dict[str, Any]] | None = None) -> Figures:
    """Every published payment must be LOADED, FAILED or CLEARED; none may be posted twice."""
    figures = Figures(scenario, published=len(payment_ids))
    found = {d["payment_id"]: d["load_status"] async for d in c.postings.find(
        {"practice_id": practice, "payment_id": {"$in": payment_ids}}, {"payment_id": 1, "load_status": 1})}
    for pid in payment_ids:
        status = found.get(pid)
        if status is None:
            figures.lost += 1
        elif status == "LOADED":
            figures.loaded += 1
        elif status == "FAILED":
            figures.failed += 1
        elif status == "CLEARED":
            figures.cleared += 1
        else:
            figures.pending += 1
    if ledger_entries is None:
        ledger_entries = await builtin_entries(c, practice_id=practice, refund_id=None)
    per_payment: dict[str, int] = {}
    for entry in ledger_entries:
        per_payment[entry["payment_id"]] = per_payment.get(entry["payment_id"], 0) + 1
    figures.double_posts = sum(n - 1 for n in per_payment.values() if n > 1)
    # A LOADED posting without its entry, or an entry for a CLEARED posting, is money gone wrong.
    figures.lost += sum(1 for pid, s in found.items() if s == "LOADED" and pid not in per_payment)
    figures.double_posts += sum(1 for pid, s in found.items() if s == "CLEARED" and pid in per_payment)
    return figures


async def setup_practice(c: Collections, patients: int = 5) -> None:
    from datetime import UTC, datetime

    await c.practices.update_one({"_id": "clinic-a"}, {"$set": {"name": "A", "ledger": {"kind": "builtin"},
                                                                "enabled": True}}, upsert=True)
    for i in range(patients):
        await c.ehr_patients.update_one({"_id": f"clinic-a/EHR-{i}"},
                                        {"$setOnInsert": {"practice_id": "clinic-a", "ehr_patient_id": f"EHR-{i}",
                                                          "registered_at": datetime.now(UTC)}}, upsert=True)


class Flow:
    """An upstream publisher that survives a broker restart: a payment counts as published only
    once the broker confirmed it, and is published again when the connection drops first."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.connection: aio_pika.abc.AbstractRobustConnection | None = None
        self.channel: aio_pika.abc.AbstractChannel | None = None

    async def __aenter__(self) -> Self:
        self.connection = await aio_pika.connect_robust(self.url)
        self.channel = await self.connection.channel(publisher_confirms=True)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.connection is not None
        await self.connection.close()

    async def publish(self, body: dict[str, object], routing_key: str = "payment.posted") -> None:
        for attempt in range(200):
            try:
                assert self.channel is not None
                exchange = await self.channel.get_exchange("paypost.payments", ensure=False)
                await exchange.publish(aio_pika.Message(orjson.dumps(body), message_id=str(body["event_id"]),
                                                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                                       routing_key=routing_key)
                return
            except Exception:  # noqa: BLE001 - the broker is restarting: try again
                await asyncio.sleep(min(0.1 * (attempt + 1), 1.0))
        raise RuntimeError("could not publish for 100 s")

    async def paced(self, bodies: list[dict[str, object]], rate: float) -> None:
        started = time.perf_counter()
        for i, body in enumerate(bodies):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.publish(body)


async def until_final(c: Collections, ids: list[str], timeout: float) -> None:
    """Until every payment of ``ids`` is LOADED, FAILED or CLEARED; past ``timeout``, fail saying
    where the rest are (how many in each status, how many not written at all)."""
    async def done() -> bool:
        return await c.postings.count_documents(
            {"payment_id": {"$in": ids}, "load_status": {"$in": ["LOADED", "FAILED", "CLEARED"]}}) == len(ids)

    try:
        await wait_for(done, timeout=timeout, interval=0.5)
    except AssertionError:
        statuses = {row["_id"]: row["n"] async for row in await c.postings.aggregate([
            {"$match": {"payment_id": {"$in": ids}}}, {"$group": {"_id": "$load_status", "n": {"$sum": 1}}}])}
        unwritten = len(ids) - sum(statuses.values())
        raise AssertionError(f"{len(ids)} payments not all final within {timeout:g} s: by status {statuses}, "
                             f"{unwritten} not written") from None
