"""Outcomes whose events could not be sent are kept, announced once the delivery comes back, and
never more than a bounded number of them (the path through the real broker and database is
tests/integration/test_events_alerts.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain.errors import TransientFailure
from domain.events import PostingLoaded
from domain.model import LoadStatus, PostingKind
from domain.posting import Posting, PostingKey
from handlers.announcing import Announcer
from handlers.messagebus import MessageBus


def loaded(payment_id: str) -> PostingLoaded:
    posting = Posting(PostingKey("clinic-a", payment_id), PostingKind.PAYMENT, LoadStatus.LOADED, "e-1",
                      datetime.now(UTC))
    return PostingLoaded(posting, had_failed=False)


class Broker:
    """A bus subscriber that stands for the broker: down until told otherwise."""

    def __init__(self) -> None:
        self.up = False
        self.sent: list[str] = []

    async def __call__(self, event: PostingLoaded) -> None:
        if not self.up:
            raise TransientFailure("the broker is not reachable")
        self.sent.append(event.posting.key.payment_id)


def announcer(broker: Broker, bound: int = 10_000) -> Announcer:
    bus = MessageBus()
    bus.subscribe(PostingLoaded, broker)
    return Announcer(bus, bound)


async def test_a_failed_announcement_is_kept_and_made_once_when_the_delivery_comes_back() -> None:
    broker = Broker()
    announcing = announcer(broker)
    key = PostingKey("clinic-a", "p-1")

    with pytest.raises(TransientFailure):
        await announcing.announce(key, loaded("p-1"))
    assert broker.sent == []
    assert announcing.owes(key)
    assert await announcing.settle_owed(PostingKey("clinic-a", "p-2")) is False  # nothing owed

    with pytest.raises(TransientFailure):  # still down: kept again
        await announcing.settle_owed(key)
    assert announcing.owes(key)
    broker.up = True
    assert await announcing.settle_owed(key) is True
    assert await announcing.settle_owed(key) is False  # once
    assert broker.sent == ["p-1"]


async def test_at_most_so_many_are_kept_the_oldest_dropped_first() -> None:
    announcing = announcer(Broker(), bound=2)
    for payment_id in ("p-1", "p-2", "p-3"):
        with pytest.raises(TransientFailure):
            await announcing.announce(PostingKey("clinic-a", payment_id), loaded(payment_id))

    kept = [pid for pid in ("p-1", "p-2", "p-3") if announcing.owes(PostingKey("clinic-a", pid))]
    assert kept == ["p-2", "p-3"]
