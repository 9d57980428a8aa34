"""The fault suite: whatever crashes and whatever is sent, every payment ends LOADED, FAILED or
CLEARED, none is posted twice, and every message is accounted for. Run on the real services."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import tempfile
import time
import uuid
from pathlib import Path

import aio_pika
import httpx
import pytest
from pydantic import SecretStr

from paypost.bootstrap import Paypost
from paypost.domain.errors import ServiceError
from paypost.infra.mongo.database import Collections, connect
from paypost.infra.runtime.settings import Settings
from paypost.local.servers import (
    free_port,
    rabbitmq_scripts,
    rabbitmqctl,
    start_mongod,
    temporary_rabbitmq_node,
    temporary_vhost,
)
from tests.support.faults import LOADED_MACHINE_TIMEOUT, Figures, Flow, account, scale, setup_practice, until_final
from tests.support.payloads import payment_body
from tests.support.processes import GuardedProcess
from tests.support.services import Services
from tests.support.tokens import OPERATOR

pytestmark = [pytest.mark.integration, pytest.mark.faults]


async def test_kill_9_the_consumer_every_2_seconds(settings: Settings, store: Collections,
                                                   report: list[Figures]) -> None:
    n = scale(10_000)
    bodies = [payment_body(payment_id=f"k-{i}", ehr_patient_id=f"EHR-{i % 5}") for i in range(n)]
    worker = GuardedProcess(settings.amqp_url, settings.mongodb_uri, settings.mongodb_db)
    await worker.start()
    kills = 0
    try:
        async with Flow(settings.amqp_url) as flow:
            publishing = asyncio.create_task(flow.paced(bodies, rate=max(100.0, n / 20)))
            # Killed every 2 s while the payments are published, and at least 3 times: a worker that
            # is slow to start again (a loaded machine) must not leave the scenario with fewer kills.
            while not publishing.done() or kills < 3:
                await asyncio.sleep(2)
                assert worker.proc is not None
                worker.proc.send_signal(signal.SIGKILL)
                worker.proc.wait()
                kills += 1
                await worker.start()
            await publishing
        await until_final(store, [str(b["payment_id"]) for b in bodies], timeout=600)
    finally:
        worker.stop()
    figures = await account(store, f"kill -9 every 2 s ({kills} kills)", [str(b["payment_id"]) for b in bodies])
    report.append(figures)
    assert (figures.lost, figures.double_posts, figures.pending) == (0, 0, 0)
    assert figures.loaded + figures.failed == n
    assert figures.failed == 0  # a kill never turns a good payment into a failure


async def test_broker_restart_mid_stream(settings: Settings, store: Collections, report: list[Figures]) -> None:
    """The broker's app stopped for 2 s and started again under a stream of payments. The broker is a
    node of this test's own (not the machine's, which the rest of the suite is using meanwhile)."""
    try:
        rabbitmq_scripts()
    except ServiceError as exc:
        pytest.skip(str(exc))
    n = scale(3_000)
    bodies = [payment_body(payment_id=f"b-{i}", ehr_patient_id=f"EHR-{i % 5}") for i in range(n)]
    with temporary_rabbitmq_node("pp-restart") as broker:
        own = settings.model_copy(update={"amqp_url": f"amqp://guest:guest@127.0.0.1:{broker.amqp_port}/"})
        app = Paypost(own, retry_seconds=120)
        await app.start()
        try:
            async with Flow(own.amqp_url) as flow:
                publishing = asyncio.create_task(flow.paced(bodies, rate=max(100.0, n / 15)))
                await asyncio.sleep(4)
                await asyncio.to_thread(broker.ctl, "stop_app")
                await asyncio.sleep(2)
                await asyncio.to_thread(broker.ctl, "start_app")
                await publishing
            await until_final(store, [str(b["payment_id"]) for b in bodies], timeout=300)
        finally:
            await app.stop()
    figures = await account(store, "broker restarted mid-stream", [str(b["payment_id"]) for b in bodies])
    report.append(figures)
    assert (figures.lost, figures.double_posts, figures.pending, figures.failed) == (0, 0, 0, 0)


async def test_mongodb_stopped_for_30_seconds_under_load(amqp_url: str, report: list[Figures]) -> None:
    down = float(os.environ.get("PAYPOST_FAULT_MONGO_DOWN", "30"))
    n = scale(3_000)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="paypost-fault-mongo-") as folder:
        proc = start_mongod(Path(folder) / "db", port)
        uri = f"mongodb://127.0.0.1:{port}/?replicaSet=rs0"
        settings = Settings(amqp_url=amqp_url, mongodb_uri=uri, mongodb_db="fault",
                            api_tokens=SecretStr(f"{OPERATOR}:operator"))
        client = connect(uri)
        c = Collections(client["fault"])
        await setup_practice(c)
        app = Paypost(settings, retry_seconds=down * 4)
        await app.start()
        bodies = [payment_body(payment_id=f"m-{i}", ehr_patient_id=f"EHR-{i % 5}") for i in range(n)]
        try:
            async with Flow(amqp_url) as flow:
                publishing = asyncio.create_task(flow.paced(bodies, rate=max(100.0, n / 10)))
                await asyncio.sleep(3)
                proc.terminate()
                proc.wait(timeout=30)
                await asyncio.sleep(down)
                proc = await asyncio.to_thread(start_mongod, Path(folder) / "db", port)
                await publishing
            await until_final(c, [str(b["payment_id"]) for b in bodies], timeout=300)
            figures = await account(c, f"MongoDB stopped {down:.0f} s", [str(b["payment_id"]) for b in bodies])
        finally:
            await app.stop()
            await client.close()
            proc.terminate()
            proc.wait(timeout=30)
    report.append(figures)
    assert (figures.lost, figures.double_posts, figures.pending, figures.failed) == (0, 0, 0, 0)


@pytest.mark.skipif(not shutil.which("rabbitmqctl"), reason="needs the local broker's rabbitmqctl")
async def test_a_stop_is_bounded_when_the_broker_and_the_database_are_gone(services: Services) -> None:
    """An operator stopping paypost during an outage: it stops within its deadline (it used to
    wait for the services to come back, forever), and leaves no sealer process behind."""
    if not services.local_rabbit:
        pytest.skip("removes a vhost of the local broker")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="paypost-fault-stop-") as folder, \
            temporary_vhost("paypost-stop") as vhost:
        proc = start_mongod(Path(folder) / "db", port)
        amqp_url = f"{services.amqp_url.rstrip('/')}/{vhost}"
        settings = Settings(amqp_url=amqp_url, mongodb_uri=f"mongodb://127.0.0.1:{port}/?replicaSet=rs0",
                            mongodb_db="stop", api_tokens=SecretStr(f"{OPERATOR}:operator"), stop_timeout=5,
                            audit_sealer="process")
        app = Paypost(settings, retry_seconds=120)
        await app.start()
        try:
            async with Flow(amqp_url) as flow:
                for i in range(100):  # batches in hand when the services go
                    await flow.publish(payment_body(payment_id=f"s-{i}"))
            assert app.sealer_process is not None
            sealer = app.sealer_process.pid
            assert sealer is not None
            proc.terminate()
            proc.wait(timeout=30)
            rabbitmqctl("delete_vhost", vhost)
            await asyncio.sleep(1)

            started = time.monotonic()
            await asyncio.wait_for(app.stop(), timeout=60)
            took = time.monotonic() - started
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
    assert took < 15, f"stop took {took:.1f} s with stop_timeout=5"
    assert not app.consuming
    assert _gone(sealer)


async def test_each_message_delivered_2_to_5_times_to_two_consumers(
    settings: Settings, store: Collections, report: list[Figures]
) -> None:
    n = scale(2_000)
    rng = random.Random(11)
    first, second = Paypost(settings), Paypost(settings)
    await first.start()
    await second.start()
    bodies = [payment_body(payment_id=f"d-{i}", ehr_patient_id=f"EHR-{i % 5}") for i in range(n)]
    copies = 0
    try:
        async with Flow(settings.amqp_url) as flow:
            deliveries = []
            for body in bodies:
                deliveries += [body if k % 2 == 0 else {**body, "event_id": str(uuid.uuid4())}
                               for k in range(rng.randint(2, 5))]
            rng.shuffle(deliveries)
            copies = len(deliveries)
            await asyncio.gather(*[flow.publish(d) for d in deliveries])
        await until_final(store, [str(b["payment_id"]) for b in bodies], timeout=300)
        await asyncio.sleep(1)
    finally:
        await first.stop()
        await second.stop()
    figures = await account(store, f"{copies} deliveries of {n} payments, two consumers",
                            [str(b["payment_id"]) for b in bodies])
    report.append(figures)
    assert (figures.lost, figures.double_posts, figures.pending, figures.failed) == (0, 0, 0, 0)


async def test_reference_ledger_drops_and_5xx(settings: Settings, store: Collections, report: list[Figures]) -> None:
    import uvicorn

    from paypost.local.reference_ledger import Faults, LedgerState, create_reference_ledger

    n = scale(1_000)
    state = LedgerState(patients={f"EHR-{i}" for i in range(5)},
                        faults=Faults(drop_after_commit_rate=0.1, error_rate=0.1))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_reference_ledger(state), host="127.0.0.1", port=port,
                                           log_level="critical", lifespan="off"))
    serving = asyncio.create_task(server.serve())
    await store.practices.update_one({"_id": "clinic-a"}, {"$set": {
        "ledger": {"kind": "http", "base_url": f"http://127.0.0.1:{port}", "timeout_seconds": LOADED_MACHINE_TIMEOUT}}})
    app = Paypost(settings.model_copy(update={"ledger_attempts": 6}))
    await app.start()
    ids = [f"h-{i}" for i in range(n)]
    try:
        async with Flow(settings.amqp_url) as flow:
            await asyncio.gather(*[flow.publish(payment_body(payment_id=pid, ehr_patient_id=f"EHR-{i % 5}"))
                                   for i, pid in enumerate(ids)])
        # What got no answer after its attempts waits for the system (parked, or HELD) and loads by
        # itself: nobody retries anything.
        await until_final(store, ids, timeout=300)
    finally:
        await app.stop()
        server.should_exit = True
        await serving
    entries = [{"payment_id": e["payment_id"]} for e in state.entries.values()]
    figures = await account(store, "ledger drops 10% after commit and fails 10% with 5xx", ids, ledger_entries=entries)
    report.append(figures)
    assert (figures.lost, figures.double_posts, figures.pending, figures.failed) == (0, 0, 0, 0)
    # The faults really happened, and committed entries whose response was lost were found again
    # by the lookup before any re-post. (A post the client gave up on, its answer too slow on a
    # busy machine, may be posted again: the idempotency key makes it the same entry.)
    assert state.dropped > 0 and state.errors > 0
    assert state.reposted_after_drop == 0


async def test_a_removed_binding_is_detected_and_nothing_is_lost(
    settings: Settings, store: Collections, paypost: Paypost, report: list[Figures]
) -> None:
    connection = await aio_pika.connect(settings.amqp_url)
    channel = await connection.channel()
    queue = await channel.get_queue("paypost.postings", ensure=True)
    await queue.unbind("paypost.payments", "payment.posted")
    n = scale(200)
    bodies = [payment_body(payment_id=f"u-{i}", ehr_patient_id="EHR-1") for i in range(n)]
    try:
        async with Flow(settings.amqp_url) as flow:
            for body in bodies:
                await flow.publish(body)
        await until_final(store, [str(b["payment_id"]) for b in bodies], timeout=120)
    finally:
        await queue.bind("paypost.payments", "payment.posted")
        await connection.close()
    figures = await account(store, "payment.posted binding removed", [str(b["payment_id"]) for b in bodies])
    report.append(figures)
    assert (figures.lost, figures.double_posts, figures.pending, figures.failed) == (0, 0, 0, 0)
    from paypost.handlers import metrics

    assert metrics.UNROUTED.labels("payment.posted")._value.get() >= n


@pytest.mark.api_only
async def test_a_command_that_cannot_be_routed_is_reported_not_lost(
    settings: Settings, paypost: Paypost, api: httpx.AsyncClient, store: Collections
) -> None:
    connection = await aio_pika.connect(settings.amqp_url)
    channel = await connection.channel()
    queue = await channel.get_queue("paypost.commands.postings", ensure=True)
    await queue.unbind("paypost.commands", "posting.retry")
    try:
        r = await api.post("/api/v1/postings/changes", json={"practice_id": "clinic-a", "retry": ["x"]})
    finally:
        await queue.bind("paypost.commands", "posting.retry")
        await connection.close()
    assert r.status_code == 503
    assert "posting.retry" in r.json()["error"]["message"]


def _gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for its parent counts as gone)."""
    status = Path(f"/proc/{pid}/status")
    return not status.exists() or "zombie" in status.read_text()
