"""What the first screen of a key with many practices costs (issue 30): ``GET /overview`` timed with
2,000 practices in scope, against a real MongoDB (a temporary replica-set mongod) and RabbitMQ (a vhost
of its own on the local broker).

    python -m paypost.bench.overview [--practices 2000] [--failed 20000] [--loaded 100000] [--requests 300]

Each practice is set up; ``--failed`` FAILED postings are spread over them unevenly (a few practices
hold most), each with its office task open, ``--loaded`` LOADED postings beside them, and one practice
in ten is held. Two keys are timed: one for every practice (``*``) and one that lists the 2,000
practices by id. The app is called in-process (httpx's ASGI transport): no socket in the timing.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
from pydantic import SecretStr

from paypost.domain.model import LoadStatus, PostingKind
from paypost.domain.posting import AuditEntry, KeptMessage, Posting, PostingKey


def _practice(n: int) -> str:
    return f"clinic-{n:05d}"


async def _fill(paypost: object, practices: int, failed: int, loaded: int) -> None:
    from paypost.bootstrap import Paypost
    from paypost.infra.mongo.postings import new_doc

    assert isinstance(paypost, Paypost)
    c = paypost.collections
    now = datetime.now(UTC)
    await c.practices.insert_many([{"_id": _practice(n), "name": f"Clinic {n}", "enabled": True,
                                    "ledger": {"kind": "builtin"}, "created_at": now, "updated_at": now}
                                   for n in range(practices)])
    await c.outages.insert_many([{"_id": _practice(n), "health": "held", "held_since": now, "reason": "bench",
                                  "held_by": "bench", "tries": 0} for n in range(0, practices, 10)])

    async def write(count: int, status: LoadStatus, spread: int) -> None:
        batch, alerts = [], []
        for i in range(count):
            # Uneven: practice n gets about 1/(n+1) of them (a few practices hold most).
            n = int(practices ** (i / max(count, 1)) - 1) % practices if spread else i % practices
            at = now - timedelta(seconds=i)
            key = PostingKey(_practice(n), f"{status.value[:1]}-{i:07d}")
            posting = Posting(key=key, kind=PostingKind.PAYMENT, load_status=status, event_id=f"e-{status}-{i}",
                              received_at=at, patient_account_id=f"bench-{i % 5000}", amount=Decimal("125.00"),
                              currency="USD", method="card")
            doc = new_doc(posting, KeptMessage(b"{}", "payment.posted", None, {}),
                          [AuditEntry(at, "paypost", "received")], status)
            if status is LoadStatus.FAILED:
                doc.update(group_id=f"g-{i % 7}", group_cause=None, failed_at=at,
                           load_error={"code": "PATIENT_NOT_MAPPED", "message": "bench", "fix": "bench"})
                alerts.append({"_id": f"task/{key.practice_id}/{key.payment_id}", "kind": "task",
                               "practice_id": key.practice_id, "payment_id": key.payment_id, "state": "open",
                               "open": True, "opened_at": at})
            batch.append(doc)
            if len(batch) == 1000:
                await c.postings.insert_many(batch)
                batch = []
        if batch:
            await c.postings.insert_many(batch)
        for start in range(0, len(alerts), 1000):
            await c.alerts.insert_many(alerts[start:start + 1000])

    await write(failed, LoadStatus.FAILED, spread=1)
    await write(loaded, LoadStatus.LOADED, spread=0)


async def _timed(client: httpx.AsyncClient, requests: int, token: str) -> list[float]:
    times: list[float] = []
    for _ in range(requests):
        started = time.perf_counter()
        r = await client.get("/api/v1/overview", params={"limit": 50}, headers={"Authorization": f"Bearer {token}"})
        times.append((time.perf_counter() - started) * 1000)
        assert r.status_code == 200, r.text
    return times


def _p(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def measure(mongodb_uri: str, amqp_url: str, practices: int, failed: int, loaded: int,
                  requests: int) -> dict[str, float]:
    from paypost.api.app import create_app
    from paypost.bootstrap import Paypost
    from paypost.infra.rabbit.asyncapi import asyncapi_text
    from paypost.infra.runtime.settings import Settings

    listed = "|".join(_practice(n) for n in range(practices))
    settings = Settings(amqp_url=amqp_url, mongodb_uri=mongodb_uri, mongodb_db=f"bench_{uuid.uuid4().hex[:8]}",
                        api_tokens=SecretStr(f"every-token:viewer:every,listed-token:viewer:listed:{listed}"),
                        audit_sealer="inline", log_level="WARNING")
    paypost = Paypost(settings)
    await paypost.start(consume=False)  # the indexes
    try:
        started = time.perf_counter()
        await _fill(paypost, practices, failed, loaded)
        filled = time.perf_counter() - started
        app = create_app(paypost.application, asyncapi_text)
        figures: dict[str, float] = {"fill_seconds": round(filled, 1)}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://paypost") as client:
            for name, token in (("every", "every-token"), ("listed", "listed-token")):
                first = (await client.get("/api/v1/overview", params={"limit": 50},
                                          headers={"Authorization": f"Bearer {token}"})).json()
                assert first["total"] == practices, first["total"]
                await _timed(client, 20, token)  # warm-up
                times = await _timed(client, requests, token)
                figures |= {f"{name}_p{q}_ms": round(_p(times, q), 1) for q in (50, 95, 99)}
    finally:
        await paypost.stop()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--practices", type=int, default=2000)
    parser.add_argument("--failed", type=int, default=20000)
    parser.add_argument("--loaded", type=int, default=100000)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    from paypost.infra.runtime.logging import configure_logging
    from paypost.local.servers import temporary_mongod, temporary_vhost

    configure_logging("WARNING", "console")  # a line per call would be timed too
    with temporary_mongod("pp-overview-bench-") as mongodb_uri, temporary_vhost("pp-overview-bench") as vhost:
        figures = asyncio.run(measure(mongodb_uri, f"amqp://guest:guest@127.0.0.1:5672/{vhost}", args.practices,
                                      args.failed, args.loaded, args.requests))
    for name, value in figures.items():
        print(f"{name}: {value}")  # noqa: T201 - the figures are the output


if __name__ == "__main__":
    main()
