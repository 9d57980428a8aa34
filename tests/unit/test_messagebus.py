"""The message bus: each event reaches the handlers subscribed to its type, in order; an error stops
the rest and reaches the publisher."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from paypost.domain.events import PostingCleared, PostingFailed, PostingLoaded
from paypost.domain.model import LoadStatus, PostingKind
from paypost.domain.posting import PAYPOST_ACTOR, AuditEntry, Posting, PostingKey
from paypost.handlers.messagebus import MessageBus

POSTING = Posting(PostingKey("clinic-a", "pay-1"), PostingKind.PAYMENT, LoadStatus.LOADED, "e-1", datetime.now(UTC))


async def test_each_event_reaches_the_handlers_of_its_type_in_the_order_subscribed() -> None:
    bus = MessageBus()
    seen: list[str] = []

    async def first(event: PostingLoaded) -> None:
        seen.append(f"first {event.posting.key}")

    async def second(event: PostingLoaded) -> None:
        seen.append(f"second {event.posting.key}")

    async def failed(event: PostingFailed) -> None:
        seen.append("failed")

    bus.subscribe(PostingLoaded, first, second)
    bus.subscribe(PostingFailed, failed)
    await bus.publish(PostingLoaded(POSTING, had_failed=False))
    assert seen == ["first clinic-a/pay-1", "second clinic-a/pay-1"]
    await bus.publish(PostingCleared(POSTING, AuditEntry(datetime.now(UTC), PAYPOST_ACTOR, "clear")))  # nobody
    assert seen == ["first clinic-a/pay-1", "second clinic-a/pay-1"]


async def test_a_handler_that_fails_stops_the_rest_and_the_publisher_hears_of_it() -> None:
    bus = MessageBus()
    after: list[str] = []

    async def broker_gone(event: PostingLoaded) -> None:
        raise ConnectionError("the broker went away")

    async def alerts(event: PostingLoaded) -> None:
        after.append("alerts")

    bus.subscribe(PostingLoaded, broker_gone, alerts)
    with pytest.raises(ConnectionError):
        await bus.publish(PostingLoaded(POSTING, had_failed=True))
    assert after == []
