"""1. The baseline: the broker's own round trip, with no paypost and no database, publisher and
consumer in processes of their own (as the bench's publisher and paypost are)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Callable

import aio_pika

from paypost.bench.load import Publisher, payment
from paypost.bench.rendering import Results


async def measure(amqp: str, n: int, results: Results, log: Callable[[str], None]) -> float:
    """Messages per second through the broker, publisher and consumer in processes of their own: the
    figure paypost's throughput is compared to (paypost consumes in a process of its own too)."""
    log(f"baseline: {n:,} messages through raw aio-pika, consumed in another process")
    base = await round_trip(amqp, n)
    results.add("baseline: broker round trip", base, "msg/s", "baseline_pps",
                "aio-pika, confirms, consumer in a process of its own, no database")
    return base


async def round_trip(amqp: str, n: int) -> float:
    """Publish with confirms from this process while another consumes and acks: n / (last ack - first publish)."""
    connection = await aio_pika.connect(amqp)
    name = f"bench.baseline.{uuid.uuid4().hex[:6]}"
    try:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(name, durable=True)
        consumer = subprocess.Popen(  # noqa: ASYNC220 - only starts it; its lines are read without blocking below
            [sys.executable, "-m", "paypost.bench.roundtrip", amqp, name, str(n)], stdout=subprocess.PIPE, text=True)
        assert consumer.stdout is not None
        loop = asyncio.get_running_loop()
        if (await loop.run_in_executor(None, consumer.stdout.readline)).strip() != "ready":
            raise RuntimeError("the baseline's consumer did not start")
        bodies = [(f"b-{i}", payment(f"b-{i}", "acct", "EHR-1")) for i in range(n)]
        started = time.time()
        await Publisher(channel, channel.default_exchange).many(bodies, routing_key=name)
        last_ack = float((await loop.run_in_executor(None, consumer.stdout.readline)).strip())
        await loop.run_in_executor(None, consumer.wait)
        await queue.delete(if_unused=False, if_empty=False)
        return n / (last_ack - started)
    finally:
        await connection.close()
