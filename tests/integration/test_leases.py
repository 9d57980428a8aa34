"""Leases (infra/mongo/leases.py) on the real MongoDB: one holder at a time, taken over on expiry, handed
on at release, and a token that only ever grows as the lease changes hands."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from pymongo.asynchronous.collection import AsyncCollection

from paypost.infra.mongo.database import Collections, Doc, connect
from paypost.infra.mongo.leases import DutyLeases, Lease
from tests.support.services import Services

pytestmark = pytest.mark.integration


@pytest.fixture
async def leases(services: Services) -> AsyncIterator[AsyncCollection[Doc]]:
    client = connect(services.mongodb_uri)
    db = f"leases_{uuid.uuid4().hex[:8]}"
    try:
        yield Collections(client[db]).leases
    finally:
        await client.drop_database(db)
        await client.close()


async def test_one_holder_at_a_time_and_a_renewal_keeps_its_token(leases: AsyncCollection[Doc]) -> None:
    a, b = Lease(leases, "duty", "a", ttl=30), Lease(leases, "duty", "b", ttl=30)
    first = await a.acquire()
    assert first is not None and first.token == 1
    assert await b.acquire() is None  # held by a, not expired
    renewed = await a.acquire()
    assert renewed is not None and renewed.token == first.token and renewed.expires_at > first.expires_at


async def test_an_expired_lease_is_taken_over_under_a_higher_token(leases: AsyncCollection[Doc]) -> None:
    a, b = Lease(leases, "duty", "a", ttl=0.3), Lease(leases, "duty", "b", ttl=0.3)
    held_by_a = await a.acquire()
    assert held_by_a is not None
    await asyncio.sleep(0.4)  # a stalled past its expiry
    held_by_b = await b.acquire()
    assert held_by_b is not None and held_by_b.token == held_by_a.token + 1
    assert await a.acquire() is None  # a, back, does not get it while b holds it
    await asyncio.sleep(0.4)
    again = await a.acquire()
    assert again is not None and again.token == held_by_b.token + 1  # a new holding: a new token


async def test_release_hands_the_lease_on_at_once_and_only_the_holder_releases(
    leases: AsyncCollection[Doc],
) -> None:
    a, b = Lease(leases, "duty", "a", ttl=30), Lease(leases, "duty", "b", ttl=30)
    held = await a.acquire()
    assert held is not None
    await b.release()  # not b's to release: nothing changes
    assert await b.acquire() is None
    await a.release()
    taken = await b.acquire()
    assert taken is not None and taken.token == held.token + 1


async def test_many_processes_asking_at_once_get_one_holder_and_tokens_only_grow(
    leases: AsyncCollection[Doc],
) -> None:
    tokens: list[int] = []
    for _ in range(5):  # five rounds of eight contenders, each round after the last expired
        contenders = [Lease(leases, "duty", f"p{i}-{uuid.uuid4().hex[:4]}", ttl=0.2) for i in range(8)]
        held = [h for h in await asyncio.gather(*(c.acquire() for c in contenders)) if h is not None]
        assert len(held) == 1
        tokens.append(held[0].token)
        await asyncio.sleep(0.25)
    assert tokens == sorted(set(tokens)) and tokens[0] == 1  # strictly growing


async def test_duty_leases_give_the_token_of_the_holding(leases: AsyncCollection[Doc]) -> None:
    """The outage worker's leases: a token, the same through renewals; None for another process."""
    one, other = DutyLeases(leases, "one"), DutyLeases(leases, "other")
    token = await one.hold("outage:clinic-a", ttl=0.3)
    assert token is not None
    assert await one.hold("outage:clinic-a", ttl=0.3) == token
    assert await other.hold("outage:clinic-a", ttl=0.3) is None
    assert await other.hold("outage:clinic-b", ttl=0.3) is not None  # a lease per duty
    await asyncio.sleep(0.4)
    assert await other.hold("outage:clinic-a", ttl=30) == token + 1
    # ``one``, stalled past its expiry, is refused the renewal: its step stops.
    assert await one.hold("outage:clinic-a", ttl=0.3) is None


async def test_the_outage_worker_stops_a_release_when_its_lease_changed_hands() -> None:
    """A renewal under another token: another process held the practice meanwhile (this one
    stalled past the expiry), so this step stops rather than load the same postings beside it."""
    from datetime import UTC, datetime

    from paypost.domain.model import LoadStatus, PostingKind
    from paypost.domain.posting import KeptMessage, Posting, PostingKey
    from paypost.handlers.outages import RELEASE_BATCH, OutageWorker

    def parked(n: int) -> tuple[Posting, KeptMessage]:
        posting = Posting(key=PostingKey("clinic-a", f"p-{n}"), kind=PostingKind.PAYMENT,
                          load_status=LoadStatus.PENDING, event_id=None, received_at=datetime.now(UTC))
        return posting, KeptMessage(body=b"{}", routing_key="payment.posted", message_id=None, headers={})

    class Postings:
        def __init__(self) -> None:
            self.pages = 0

        async def parked(self, practice_id: str, limit: int) -> list[tuple[Posting, KeptMessage]]:
            self.pages += 1  # never empty: the practice has more waiting than one batch
            return [parked(self.pages * RELEASE_BATCH + i) for i in range(2)]

    class Loader:
        def __init__(self) -> None:
            self.loaded: list[str] = []

        async def handle(self, message: KeptMessage, *, trying: bool = False) -> object:
            self.loaded.append(message.routing_key)
            return None

    class Leases:
        def __init__(self, tokens: list[int | None]) -> None:
            self.tokens = tokens

        async def hold(self, duty: str, ttl: float) -> int | None:
            return self.tokens.pop(0)

    for renewals, batches in (([7, 8], 2), ([7, 7, None], 3)):  # the renewals after each batch
        postings, loader = Postings(), Loader()
        worker = OutageWorker(None, postings, loader, Leases(renewals))  # type: ignore[arg-type]  # unused here
        await worker.step("clinic-a", None, token=7)
        assert len(loader.loaded) == 2 * batches  # 8: another held it; None: another holds it

