"""What paypost wrote, read back by the bench: when enough postings reached a status, and when
each payment's outcome was written."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from paypost.bench.load import PRACTICE
from paypost.infra.mongo.audit_seals import AuditSealer
from paypost.infra.mongo.database import Collections


async def wait_count(c: Collections, query: dict[str, Any], n: int, within: float = 600,
                     tail: list[str] | None = None) -> float:
    """When ``n`` postings match ``query``. Counting is not free for the database being measured,
    so while the ``tail`` (the payment ids published last) has not reached the status, only those
    are looked up by _id; the count starts once they have."""
    deadline = time.perf_counter() + within
    if tail:
        ids = [f"{PRACTICE}/{pid}" for pid in tail]
        status = query.get("load_status")
        while time.perf_counter() < deadline:
            if await c.postings.count_documents({"_id": {"$in": ids}, "load_status": status}) == len(ids):
                break
            await asyncio.sleep(0.02)
    while time.perf_counter() < deadline:
        if await c.postings.count_documents(query) >= n:
            return time.perf_counter()
        await asyncio.sleep(0.25 if tail else 0.1)
    raise TimeoutError(f"only {await c.postings.count_documents(query)} of {n} reached {query}")


async def spans(c: Collections, sent: dict[str, float], wall_offset: float) -> dict[str, tuple[float, float]]:
    """(published, LOADED written) per payment, on the bench's clock (same machine, same clock)."""
    out = {}
    async for doc in c.postings.find({"payment_id": {"$in": list(sent)}}, {"payment_id": 1, "updated_at": 1}):
        out[doc["payment_id"]] = (sent[doc["payment_id"]], doc["updated_at"].timestamp() - wall_offset)
    return out


async def latencies(c: Collections, sent: dict[str, float], wall_offset: float) -> list[float]:
    """ms from publish to the durable LOADED write, per payment."""
    return [(done - published) * 1000 for published, done in (await spans(c, sent, wall_offset)).values()]


async def settled(c: Collections, at_most: float = 60.0) -> None:
    """Wait until the work the phases before left is done (the audit sealer has caught up), so that
    this phase's CPU is its own payments', not the tail of a burst."""
    deadline = time.monotonic() + at_most
    while time.monotonic() < deadline:
        if not await AuditSealer(c).waiting():
            break
        await asyncio.sleep(0.5)  # the sealer's next round
    await asyncio.sleep(2.0)  # a last sealing round, the sweeps after it
