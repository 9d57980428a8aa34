"""The scaling curve: the same burst of payments through 1, 2 and 4 worker processes (contract
section 9's `--role worker`), one `--role api` process beside them for the practice's set-up, on
one broker and one database; throughput and the CPU each process spends per payment."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Callable, Sequence

import aio_pika
import httpx

from paypost.bench.load import PRACTICE, TOKEN, PaypostProcess, Publisher, payment
from paypost.bench.outcomes import wait_count
from paypost.bench.probes import CpuMeter, child_pid, find_pid, no_gc_pauses
from paypost.bench.rendering import Results
from paypost.infra.mongo.database import Collections, connect


async def _one(amqp: str, mongo: str, workers: int, n: int, log: Callable[[str], None],
               results: Results) -> float:
    db = f"bench_scale_{uuid.uuid4().hex[:6]}"
    api = PaypostProcess(amqp, mongo, db, role="api")
    pool = [PaypostProcess(amqp, mongo, db, role="worker") for _ in range(workers)]
    client = connect(mongo)
    connection = await aio_pika.connect(amqp)
    try:
        await asyncio.gather(api.start(), *(worker.start() for worker in pool))
        async with httpx.AsyncClient(base_url=api.base, headers={"Authorization": f"Bearer {TOKEN}"},
                                     timeout=30) as http:
            await http.put(f"/api/v1/practices/{PRACTICE}", json={"name": "Bench", "ledger": {"kind": "builtin"}})
            for i in range(20):
                await http.put(f"/api/v1/practices/{PRACTICE}/ehr-patients/EHR-{i}", json={})
        channel = await connection.channel(publisher_confirms=True)
        publisher = Publisher(channel, await channel.get_exchange("paypost.payments", ensure=True))
        bodies = [(f"s-{i}", payment(f"s-{i}", f"acct-{i % 500}", f"EHR-{i % 20}")) for i in range(n)]
        mongo_port = mongo.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[-1]
        pids: dict[str, int | None] = {}
        for k, worker in enumerate(pool, 1):
            assert worker.proc is not None
            pids[f"worker {k}"] = worker.proc.pid
            pids[f"worker {k} sealer"] = child_pid(worker.proc.pid, "spawn_main")
        pids |= {"mongod": find_pid("mongod", f"--port {mongo_port}"), "RabbitMQ": find_pid("beam.smp", "rabbit"),
                 "bench publisher": os.getpid()}
        meter = CpuMeter(pids)
        c = Collections(client[db])
        log(f"scaling: {n:,} payments through {workers} worker(s)")
        with no_gc_pauses():
            meter.start()
            started = time.perf_counter()
            await publisher.many(bodies)
            finished = await wait_count(c, {"practice_id": PRACTICE, "load_status": "LOADED"}, n,
                                        tail=[pid for pid, _ in bodies[-20:]])
        pps = n / (finished - started)
        spent = meter.per_payment_us(n)
        workers_us = sum(us for name, us in spent.items() if name.startswith("worker"))
        total = sum(spent.values())
        results.add(f"scaling: {workers} worker(s), publish to LOADED", pps, "payments/s",
                    f"scaling_pps_{workers}", f"{n:,} payments")
        each = ", ".join(f"{name} {us:,.0f}" for name, us in spent.items() if name.startswith("worker"))
        results.add(f"  CPU per payment: the {workers} worker(s)", workers_us, "us",
                    f"scaling_cpu_us_workers_{workers}", each)
        results.add("  CPU per payment, all of them", total, "us", f"scaling_cpu_us_total_{workers}",
                    f"mongod {spent.get('mongod', 0):,.0f}, RabbitMQ {spent.get('RabbitMQ', 0):,.0f}, "
                    f"bench {spent.get('bench publisher', 0):,.0f}; {pps * total / 1e6:.2f} cores busy")
        return pps
    finally:
        for process in (*pool, api):
            with contextlib.suppress(Exception):
                process.stop()
        await connection.close()
        await client.drop_database(db)
        await client.close()


async def measure(amqp: str, mongo: str, n: int, results: Results, log: Callable[[str], None],
                  counts: Sequence[int] = (1, 2, 4)) -> dict[int, float]:
    """Throughput by the number of workers, each count on a database of its own."""
    curve = {workers: await _one(amqp, mongo, workers, n, log, results) for workers in counts}
    one = curve[counts[0]]
    for workers, pps in curve.items():
        if workers != counts[0]:
            results.add(f"scaling: {workers} workers / {counts[0]}", pps / one, "", f"scaling_ratio_{workers}",
                        f"{os.cpu_count()} cores for every process: paypost, mongod, RabbitMQ and the bench")
    return curve
