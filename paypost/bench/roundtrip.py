"""The baseline's consumer, a process of its own (as paypost is): consume and ack ``n`` messages of a
queue, then print the wall-clock time of the last ack. ``python -m paypost.bench.roundtrip URL QUEUE N``."""

from __future__ import annotations

import asyncio
import sys
import time

import aio_pika


async def consume(amqp: str, queue_name: str, n: int) -> float:
    connection = await aio_pika.connect(amqp)
    try:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=200)
        queue = await channel.get_queue(queue_name)
        done = asyncio.Event()
        acked = 0
        last = 0.0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal acked, last
            await message.ack()
            acked += 1
            if acked == n:
                last = time.time()
                done.set()

        await queue.consume(on_message)
        print("ready", flush=True)  # noqa: T201 - the bench reads it from this process's stdout
        await asyncio.wait_for(done.wait(), timeout=600)
        return last
    finally:
        await connection.close()


if __name__ == "__main__":
    url, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    print(f"{asyncio.run(consume(url, name, count)):.6f}", flush=True)  # noqa: T201 - read by the bench
