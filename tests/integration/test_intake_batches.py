"""The batch consumer on the real broker: what it settles, how, and what it leaves for redelivery."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import aiormq
import orjson
import pytest

from paypost.domain.posting import KeptMessage
from paypost.infra.rabbit.intake import BatchConsumer, Settle
from tests.support.waits import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
async def connection(amqp_url: str) -> AsyncIterator[aio_pika.abc.AbstractRobustConnection]:
    connection = await aio_pika.connect_robust(amqp_url)
    channel = await connection.channel()
    await channel.declare_exchange("test.dead", aio_pika.ExchangeType.FANOUT)
    dead = await channel.declare_queue("test.dead")
    await dead.bind("test.dead")
    await channel.declare_queue("test.work", arguments={"x-dead-letter-exchange": "test.dead"})
    yield connection
    await connection.close()


async def publish(connection: aio_pika.abc.AbstractRobustConnection, n: int) -> None:
    channel = await connection.channel(publisher_confirms=True)
    await asyncio.gather(*[channel.default_exchange.publish(aio_pika.Message(str(i).encode(), message_id=str(i)),
                                                            routing_key="test.work") for i in range(n)])
    await channel.close()


async def declared(connection: aio_pika.abc.AbstractRobustConnection, name: str) -> aiormq.spec.Queue.DeclareOk:
    """What the broker says of the queue now (a passive declare on a channel of its own)."""
    channel = await connection.channel()
    queue = await channel.declare_queue(name, passive=True)
    await channel.close()
    return queue.declaration_result


async def depth(connection: aio_pika.abc.AbstractRobustConnection, name: str) -> int:
    return (await declared(connection, name)).message_count or 0


async def test_a_batch_is_acked_once_and_its_rejects_are_dead_lettered(
    connection: aio_pika.abc.AbstractRobustConnection,
) -> None:
    sizes: list[int] = []
    seen: list[int] = []

    async def handle(messages: list[KeptMessage]) -> list[Settle]:
        sizes.append(len(messages))
        await asyncio.sleep(0.02)  # a database round trip: deliveries pile up behind it
        numbers = [int(m.body) for m in messages]
        seen.extend(numbers)
        return [Settle.DEAD_LETTER if n % 3 == 0 else Settle.ACK for n in numbers]

    await publish(connection, 600)
    consumer = BatchConsumer("test.work", handle, prefetch=200, lanes=2)
    await consumer.start(connection)
    await wait_for(lambda: _at_least(seen, 600), timeout=30)
    await consumer.stop()

    assert sorted(seen) == list(range(600))  # each handled once: nothing redelivered
    assert max(sizes) > 1  # deliveries that arrived together were handled together
    assert await depth(connection, "test.work") == 0  # all settled, none left unacked
    assert await depth(connection, "test.dead") == 200  # every third rejected to the dead letters


async def test_a_batch_whose_handler_gives_up_goes_back_to_the_queue(
    connection: aio_pika.abc.AbstractRobustConnection,
) -> None:
    calls = 0
    handled: set[int] = set()

    async def handle(messages: list[KeptMessage]) -> list[Settle]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("the database gave up")
        handled.update(int(m.body) for m in messages)
        return [Settle.ACK] * len(messages)

    await publish(connection, 50)
    consumer = BatchConsumer("test.work", handle, prefetch=100, lanes=1)
    await consumer.start(connection)
    await wait_for(lambda: _at_least(handled, 50), timeout=30)
    await consumer.stop()
    assert handled == set(range(50))  # the failed batch was redelivered, nothing lost
    assert calls >= 2
    assert await depth(connection, "test.work") == 0
    assert await depth(connection, "test.dead") == 0


async def test_stop_settles_the_batch_in_hand_and_returns_the_rest(
    connection: aio_pika.abc.AbstractRobustConnection,
) -> None:
    handled: list[int] = []
    started = asyncio.Event()

    async def handle(messages: list[KeptMessage]) -> list[Settle]:
        started.set()
        await asyncio.sleep(0.3)
        handled.extend(int(m.body) for m in messages)
        return [Settle.ACK] * len(messages)

    await publish(connection, 300)
    consumer = BatchConsumer("test.work", handle, prefetch=100, lanes=1, max_batch=20)
    await consumer.start(connection)
    await asyncio.wait_for(started.wait(), timeout=10)
    await consumer.stop()
    # The batch in hand finished and was acked; everything else is back in the queue.
    assert 0 < len(handled) < 300
    assert await depth(connection, "test.work") == 300 - len(handled)


async def test_a_lane_whose_channel_the_broker_closed_consumes_again_on_the_reopened_one(
    connection: aio_pika.abc.AbstractRobustConnection,
) -> None:
    """A lane takes its deliveries from aiormq itself: when the broker closes its channel (here, an
    ack of a delivery tag it never gave), the robust channel reopens and the lane consumes there."""
    consumer, lane, handled = await _one_lane(connection)
    assert lane.consuming is not None
    first, _ = lane.consuming
    await first.basic_ack(10_000_000)  # PRECONDITION_FAILED: the broker closes the channel
    await wait_for(lambda: _consuming_on_another(lane, first), timeout=30)
    await _handles_the_next_100(connection, handled)
    await consumer.stop()
    assert sorted(handled) == list(range(100))
    assert await depth(connection, "test.work") == 0


async def test_a_lane_whose_queue_was_deleted_consumes_it_again_once_it_is_back(
    connection: aio_pika.abc.AbstractRobustConnection,
) -> None:
    """The broker cancels a consumer whose queue is deleted: the lane asks, once a second, on a
    channel of its own, whether the queue is back, and consumes it again when it is."""
    consumer, lane, handled = await _one_lane(connection)
    assert lane.consuming is not None
    before, _ = lane.consuming
    other = await connection.channel()
    await other.queue_delete("test.work")
    await wait_for(lambda: _not_consuming(lane), timeout=10)
    await asyncio.sleep(1.5)  # at least one ask while the queue is gone
    await other.declare_queue("test.work", arguments={"x-dead-letter-exchange": "test.dead"})
    await wait_for(lambda: _consuming(lane), timeout=30)
    await _handles_the_next_100(connection, handled)
    assert _channel_of(lane) is before  # the asks closed no channel of the lane
    await consumer.stop()
    assert sorted(handled) == list(range(100))


async def test_a_consume_that_fails_at_a_reopen_is_tried_again(
    connection: aio_pika.abc.AbstractRobustConnection,
) -> None:
    """aio-pika neither logs nor retries a reopen callback that fails: the lane does. Here the
    consume on the reopened channel is refused once (as the broker refuses one it cannot serve)."""
    consumer, lane, handled = await _one_lane(connection)
    consume = lane.consume
    refused: list[bool] = []

    async def refused_once() -> None:
        if not refused:
            refused.append(True)
            raise aiormq.exceptions.ChannelAccessRefused("a consume the broker refused")
        await consume()

    lane.consume = refused_once  # the fault: its consume refused once
    assert lane.consuming is not None
    first, _ = lane.consuming
    await first.basic_ack(10_000_000)  # PRECONDITION_FAILED: the channel closes, and reopens
    await wait_for(lambda: _consuming_on_another(lane, first), timeout=30)
    await _handles_the_next_100(connection, handled)
    await consumer.stop()
    assert refused == [True]
    assert sorted(handled) == list(range(100))


async def test_a_lane_asked_to_consume_twice_at_once_consumes_once(
    connection: aio_pika.abc.AbstractRobustConnection,
) -> None:
    """The start, a reopen and a retry may each ask at once: one consumer a channel, never two (two
    would hold twice the lane's prefetch, and the second would never be cancelled)."""

    async def handle(messages: list[KeptMessage]) -> list[Settle]:
        return [Settle.ACK] * len(messages)

    consumer = BatchConsumer("test.work", handle, prefetch=50, lanes=1)
    await consumer.start(connection)
    lane = consumer._lanes[0]
    await asyncio.gather(lane.consume(), lane.consume(), lane.consume())
    assert await consumers(connection, "test.work") == 1
    await consumer.stop()
    assert await consumers(connection, "test.work") == 0


async def consumers(connection: aio_pika.abc.AbstractRobustConnection, name: str) -> int:
    return (await declared(connection, name)).consumer_count or 0


async def _one_lane(
    connection: aio_pika.abc.AbstractRobustConnection,
) -> tuple[BatchConsumer, Any, list[int]]:
    """A consumer of test.work on one lane, started, and the numbers it has handled (each acked)."""
    handled: list[int] = []

    async def handle(messages: list[KeptMessage]) -> list[Settle]:
        handled.extend(int(m.body) for m in messages)
        return [Settle.ACK] * len(messages)

    consumer = BatchConsumer("test.work", handle, prefetch=50, lanes=1)
    await consumer.start(connection)
    return consumer, consumer._lanes[0], handled


async def _handles_the_next_100(connection: aio_pika.abc.AbstractRobustConnection, handled: list[int]) -> None:
    await publish(connection, 100)
    await wait_for(lambda: _at_least(handled, 100), timeout=30)


async def _consuming_on_another(lane: Any, first: Any) -> bool:
    return lane.consuming is not None and lane.consuming[0] is not first and not lane.consuming[0].is_closed


def _channel_of(lane: Any) -> Any:
    return lane.consuming[0] if lane.consuming is not None else None


async def _consuming(lane: Any) -> bool:
    return lane.consuming is not None


async def _not_consuming(lane: Any) -> bool:
    return lane.consuming is None


async def _at_least(items: list[int] | set[int], n: int) -> bool:
    return len(items) >= n


async def test_a_poison_message_goes_back_alone_and_its_batch_mates_are_settled_once(
    paypost: Any, upstream: Any, api: Any, practice: str
) -> None:
    """One delivery whose handling fails for a reason nobody named (a bug it alone meets) goes back
    to the queue by itself, until its delivery limit ends it as a FAILED row; the payments that
    shared its batch are settled by their own outcomes, once, and never dead-lettered."""
    from collections import Counter

    from tests.support.api_calls import get_posting, wait_status
    from tests.support.payloads import payment_body

    handled: Counter[str] = Counter()
    real = paypost.posting_service.read

    def read(message: KeptMessage) -> Any:  # each delivery is read once, whether handled alone or with its batch
        payment_id = orjson.loads(message.body)["payment_id"]
        handled[payment_id] += 1
        if payment_id == "poison-1":
            raise RuntimeError("a bug only this payment meets")
        return real(message)

    paypost.posting_service.read = read
    bodies = [payment_body(payment_id=f"mate-{i}") for i in range(40)]
    bodies.insert(20, payment_body(payment_id="poison-1", patient_account_id="acct-poison"))
    await asyncio.gather(*(upstream.send("payment.posted", b) for b in bodies))

    poison = await wait_status(api, practice, "poison-1", "FAILED", timeout=60)
    assert poison["load_error"]["code"] == "LEDGER_UNAVAILABLE"
    assert handled["poison-1"] == 21  # the delivery limit (20) ended it, on its 21st delivery
    for i in range(40):
        posting = await get_posting(api, practice, f"mate-{i}")
        assert posting is not None and posting["load_status"] == "LOADED"
        assert "dead_lettered" not in [a["action"] for a in posting["audit"]]
    assert {p: n for p, n in handled.items() if p != "poison-1" and n != 1} == {}
