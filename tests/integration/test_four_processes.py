"""Four `paypost run` processes on one broker vhost and one database, as a user would run them
(issue 16, "done when"): they load a stream of payments, each exactly once, and the audit trail
their four sealers sealed together passes `paypost audit verify`."""

from __future__ import annotations

import asyncio
import functools
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from paypost.infra.mongo.database import Collections, connect
from tests.support.faults import setup_practice
from tests.support.ledgers import builtin_entries
from tests.support.payloads import payment_body
from tests.support.processes import GuardedProcess
from tests.support.services import Services
from tests.support.upstream import Upstream
from tests.support.waits import wait_for

pytestmark = pytest.mark.integration

PROCESSES = 4
N = 400


async def test_four_paypost_processes_load_each_payment_once_and_their_audit_chain_verifies(
    services: Services, amqp_url: str,
) -> None:
    import aio_pika

    db = f"four_{os.urandom(4).hex()}"
    client = connect(services.mongodb_uri)
    store = Collections(client[db])
    await setup_practice(store)
    processes = [GuardedProcess(amqp_url, services.mongodb_uri, db) for _ in range(PROCESSES)]
    for process in processes:
        process.env["PAYPOST_AUDIT_SEALER"] = "process"  # production's default: a sealer each
    try:
        await asyncio.gather(*(p.start() for p in processes))
        bodies = [payment_body(payment_id=f"four-{i}", ehr_patient_id=f"EHR-{i % 5}") for i in range(N)]
        rng = random.Random(4)
        sent = bodies + [b for b in bodies if rng.random() < 0.2]  # some delivered twice, as upstream may
        rng.shuffle(sent)
        ids = [b["payment_id"] for b in bodies]
        # In two halves, the second sent once the first is loaded and sealed while the processes run:
        # a chain of several seals, whatever the sealers' rhythm (a stop seals the rest in one).
        halves = [[b for b in sent if int(b["payment_id"].split("-")[1]) < N // 2],
                  [b for b in sent if int(b["payment_id"].split("-")[1]) >= N // 2]]
        connection = await aio_pika.connect(amqp_url)
        try:
            upstream = Upstream(await connection.channel(publisher_confirms=True))
            for half, loaded in zip(halves, (N // 2, N), strict=True):
                await asyncio.gather(*(upstream.send("payment.posted", b) for b in half))
                await wait_for(functools.partial(_loaded, store, ids, loaded), timeout=120, interval=0.5)
                if loaded < N:
                    await wait_for(functools.partial(_sealed, store), timeout=90, interval=0.5)
        finally:
            await connection.close()
        consumers = await _consumers_of_postings(amqp_url)
    finally:
        for process in processes:
            process.stop()  # SIGTERM: each sealer seals what is left, then its paypost stops
    try:
        assert consumers >= PROCESSES  # the four shared the deliveries
        entries = Counter(e["payment_id"] for e in await builtin_entries(store, practice_id="clinic-a", refund_id=None))
        assert sorted(entries) == sorted(ids) and set(entries.values()) == {1}  # each loaded exactly once
        seals = await store.db["audit_seals"].count_documents({})
        verified = await asyncio.to_thread(
            subprocess.run, [str(Path(sys.executable).with_name("paypost")), "audit", "verify"],
            env={**os.environ, "PAYPOST_MONGODB_URI": services.mongodb_uri, "PAYPOST_MONGODB_DB": db},
            capture_output=True, text=True, timeout=120)
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "TAMPERED" not in verified.stdout
        assert f"{seals} seals" in verified.stdout and "0 not sealed yet" in verified.stdout, verified.stdout
        assert seals > 1
    finally:
        await client.drop_database(db)
        await client.close()


async def _loaded(store: Collections, ids: list[str], n: int) -> bool:
    return await store.postings.count_documents({"payment_id": {"$in": ids}, "load_status": "LOADED"}) >= n


async def _sealed(store: Collections) -> bool:
    return await store.db["audit_seals"].count_documents({}) > 0


async def _consumers_of_postings(amqp_url: str) -> int:
    from tests.support.upstream import queue_depth

    return (await queue_depth(amqp_url, "paypost.postings"))[1]
