"""What paypost cannot go below: the broker alone, publish to delivery through a quorum queue at
the latency phase's rate, no database, with the disk probed meanwhile."""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from dataclasses import dataclass

import aio_pika

from paypost.bench.load import Publisher, payment
from paypost.bench.probes import DISK_STALL, DiskProbe, no_gc_pauses
from paypost.bench.rendering import Results, percentile


@dataclass
class BrokerAlone:
    latencies_ms: list[float]
    disk: DiskProbe  # what the disk did while they were measured

    def add_to(self, results: Results) -> None:
        results.add("  broker alone p50", percentile(self.latencies_ms, 50), "ms", "broker_p50_ms",
                    "publish to delivery through a quorum queue, same rate, no database")
        results.add("  broker alone p99", percentile(self.latencies_ms, 99), "ms", "broker_p99_ms",
                    f"meanwhile the disk (below): slowest sync {self.disk.slowest_ms():,.0f} ms, "
                    f"{len(self.disk.stalls())} over {DISK_STALL * 1000:.0f} ms")


async def measure(amqp: str, rate: float, count: int) -> BrokerAlone:
    with no_gc_pauses(), DiskProbe(tempfile.gettempdir()) as disk:
        latencies = await broker_latencies(amqp, rate, count)
    return BrokerAlone(latencies, disk)


async def broker_latencies(amqp: str, rate: float, count: int) -> list[float]:
    """ms from publish to delivery through a quorum queue like paypost's intake (durable: the broker
    syncs each message to its log on disk first), at ``rate``, with no consumer work and no
    database: the latency the broker alone gives on this machine."""
    connection = await aio_pika.connect(amqp)
    name = f"bench.latency.{uuid.uuid4().hex[:6]}"
    try:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
        consumer_channel = await connection.channel()
        await consumer_channel.set_qos(prefetch_count=200)
        received: dict[str, float] = {}
        done = asyncio.Event()

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            received[message.message_id or ""] = time.perf_counter()
            await message.ack()
            if len(received) == count:
                done.set()

        await (await consumer_channel.get_queue(name)).consume(on_message)
        bodies = [(f"q-{i}", payment(f"q-{i}", "acct", "EHR-1")) for i in range(count)]
        sent = await Publisher(channel, channel.default_exchange).paced(bodies, rate, routing_key=name)
        await asyncio.wait_for(done.wait(), timeout=300)
        await consumer_channel.close()  # before the queue goes, so that the broker cancels nothing
        await queue.delete(if_unused=False, if_empty=False)
        return [(received[pid] - at) * 1000 for pid, at in sent.items()]
    finally:
        await connection.close()
