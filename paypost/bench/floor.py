"""The floor's consumer, a process of its own (as paypost is): the least a payment's load needs on
paypost's stack, and nothing more. ``python -m paypost.bench.floor URL MONGODB DB COLLECTION QUEUE N``.

For each batch of deliveries (taken by paypost's own batch consumer, ``infra/rabbit/intake.py``): each body read as
paypost reads it (strict JSON, then its pydantic model), one ``$in`` read of the patients'
mappings, one insert of the LOADED rows (a row as paypost writes one, into a collection with the
postings' indexes), one ``posting.loaded`` event each on paypost's framed publisher with their
confirms, then one ack. No audit trail, no seal, no outcome rules, no metrics: what paypost adds
to this is its cost over the floor. It prints ``ready``, then the wall-clock time its last batch was loaded.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from bson import Decimal128

from paypost.domain.posting import KeptMessage
from paypost.infra.mongo.database import CODECS, Collections, connect
from paypost.infra.rabbit.broker import Amqp, FramedPublisher
from paypost.infra.rabbit.intake import BatchConsumer, Settle
from paypost.schemas.messages import PaymentPosted
from paypost.schemas.reading import read_message
from paypost.schemas.topics import EVENTS_EXCHANGE, PAYMENT_POSTED

BATCH = 500
PREFETCH = 800
WITHIN = 600  # seconds: a floor that loads nothing in that time ends, and says so (the bench reads no time)


def row(template: dict[str, Any], payment: PaymentPosted, body: bytes, ehr_patient_id: str | None,
        now: datetime) -> dict[str, Any]:
    """A LOADED row of ``template``'s shape (a row paypost wrote in the same run) for this payment."""
    return {**template, "_id": f"{payment.practice_id}/{payment.payment_id}", "payment_id": payment.payment_id,
            "practice_id": payment.practice_id, "patient_account_id": payment.patient_account_id,
            "ehr_patient_id": ehr_patient_id or payment.ehr_patient_id, "amount": Decimal128(payment.amount),
            "received_at": now, "updated_at": now, "message": {**template["message"], "body": body}}


def event(payment: PaymentPosted, now: datetime) -> bytes:
    """A ``posting.loaded`` event of the shape paypost publishes: no patient identifier (contract section 12)."""
    return orjson.dumps({
        "event_id": str(uuid.uuid4()), "occurred_at": now.isoformat(), "practice_id": payment.practice_id,
        "event_type": "posting.loaded", "payment_id": payment.payment_id, "kind": "payment", "load_status": "LOADED",
        "load_error": None, "merchant_transfer_id": payment.merchant_transfer_id, "amount": str(payment.amount),
        "currency": payment.currency})


async def consume(amqp: str, mongo: str, db: str, collection: str, queue: str, n: int) -> float:
    client = connect(mongo)
    c = Collections(client[db])
    template = await c.postings.find_one({"load_status": "LOADED"})
    assert template is not None, "the floor copies a row paypost loaded in the same run"
    rows = c.db.get_collection(collection, codec_options=CODECS)
    amqp_connection = Amqp(amqp)  # as paypost's: its batch consumers and its publisher on one connection
    publisher = FramedPublisher(amqp_connection)
    loaded, last = 0, asyncio.Event()

    async def load(messages: list[KeptMessage]) -> list[Settle]:
        nonlocal loaded
        await _load(messages, template, c, rows, publisher)
        loaded += len(messages)
        if loaded >= n:
            last.set()
        return [Settle.ACK] * len(messages)

    consumer = BatchConsumer(queue, load, prefetch=PREFETCH, lanes=1, max_batch=BATCH)
    try:
        await consumer.start(await amqp_connection.open())
        print("ready", flush=True)  # noqa: T201 - the bench reads it from this process's stdout
        await last.wait()
        return time.time()  # the last batch's rows written and its events confirmed; its ack follows
    finally:
        await consumer.stop()
        await publisher.close()
        await amqp_connection.close()
        await client.close()


async def _load(batch: list[KeptMessage], template: dict[str, Any], c: Collections, rows: Any,
                publisher: FramedPublisher) -> None:
    payments = []
    for delivery in batch:
        # Published to the floor's queue by name: read as the payment.posted it is.
        read = read_message(KeptMessage(delivery.body, PAYMENT_POSTED, None), 1 << 20, {PAYMENT_POSTED: PaymentPosted})
        assert isinstance(read, PaymentPosted)
        payments.append((read, delivery.body))
    ids = list({f"{p.practice_id}/{p.patient_account_id}" for p, _ in payments})
    found = c.mappings.find({"_id": {"$in": ids}}, {"ehr_patient_id": 1})
    mapped = {d["_id"]: d["ehr_patient_id"] async for d in found}
    now = datetime.now(UTC)
    chosen = [(p, body, mapped.get(f"{p.practice_id}/{p.patient_account_id}")) for p, body in payments]
    await rows.insert_many([row(template, p, body, ehr, now) for p, body, ehr in chosen], ordered=False)
    await asyncio.gather(*(publisher(EVENTS_EXCHANGE, f"posting.loaded.{p.practice_id}", event(p, now),
                                     message_id=uuid.uuid4().hex, broadcast=True) for p, _, _ in chosen))


def main() -> None:
    url, mongodb, database, into, name, count = sys.argv[1:7]
    loading = asyncio.wait_for(consume(url, mongodb, database, into, name, int(count)), WITHIN)
    if sys.platform == "win32":
        last = asyncio.run(loading)
    else:  # the loop paypost serves on
        import uvloop

        last = uvloop.run(loading)
    print(f"{last:.6f}", flush=True)  # noqa: T201 - read by the bench


if __name__ == "__main__":
    main()
