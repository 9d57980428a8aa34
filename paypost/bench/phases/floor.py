"""2b. The floor: the least a payment's load needs on paypost's stack, measured as the baseline is
(publish with confirms to the last batch loaded, a consumer in a process of its own), on the same broker,
database and cores as the pipeline just before it (``paypost/bench/floor.py`` says what it does
and leaves out). The pipeline's ratio is bounded by the floor's: a target above the floor's ratio
cannot be met on this machine by any paypost that does the work the contract asks."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping

import aio_pika
from pymongo import IndexModel

from paypost.bench.floor import WITHIN
from paypost.bench.load import Publisher, payment
from paypost.bench.probes import CpuMeter, find_pid, no_gc_pauses
from paypost.bench.rig import Rig


async def measure(rig: Rig, n: int, baseline: float, pipeline: float) -> None:
    rig.log(f"floor: {n:,} payments through the least a load needs, consumed in another process")
    name = f"bench.floor.{uuid.uuid4().hex[:6]}"
    rows = rig.c.db[name]
    channel = rig.publisher.channel
    queue: aio_pika.abc.AbstractQueue | None = None
    consumer: subprocess.Popen[str] | None = None
    loop = asyncio.get_running_loop()
    try:
        # The postings' indexes: each insert costs the database what a posting's does.
        await rows.create_indexes([IndexModel(list(spec["key"].items()), **_options(spec))
                                   async for spec in await rig.c.postings.list_indexes() if spec["name"] != "_id_"])
        queue = await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
        consumer = subprocess.Popen(  # noqa: ASYNC220 - only starts it; its lines are read without blocking below
            [sys.executable, "-m", "paypost.bench.floor", rig.amqp, rig.mongo, rig.db, name, name, str(n)],
            stdout=subprocess.PIPE, text=True)
        assert consumer.stdout is not None
        said = consumer.stdout.readline
        if (await asyncio.wait_for(loop.run_in_executor(None, said), 60)).strip() != "ready":
            raise RuntimeError("the floor's consumer did not start")
        mongo_port = rig.mongo.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[-1]
        meter = CpuMeter({"floor consumer": consumer.pid, "mongod": find_pid("mongod", f"--port {mongo_port}"),
                          "RabbitMQ": find_pid("beam.smp", "rabbit"), "bench publisher": os.getpid()})
        bodies = [(f"f-{i}", payment(f"f-{i}", f"acct-{i % 500}", f"EHR-{i % 20}")) for i in range(n)]
        with no_gc_pauses():  # as the pipeline's burst is published
            meter.start()
            started = time.time()
            await Publisher(channel, channel.default_exchange).many(bodies, routing_key=name)
            last = (await asyncio.wait_for(loop.run_in_executor(None, said), WITHIN + 30)).strip()
        spent = meter.per_payment_us(n)
        if not last:
            raise RuntimeError(f"the floor's consumer ended without loading its {n:,} payments")
        last_ack = float(last)
    finally:
        if consumer is not None and consumer.poll() is None:
            consumer.kill()  # a reader still waiting on its output then reads its end
        if queue is not None:
            await queue.delete(if_unused=False, if_empty=False)
        stored = await rows.count_documents({})
        await rows.drop()
    if stored != n:
        raise RuntimeError(f"the floor's consumer stored {stored:,} of {n:,} rows")
    reached = n / (last_ack - started)
    results = rig.results
    results.add("floor: the least a load needs", reached, "payments/s", "floor_pps",
                "read, one mapping read, one insert, one event with its confirm, one ack per batch; no audit, no seal")
    results.add("  floor / baseline", reached / baseline, "", "floor_ratio",
                "the most any paypost doing this work reaches on this machine")
    results.add("  pipeline / floor", pipeline / reached, "", "pipeline_of_floor",
                "what paypost's own work leaves of it")
    for who, us in spent.items():
        results.add(f"  floor CPU per payment: {who}", us, "us", f"floor_cpu_us_{who.lower().replace(' ', '_')}")


def _options(spec: Mapping[str, object]) -> dict[str, object]:
    return {k: v for k, v in spec.items() if k in ("name", "unique", "sparse", "partialFilterExpression")}
