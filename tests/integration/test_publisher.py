"""The Publish port on the real broker: one suite, run against each adapter.

``PublishSuite`` states what every publisher promises (after eventsourcing's
``eventsourcing/tests/persistence.py``): publishes made together are each confirmed and delivered
once, each learns its own outcome (confirmed, returned as unroutable, not encodable, or the broker
gone), large bodies go, and an event nobody listens to is not an error. Each adapter subclasses it
once.
"""

from __future__ import annotations

import asyncio
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from typing import Protocol

import aio_pika
import pytest

from paypost.domain.errors import TransientFailure, Unroutable
from paypost.domain.ports.events import Publish
from paypost.infra.rabbit.broker import PUBLISHERS, Amqp, BasicPublisher, FramedPublisher
from paypost.local.servers import free_port
from paypost.schemas.topics import CONTENT_TYPE, SCHEMA_VERSION, SCHEMA_VERSION_HEADER

pytestmark = pytest.mark.integration

QUEUE = "test.replays"
EVENTS = "test.events"  # a topic exchange with nothing bound to it
OVER_64_KIB = 64 * 1024 + 1  # the framed adapter's limit; the broker's frame_max is 128 KiB
OVER_FRAME_MAX = 3 * 128 * 1024  # split into several body frames


class Adapter(Publish, Protocol):
    async def close(self) -> None: ...


async def drain(amqp: Amqp, n: int) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """What the queue holds: at least ``n`` messages (waiting up to 10 s for them), and any more."""
    channel = await (await amqp.open()).channel()
    queue = await channel.get_queue(QUEUE)
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


