"""The payment balances' conditional writes (``infra/mongo/reversals.py``) agree with the rule
they apply (``paypost.domain.reversals.may_take``), on the real MongoDB, for random sequences of
refunds, voids, won disputes, repeats and give-backs."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from paypost.domain.errors import LoadFailure
from paypost.domain.posting import PostingKey
from paypost.domain.reversals import Taken, may_take
from paypost.infra.mongo.database import Collections, connect, ensure_indexes
from paypost.infra.mongo.reversals import MongoPaymentBalances
from tests.support.services import Services

pytestmark = pytest.mark.integration

PAYMENT = PostingKey("clinic-b", "pay-1")


@pytest.fixture
async def collections(services: Services) -> AsyncIterator[Collections]:
    client = connect(services.mongodb_uri)
    c = Collections(client[f"balances_{uuid.uuid4().hex[:10]}"])
    await ensure_indexes(c)
    try:
        yield c
    finally:
        await client.drop_database(c.db.name)
        await client.close()


async def test_the_store_takes_exactly_what_the_rule_allows(collections: Collections) -> None:
    rng = random.Random(26)
    balances = MongoPaymentBalances(collections)
    for round_ in range(20):
        amount = Decimal(rng.choice(["100.00", "55.55", "10.00"]))
        await collections.postings.delete_many({})
        await collections.postings.insert_one({"_id": "clinic-b/pay-1", "practice_id": "clinic-b",
                                               "payment_id": "pay-1", "kind": "payment", "amount": amount,
                                               "load_status": "LOADED"})
        model: list[Taken] = []
        for step in range(15):
            posting_id = f"r-{rng.randrange(6)}"
            if rng.random() < 0.2:
                await balances.give_back(PAYMENT, posting_id)
                model = [t for t in model if t.posting_id != posting_id]
                continue
            wanted = None if rng.random() < 0.15 else Decimal(rng.choice(["-20.00", "10.00", "30.00", "45.55"]))
            try:
                expected: Decimal | None = may_take(amount, model, posting_id, wanted)
            except LoadFailure:
                expected = None

            counted = await balances.take(PAYMENT, posting_id, wanted)

            assert counted == expected, (round_, step, posting_id, wanted, model)
            if expected is not None and all(t.posting_id != posting_id for t in model):
                model.append(Taken(posting_id, expected))
            found = await balances.taken(PAYMENT)
            assert found is not None
            assert found == (amount, [(t.posting_id, t.amount) for t in model])
            doc = await collections.postings.find_one({"_id": "clinic-b/pay-1"})
            assert doc is not None and doc.get("reversed_total", Decimal(0)) == sum(
                (t.amount for t in model), Decimal(0))


async def test_nothing_is_taken_from_a_payment_that_is_not_loaded(collections: Collections) -> None:
    balances = MongoPaymentBalances(collections)
    await collections.postings.insert_one({"_id": "clinic-b/pay-1", "practice_id": "clinic-b", "payment_id": "pay-1",
                                           "kind": "payment", "amount": Decimal("10.00"), "load_status": "FAILED"})

    assert await balances.take(PAYMENT, "r-1", Decimal("1.00")) is None
    assert await balances.take(PAYMENT, "v-1", None) is None
    assert await balances.taken(PAYMENT) == (Decimal("10.00"), [])
    assert await balances.taken(PostingKey("clinic-b", "nothing")) is None
