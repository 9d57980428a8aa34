"""The rig the phases after the baseline run on: paypost running as a process of its own in a
clean database, with the bench's publisher, HTTP client and view of the database beside it."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import aio_pika
import httpx

from paypost.bench.load import PRACTICE, TOKEN, PaypostProcess, Publisher
from paypost.bench.rendering import Results
from paypost.infra.mongo.database import Collections, connect


@dataclass
class Rig:
    amqp: str
    mongo: str
    db: str
    c: Collections
    paypost: PaypostProcess
    publisher: Publisher
    http: httpx.AsyncClient
    results: Results
    log: Callable[[str], None]
    wall_offset: float  # time.time() - time.perf_counter(): paypost's stored times on the bench's clock


@contextlib.asynccontextmanager
async def started_rig(amqp: str, mongo: str, results: Results, log: Callable[[str], None],
              wall_offset: float) -> AsyncIterator[Rig]:
    """paypost started on a database of its own, with the bench's practice and its patients; at the
    end paypost is stopped and the database dropped."""
    db = f"bench_{uuid.uuid4().hex[:6]}"
    client = connect(mongo)
    paypost = PaypostProcess(amqp, mongo, db)
    await paypost.start()
    connection = await aio_pika.connect(amqp)
    channel = await connection.channel(publisher_confirms=True)
    publisher = Publisher(channel, await channel.get_exchange("paypost.payments", ensure=True))
    http = httpx.AsyncClient(base_url=paypost.base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    try:
        await http.put(f"/api/v1/practices/{PRACTICE}", json={"name": "Bench", "ledger": {"kind": "builtin"}})
        for i in range(20):
            await http.put(f"/api/v1/practices/{PRACTICE}/ehr-patients/EHR-{i}", json={})
        yield Rig(amqp, mongo, db, Collections(client[db]), paypost, publisher, http, results, log, wall_offset)
    finally:
        paypost.stop()
        await http.aclose()
        await connection.close()
        await client.drop_database(db)
        await client.close()
