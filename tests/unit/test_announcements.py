"""Outcomes whose events could not be sent are marked as owing them and announced once the delivery
comes back; kept in memory only when the mark cannot be written, at most so many (the path through
the real broker and database, and across two workers, is tests/integration/test_events_alerts.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from paypost.domain.errors import TransientFailure
from paypost.domain.events import PostingLoaded
from paypost.domain.model import LoadStatus, PostingKind
from paypost.domain.posting import PAYPOST_ACTOR, AuditEntry, Integration, KeptMessage, Posting, PostingKey
from paypost.handlers.messagebus import MessageBus
from paypost.handlers.outcomes import First, OutcomeRecorder


def posting(payment_id: str) -> Posting:
    return Posting(PostingKey("clinic-a", payment_id), PostingKind.PAYMENT, LoadStatus.LOADED, "e-1",
                   datetime.now(UTC))


class Broker:
    """A bus subscriber that stands for the broker: down until told otherwise."""

    def __init__(self) -> None:
        self.up = False
        self.sent: list[str] = []

    async def __call__(self, event: PostingLoaded) -> None:
        if not self.up:
            raise TransientFailure("the broker is not reachable")
        self.sent.append(event.posting.key.payment_id)


class Marks:
    """The two PostingStore calls the announcer makes, as the database would answer them."""

    def __init__(self, database_up: bool = True) -> None:
        self.database_up = database_up
        self.owed: dict[PostingKey, str] = {}

    async def owe_announcement(self, key: PostingKey, owed: str) -> None:
        if not self.database_up:
            raise ConnectionError("the database is not reachable")
        self.owed[key] = owed

    async def announced(self, key: PostingKey) -> None:
        self.owed.pop(key, None)

    def read(self, p: Posting) -> Posting:
        """The posting as it is read back (with its mark, if any)."""
        return replace(p, announcement_owed=self.owed.get(p.key))


def announcer(broker: Broker, marks: Marks, bound: int = 10_000) -> OutcomeRecorder:
    bus = MessageBus()
    bus.subscribe(PostingLoaded, broker)
    store: Any = marks
    return OutcomeRecorder(store, bus, bound)


async def test_a_failed_announcement_is_marked_on_the_posting_and_made_once_from_the_mark() -> None:
    broker, marks = Broker(), Marks()
    announcing = announcer(broker, marks)
    p1 = posting("p-1")

    with pytest.raises(TransientFailure):
        await announcing.announce(p1.key, PostingLoaded(p1, had_failed=True))
    assert marks.owed == {p1.key: "loaded_after_failure"}
    assert announcing.owes(marks.read(p1))
    assert await announcing.settle_owed(marks.read(posting("p-2"))) is False  # nothing owed

    with pytest.raises(TransientFailure):  # still down: still marked
        await announcing.settle_owed(marks.read(p1))
    assert marks.owed == {p1.key: "loaded_after_failure"}
    broker.up = True
    # Any process reading the posting can settle it: a fresh announcer, as another worker's.
    assert await announcer(broker, marks).settle_owed(marks.read(p1)) is True
    assert marks.owed == {}
    assert await announcing.settle_owed(marks.read(p1)) is False  # once
    assert broker.sent == ["p-1"]


async def test_with_the_database_away_too_it_is_kept_in_memory_at_most_so_many() -> None:
    broker, marks = Broker(), Marks(database_up=False)
    announcing = announcer(broker, marks, bound=2)
    for payment_id in ("p-1", "p-2", "p-3"):
        with pytest.raises(TransientFailure):
            await announcing.announce(posting(payment_id).key, PostingLoaded(posting(payment_id), had_failed=False))

    kept = [pid for pid in ("p-1", "p-2", "p-3") if announcing.owes(posting(pid))]
    assert kept == ["p-2", "p-3"]
    broker.up = True
    assert await announcing.settle_owed(posting("p-3")) is True
    assert broker.sent == ["p-3"] and not announcing.owes(posting("p-3"))


def test_a_first_write_is_only_ever_into_a_ledger_kept_in_paypost_s_database() -> None:
    """A posting written once, with its outcome, carries the integration that chose so: the built-in
    ledger. One that calls a practice's system first writes its row, then calls (``sent_at``)."""
    message = KeptMessage(b"{}", "payment.posted", "m-1", {})
    received = AuditEntry(at=datetime.now(UTC), actor=PAYPOST_ACTOR, action="received")
    builtin = Integration(practice_id="clinic-a", kind="builtin", enabled=True, settings={})
    assert First(message, received, builtin).integration is builtin
    with pytest.raises(ValueError, match="paypost's database"):
        First(message, received, replace(builtin, kind="http"))