class PublishSuite(ABC):
    """What every adapter of the Publish port does; a subclass names the adapter."""

    @abstractmethod
    def adapter(self, amqp: Amqp) -> Adapter:
        """A new publisher of the adapter under test, on ``amqp``."""

    @pytest.fixture
    async def amqp(self, amqp_url: str) -> AsyncIterator[Amqp]:
        """A connection to a vhost of the test's own, holding the queue and the exchange."""
        amqp = Amqp(amqp_url)
        connection = await amqp.open()
        channel = await connection.channel()
        await channel.declare_queue(QUEUE)
        await channel.declare_exchange(EVENTS, aio_pika.ExchangeType.TOPIC)
        await channel.close()
        yield amqp
        await amqp.close()

    @pytest.fixture
    async def publish(self, amqp: Amqp) -> AsyncIterator[Adapter]:
        publish = self.adapter(amqp)
        yield publish
        await publish.close()

    async def test_publishes_made_together_are_each_confirmed_and_delivered_once(
            self, publish: Adapter, amqp: Amqp) -> None:
        results = await asyncio.gather(*(publish("", QUEUE, f"{i}".encode(), message_id=f"m-{i}", headers={"n": i})
                                         for i in range(300)))
        assert results == [None] * 300

        received = await drain(amqp, 300)
        assert sorted(m.message_id or "" for m in received) == sorted(f"m-{i}" for i in range(300))
        by_id = {m.message_id: m for m in received}
        assert by_id["m-7"].body == b"7" and by_id["m-7"].headers["n"] == 7
        assert by_id["m-7"].headers[SCHEMA_VERSION_HEADER] == SCHEMA_VERSION
        assert by_id["m-7"].delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert by_id["m-7"].content_type == CONTENT_TYPE

    async def test_an_unroutable_publish_raises_while_the_others_of_its_batch_are_confirmed(
            self, publish: Adapter, amqp: Amqp) -> None:
        routed = [publish("", QUEUE, f"{i}".encode(), message_id=f"m-{i}") for i in range(100)]
        lost = publish("", "test.no-such-queue", b"lost", message_id="m-lost")
        no_id = publish("", QUEUE, b"no id", message_id="")  # a return would be matched by an id given it
        results = await asyncio.gather(*routed, lost, no_id, return_exceptions=True)
        assert results[:100] == [None] * 100
        assert isinstance(results[100], Unroutable) and "test.no-such-queue" in str(results[100])
        assert results[101] is None

        received = await drain(amqp, 101)
        assert sorted(m.body for m in received) == sorted([f"{i}".encode() for i in range(100)] + [b"no id"])

    async def test_events_nobody_listens_to_are_not_an_error(self, publish: Adapter) -> None:
        results = await asyncio.gather(*(publish(EVENTS, f"posting.loaded.{i}", b"{}", message_id=f"e-{i}",
                                                 broadcast=True) for i in range(100)))
        assert results == [None] * 100

    @pytest.mark.parametrize("size", [OVER_64_KIB, OVER_FRAME_MAX])
    async def test_a_large_body_goes_whole_among_small_ones(self, publish: Adapter, amqp: Amqp, size: int) -> None:
        big = bytes(i % 251 for i in range(size))
        await asyncio.gather(publish("", QUEUE, big, message_id="big"),
                             *(publish("", QUEUE, b"small", message_id=f"s-{i}") for i in range(20)),
                             publish(EVENTS, "posting.loaded.big", big, message_id="big-event", broadcast=True))
        received = await drain(amqp, 21)
        assert sorted(m.body for m in received) == sorted([big] + [b"small"] * 20)

    async def test_a_large_unroutable_body_raises(self, publish: Adapter) -> None:
        with pytest.raises(Unroutable, match=re.escape("test.no-such-queue")):
            await publish("", "test.no-such-queue", b"x" * OVER_64_KIB, message_id="big-lost")

    async def test_an_empty_body_goes(self, publish: Adapter, amqp: Amqp) -> None:
        await asyncio.gather(publish("", QUEUE, b"", message_id="empty"), publish("", QUEUE, b"1", message_id="one"))
        received = await drain(amqp, 2)
        assert sorted(m.body for m in received) == [b"", b"1"]

    async def test_a_publish_that_cannot_be_encoded_fails_alone_and_later_confirms_still_match(
            self, publish: Adapter, amqp: Amqp) -> None:
        results = await asyncio.gather(
            *(publish("", QUEUE, b"before", message_id=f"b-{i}") for i in range(10)),
            publish("", QUEUE, b"bad", message_id="bad-header", headers={"x": {1, 2}}),
            publish("", "k" * 256, b"bad", message_id="bad-key"),
            *(publish("", QUEUE, b"after", message_id=f"a-{i}") for i in range(10)),
            return_exceptions=True)
        assert results[:10] == [None] * 10 and results[12:] == [None] * 10
        assert isinstance(results[10], TypeError) and isinstance(results[11], ValueError)
        # Had a failed publish taken a delivery tag, the broker's confirms would no longer match the
        # publishes, and the last of these would wait for ever.
        later = await asyncio.wait_for(asyncio.gather(
            *(publish("", QUEUE, b"later", message_id=f"l-{i}") for i in range(10)),
            publish("", "test.no-such-queue", b"lost", message_id="later-lost"), return_exceptions=True), timeout=10)
        assert later[:10] == [None] * 10 and isinstance(later[10], Unroutable)
        received = await drain(amqp, 30)
        assert sorted(m.body for m in received) == sorted([b"before"] * 10 + [b"after"] * 10 + [b"later"] * 10)

    async def test_a_broker_that_does_not_answer_is_a_transient_failure_for_every_publish_of_a_batch(self) -> None:
        publish = self.adapter(Amqp(f"amqp://guest:guest@127.0.0.1:{free_port()}/"))  # nothing listens there
        results = await asyncio.wait_for(asyncio.gather(
            *(publish("", QUEUE, b"1", message_id=f"x-{i}") for i in range(20)),
            *(publish(EVENTS, "posting.loaded.x", b"{}", message_id=f"e-{i}", broadcast=True) for i in range(20)),
            publish("", QUEUE, b"x" * OVER_64_KIB, message_id="big"),
            return_exceptions=True), timeout=30)
        assert all(isinstance(r, TransientFailure) and "not reachable" in str(r) for r in results), results
        await publish.close()


class TestBasicPublisher(PublishSuite):
    def adapter(self, amqp: Amqp) -> Adapter:
        return BasicPublisher(amqp)


class TestFramedPublisher(PublishSuite):
    def adapter(self, amqp: Amqp) -> Adapter:
        return FramedPublisher(amqp)


def test_every_adapter_has_its_subclass_of_the_suite() -> None:
    unopened = Amqp(f"amqp://guest:guest@127.0.0.1:{free_port()}/")  # an adapter connects on its first publish
    assert {type(suite().adapter(unopened)) for suite in PublishSuite.__subclasses__()} == set(PUBLISHERS.values())
