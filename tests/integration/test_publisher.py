"""paypost's publisher on the real broker: publishes made together go in one write, and each
learns its own outcome (confirmed, returned as unroutable, or the broker gone)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aio_pika
import pytest

from domain.errors import TransientFailure
from infra.broker import MAX_BATCHED_BODY, Amqp, Publisher, Unroutable
from infra.local_services import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
async def amqp(amqp_url: str) -> AsyncIterator[Amqp]:
    amqp = Amqp(amqp_url)
    connection = await amqp.open()
    channel = await connection.channel()
    await channel.declare_queue("test.replays")
    await channel.declare_exchange("test.events", aio_pika.ExchangeType.TOPIC)
    await channel.close()
    yield amqp
    await amqp.close()


async def drain(amqp: Amqp, queue_name: str, n: int) -> list[aio_pika.abc.AbstractIncomingMessage]:
    channel = await (await amqp.open()).channel()
    queue = await channel.get_queue(queue_name)
    got: list[aio_pika.abc.AbstractIncomingMessage] = []
    deadline = asyncio.get_running_loop().time() + 10
    while asyncio.get_running_loop().time() < deadline:
        message = await queue.get(no_ack=True, fail=False)
        if message is not None:
            got.append(message)
        elif len(got) >= n:
            break
        else:
            await asyncio.sleep(0.05)
    await channel.close()
    return got


async def test_mandatory_publishes_made_together_each_get_their_own_outcome(amqp: Amqp) -> None:
    publish = Publisher(amqp)
    routed = [publish("", "test.replays", f"{i}".encode(), message_id=f"m-{i}", headers={"n": i})
              for i in range(300)]
    lost = publish("", "test.no-such-queue", b"lost", message_id="m-lost")
    no_id = publish("", "test.replays", b"no id", message_id="")
    results = await asyncio.gather(*routed, lost, no_id, return_exceptions=True)
    assert results[:300] == [None] * 300
    assert isinstance(results[300], Unroutable) and "test.no-such-queue" in str(results[300])
    assert results[301] is None

    received = await drain(amqp, "test.replays", 301)
    assert sorted(m.body for m in received) == sorted([f"{i}".encode() for i in range(300)] + [b"no id"])
    by_id = {m.message_id: m for m in received}
    assert by_id["m-7"].headers["n"] == 7 and by_id["m-7"].delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    await publish.close()


async def test_events_nobody_listens_to_are_not_an_error_and_a_large_body_still_goes(amqp: Amqp) -> None:
    publish = Publisher(amqp)
    await asyncio.gather(*(publish("test.events", f"posting.loaded.{i}", b"{}", message_id=f"e-{i}", broadcast=True)
                           for i in range(100)))
    big = b"x" * (MAX_BATCHED_BODY + 1)
    await publish("", "test.replays", big, message_id="big")  # aiormq's own path, split into frames
    received = await drain(amqp, "test.replays", 1)
    assert [m.body for m in received] == [big]
    await publish.close()


async def test_a_broker_that_does_not_answer_is_a_transient_failure_for_every_publish_of_a_batch() -> None:
    publish = Publisher(Amqp(f"amqp://guest:guest@127.0.0.1:{free_port()}/"))  # nothing listens there
    results = await asyncio.wait_for(asyncio.gather(
        *(publish("", "test.replays", b"1", message_id=f"x-{i}") for i in range(20)),
        *(publish("", "test.events", b"{}", message_id=f"e-{i}", broadcast=True) for i in range(20)),
        return_exceptions=True), timeout=30)
    assert all(isinstance(r, TransientFailure) and "not reachable" in str(r) for r in results), results
