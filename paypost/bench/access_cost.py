"""What the access trail (contract section 12) costs a read: ``GET /postings`` timed with the trail
recording every answer, and with it off, against a real MongoDB (a temporary replica-set mongod)
and RabbitMQ (a vhost of its own on the local broker).

    python -m paypost.bench.access_cost [--postings 20000] [--requests 2000] [--concurrency 8]

The app is called in-process (httpx's ASGI transport): no socket in the timing, so the figures are
what the route itself costs. The two modes alternate in blocks of 100 requests so that both see the
same database caches; the trail's writer flushes in the background meanwhile, as in production.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
from pydantic import SecretStr

from paypost.domain.access_trail import AccessEntry, AccessQuery
from paypost.domain.model import LoadStatus, PostingKind
from paypost.domain.posting import AuditEntry, KeptMessage, Posting, PostingKey
from paypost.handlers.access_trail import AccessTrail


class _Discard:
    """An access trail that records nothing: the "without" of the comparison."""

    def record(self, entry: AccessEntry) -> None:
        return None

    async def page(self, query: AccessQuery, scope: object, limit: int,
                   cursor: str | None) -> tuple[list[dict[str, object]], str | None]:
        return [], None


async def _fill(paypost: object, postings: int) -> None:
    from paypost.bootstrap import Paypost
    from paypost.infra.mongo.postings import new_doc

    assert isinstance(paypost, Paypost)
    now = datetime.now(UTC)
    batch = []
    for n in range(postings):
        at = now - timedelta(seconds=n)
        posting = Posting(key=PostingKey("clinic-a", f"pay-{n:07d}"), kind=PostingKind.PAYMENT,
                          load_status=LoadStatus.LOADED, event_id=f"e-{n}", received_at=at,
                          patient_account_id=f"acct-{n % 5000}", amount=Decimal("125.00"), currency="USD",
                          method="card")
        batch.append(new_doc(posting, KeptMessage(b"{}", "payment.posted", None, {}),
                             [AuditEntry(at, "paypost", "received"), AuditEntry(at, "paypost", "loaded")],
                             LoadStatus.LOADED))
        if len(batch) == 1000:
            await paypost.collections.postings.insert_many(batch)
            batch = []
    if batch:
        await paypost.collections.postings.insert_many(batch)


async def _timed(client: httpx.AsyncClient, requests: int, concurrency: int) -> list[float]:
    times: list[float] = []
    queue = iter(range(requests))

    async def worker() -> None:
        for _ in queue:
            started = time.perf_counter()
            r = await client.get("/api/v1/postings", params={"practice_id": "clinic-a", "limit": 50})
            times.append((time.perf_counter() - started) * 1000)
            assert r.status_code == 200, r.text

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return times


def _p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


async def measure(mongodb_uri: str, amqp_url: str, postings: int, requests: int, concurrency: int) -> dict[str, float]:
    from paypost.api.app import create_app
    from paypost.bootstrap import Paypost
    from paypost.infra.rabbit.asyncapi import asyncapi_text
    from paypost.infra.runtime.settings import Settings

    settings = Settings(amqp_url=amqp_url, mongodb_uri=mongodb_uri, mongodb_db=f"bench_{uuid.uuid4().hex[:8]}",
                        api_tokens=SecretStr("bench-token:operator:bench"), audit_sealer="inline", log_level="WARNING")
    paypost = Paypost(settings)
    await paypost.start(consume=False)  # indexes, and the access trail's writer
    try:
        await _fill(paypost, postings)
        apps = {"with": create_app(paypost.application, asyncapi_text),
                "without": create_app(replace(paypost.application, access=AccessTrail(_Discard())), asyncapi_text)}
        clients = {mode: httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://paypost",
                                           headers={"Authorization": "Bearer bench-token"})
                   for mode, app in apps.items()}
        times: dict[str, list[float]] = {"with": [], "without": []}
        for client in clients.values():
            await _timed(client, 50, concurrency)  # warm-up
        for _ in range(max(1, requests // 100)):
            for mode, client in clients.items():
                times[mode] += await _timed(client, 100, concurrency)
        for client in clients.values():
            await client.aclose()
        await paypost.access_log.flush()
        written = await paypost.collections.db.get_collection("access_log").count_documents({})
    finally:
        await paypost.stop()
    figures = {f"{mode}_{q}": round(_p(values, q), 2) for mode, values in times.items() for q in (50, 95, 99)}
    # Every "with" call (the warm-up's 50 too) wrote its entry; the "without" calls none.
    return {**figures, "requests_each": float(len(times["with"])), "access_entries_written": float(written)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--postings", type=int, default=20000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    from paypost.infra.runtime.logging import configure_logging
    from paypost.local.servers import temporary_mongod, temporary_vhost

    configure_logging("WARNING", "console")  # a line per call would be timed too

    with temporary_mongod("pp-access-bench-") as mongodb_uri, temporary_vhost("pp-access-bench") as vhost:
        figures = asyncio.run(measure(mongodb_uri, f"amqp://guest:guest@127.0.0.1:5672/{vhost}", args.postings,
                                      args.requests, args.concurrency))
    for name, value in figures.items():
        print(f"{name}: {value}")  # noqa: T201 - the figures are the output


if __name__ == "__main__":
    main()
