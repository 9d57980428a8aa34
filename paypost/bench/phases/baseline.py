"""1. The baseline: the broker's own round trip, with no paypost and no database."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import aio_pika

from paypost.bench.load import Publisher, payment
from paypost.bench.rendering import Results


async def measure(amqp: str, n: int, results: Results, log: Callable[[str], None]) -> float:
    """Messages per second through raw aio-pika; the figure paypost's throughput is compared to."""
    log(f"baseline: {n:,} messages through raw aio-pika")
    base = await raw_round_trip(amqp, n)
    results.add("baseline: raw publish+consume+ack", base, "msg/s", "baseline_pps",
                "aio-pika, confirms, no database")
    return base


async def raw_round_trip(amqp: str, n: int) -> float:
    """Raw aio-pika: publish with confirms and consume-and-ack the same messages at once, no database."""
    connection = await aio_pika.connect(amqp)
    try:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(f"bench.baseline.{uuid.uuid4().hex[:6]}", auto_delete=True)
        consumer_channel = await connection.channel()
        await consumer_channel.set_qos(prefetch_count=200)
        consumer_queue = await consumer_channel.get_queue(queue.name)
        done = asyncio.Event()
        acked = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal acked
            await message.ack()
            acked += 1
            if acked == n:
                done.set()

        await consumer_queue.consume(on_message)
        bodies = [(f"b-{i}", payment(f"b-{i}", "acct", "EHR-1")) for i in range(n)]
        started = time.perf_counter()
        await Publisher(channel, channel.default_exchange).many(bodies, routing_key=queue.name)
        await asyncio.wait_for(done.wait(), timeout=300)
        return n / (time.perf_counter() - started)
    finally:
        await connection.close()
