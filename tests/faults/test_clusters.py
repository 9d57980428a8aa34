"""The fault suite on RabbitMQ's and MongoDB's own clustering (issue 16, parts 4 and 5): a replica
set of three whose primary steps down or is killed, and a RabbitMQ cluster of three whose node
leading ``paypost.postings`` stops, each in the middle of a stream of payments (and, for MongoDB, of
a mapping fix healing a few hundred failures). One paypost, in this process, on the cluster."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any, Literal, Self

import aio_pika
import httpx
import pytest
from pydantic import SecretStr

from paypost.bench.load import TOKEN
from paypost.bootstrap import Paypost
from paypost.infra.mongo.audit_seals import AuditSealer
from paypost.infra.mongo.database import Collections
from paypost.infra.mongo.database import connect as mongo_connect
from paypost.infra.rabbit.broker import ClusterConnection, QueueInspector, connect, declare_topology, make_broker
from paypost.infra.rabbit.topology import BINDINGS, UNBOUND
from paypost.infra.rabbit.watch import watch_events
from paypost.infra.runtime.settings import Settings
from tests.support.cluster import RabbitCluster, ReplicaSet, rabbit_cluster, rabbit_cluster_possible, replica_set
from tests.support.faults import Figures, Flow, account, scale, setup_practice, until_final
from tests.support.payloads import payment_body
from tests.support.processes import GuardedProcess
from tests.support.services import Services
from tests.support.tokens import OPERATOR
from tests.support.waits import wait_for

# One worker runs this module: its replica set and its cluster start once, for its tests together.
# 600 s: a cluster that starts a node again (tests/support/cluster.py) does it inside the first test's time.
pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.xdist_group("clusters"),
              pytest.mark.timeout(600)]

HEAL_ACCOUNT = "acct-heal"
BULK_PATIENT = "EHR-77"
# Every quorum queue paypost declares (each must have a member on each node of the cluster).
QUORUM_QUEUES = [q.name for q in (*(b[0] for b in BINDINGS), *UNBOUND)
                 if (q.arguments or {}).get("x-queue-type") == "quorum"]


@pytest.fixture(scope="module")
def rs3() -> Iterator[ReplicaSet]:
    """The replica set of three, started by the first test that needs it, stopped once this module's
    tests are done (not at the session's end: the rest of the suite runs without its three mongods)."""
    with replica_set("rs3") as rs:
        yield rs


@pytest.fixture(scope="module")  # stopped with this module's tests, as rs3 is
def rabbit3() -> Iterator[RabbitCluster]:
    if not rabbit_cluster_possible():
        pytest.skip("needs /usr/lib/rabbitmq/bin/rabbitmq-server, run as root (README, the fault suite)")
    with rabbit_cluster(3) as cluster:
        yield cluster


class ClusterFlow(Flow):
    """The upstream publisher, on the cluster's URL list (it moves to another node as paypost does)."""

    async def __aenter__(self) -> Self:
        self.connection = await connect(self.url)
        self.channel = await self.connection.channel(publisher_confirms=True)
        return self


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[Paypost, httpx.AsyncClient, Collections]]:
    app = Paypost(settings, retry_seconds=120)
    await app.start()
    client = mongo_connect(settings.mongodb_uri)
    try:
        transport = httpx.ASGITransport(app=app.http_app(manage_lifecycle=False))
        async with httpx.AsyncClient(transport=transport, base_url="http://paypost",
                                     headers={"Authorization": f"Bearer {OPERATOR}"}) as api:
            yield app, api, Collections(client[settings.mongodb_db])
    finally:
        await app.stop()
        with contextlib.suppress(Exception):
            await client.drop_database(settings.mongodb_db)
        await client.close()


def rs_settings(rs: ReplicaSet, amqp_url: str, audit_sealer: Literal["inline", "process"] = "inline") -> Settings:
    return Settings(amqp_url=amqp_url, mongodb_uri=rs.uri, mongodb_db=f"rs3_{uuid.uuid4().hex[:8]}",
                    api_tokens=SecretStr(f"{OPERATOR}:operator"), audit_sealer=audit_sealer, ledger_attempts=3,
                    ledger_timeout=2)


async def make_failures(store: Collections, amqp_url: str, n: int) -> list[str]:
    """``n`` payments FAILED for want of the mapping of ``HEAL_ACCOUNT``."""
    ids = [f"f-{i}" for i in range(n)]
    async with Flow(amqp_url) as flow:
        await asyncio.gather(*[flow.publish(payment_body(payment_id=pid, patient_account_id=HEAL_ACCOUNT,
                                                         ehr_patient_id=None)) for pid in ids])
    await until_final(store, ids, timeout=120)
    assert await store.postings.count_documents({"payment_id": {"$in": ids}, "load_status": "FAILED"}) == n
    return ids


async def enter_mapping(api: httpx.AsyncClient, n: int) -> None:
    r = await api.put(f"/api/v1/practices/clinic-a/patient-accounts/{HEAL_ACCOUNT}/mapping",
                      json={"ehr_patient_id": "EHR-3"})
    assert r.status_code == 200, r.text
    assert r.json()["retried"] == n


async def assert_chain_verifies(app: Paypost, store: Collections) -> None:
    """Through the failover, the audit trail was sealed into one chain: every entry once, none altered."""
    await app.sealer.seal_all()
    result = await AuditSealer(store).verify()
    assert result.ok, result.problems[:5]
    assert result.unsealed == 0


async def assert_sealed_by_the_process(store: Collections, timeout: float = 90) -> None:
    """The sealer's own process (production's default) sealed everything into one chain by itself."""
    deadline = time.monotonic() + timeout
    while True:
        result = await AuditSealer(store).verify()
        assert result.ok, result.problems[:5]
        if result.unsealed == 0 or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    assert result.unsealed == 0
    assert result.seals > 1 and result.entries > 0


async def make_not_found(store: Collections, amqp_url: str, n: int) -> list[str]:
    """``n`` payments FAILED as PATIENT_NOT_FOUND (their patient not registered yet), then the
    patient registered: what an operator retries in bulk."""
    ids = [f"nf-{i}" for i in range(n)]
    async with Flow(amqp_url) as flow:
        await asyncio.gather(*[flow.publish(payment_body(payment_id=pid, patient_account_id=f"acct-nf-{i}",
                                                         ehr_patient_id=BULK_PATIENT)) for i, pid in enumerate(ids)])
    await until_final(store, ids, timeout=120)
    not_found = {"payment_id": {"$in": ids}, "load_error.code": "PATIENT_NOT_FOUND"}
    assert await store.postings.count_documents(not_found) == n
    await store.ehr_patients.insert_one({"_id": f"clinic-a/{BULK_PATIENT}", "practice_id": "clinic-a",
                                         "ehr_patient_id": BULK_PATIENT, "registered_at": datetime.now(UTC)})
    return ids


async def bulk_retry(api: httpx.AsyncClient, ids: list[str]) -> str:
    r = await api.post("/api/v1/postings/changes", json={"practice_id": "clinic-a", "retry": ids})
    assert r.status_code == 202, r.text
    return str(r.json()["operation_id"])


async def assert_operation_completed(api: httpx.AsyncClient, operation_id: str, ids: list[str],
                                     timeout: float = 120) -> None:
    """The operator's record of the bulk retry: completed, every item retried once."""
    deadline = time.monotonic() + timeout
    while True:
        r = await api.get(f"/api/v1/operations/{operation_id}")
        assert r.status_code == 200, r.text
        op = r.json()
        if op["status"] == "completed" or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert (op["status"], op["total"], op["done"]) == ("completed", len(ids), len(ids)), op.get("message")
    assert sorted(i["payment_id"] for i in op["items"]) == sorted(ids)
    assert {i["result"] for i in op["items"]} == {"retried"}


def assert_all_loaded(figures: Figures, n: int) -> None:
    assert (figures.lost, figures.double_posts, figures.pending, figures.failed, figures.cleared) == (0, 0, 0, 0, 0)
    assert figures.loaded == n


async def test_replica_set_primary_steps_down_mid_stream_and_mid_heal(
    rs3: ReplicaSet, amqp_url: str, report: list[Figures]
) -> None:
    """With production's default sealer (its own process), and an operator's bulk retry through
    Save Changes mid-heal, mid-stream."""
    n, healing, retrying = scale(2_000), scale(300), scale(200)
    settings = rs_settings(rs3, amqp_url, audit_sealer="process")
    async with running(settings) as (_, api, store):
        await setup_practice(store)
        failed = await make_failures(store, amqp_url, healing)
        not_found = await make_not_found(store, amqp_url, retrying)
        bodies = [payment_body(payment_id=f"sd-{i}", ehr_patient_id=f"EHR-{i % 5}") for i in range(n)]
        async with Flow(amqp_url) as flow:
            publishing = asyncio.create_task(flow.paced(bodies, rate=max(100.0, n / 12)))
            await asyncio.sleep(3)
            await asyncio.to_thread(rs3.step_down, await asyncio.to_thread(rs3.primary))  # mid-stream
            await asyncio.to_thread(rs3.primary)
            await enter_mapping(api, healing)
            operation_id = await bulk_retry(api, not_found)
            await asyncio.to_thread(rs3.step_down, await asyncio.to_thread(rs3.primary))  # mid-heal, mid-retry
            await publishing
        ids = [str(b["payment_id"]) for b in bodies]
        await until_final(store, ids + failed + not_found, timeout=300)
        await _until_loaded(store, failed + not_found, timeout=120)
        stream = await account(store, "rs3: primary stepped down twice, mid-stream", ids)
        healed = await account(store, "rs3: primary stepped down mid-heal", failed)
        retried = await account(store, "rs3: primary stepped down mid bulk retry", not_found)
        await assert_operation_completed(api, operation_id, not_found)
        await assert_sealed_by_the_process(store)
    report += [stream, healed, retried]
    assert_all_loaded(stream, n)
    assert_all_loaded(healed, healing)
    assert_all_loaded(retried, retrying)


async def test_replica_set_primary_killed_mid_stream_and_mid_heal(
    rs3: ReplicaSet, amqp_url: str, report: list[Figures]
) -> None:
    n, healing = scale(2_000), scale(300)
    settings = rs_settings(rs3, amqp_url)
    async with running(settings) as (app, api, store):
        await setup_practice(store)
        failed = await make_failures(store, amqp_url, healing)
        bodies = [payment_body(payment_id=f"kp-{i}", ehr_patient_id=f"EHR-{i % 5}") for i in range(n)]
        async with Flow(amqp_url) as flow:
            publishing = asyncio.create_task(flow.paced(bodies, rate=max(100.0, n / 12)))
            await asyncio.sleep(3)
            await enter_mapping(api, healing)
            killed = await asyncio.to_thread(rs3.primary)
            await asyncio.to_thread(killed.kill_9)  # mid-heal and mid-stream
            await asyncio.sleep(5)
            await asyncio.to_thread(killed.start, rs3.name)  # the same data folder
            await publishing
        ids = [str(b["payment_id"]) for b in bodies]
        await until_final(store, ids + failed, timeout=300)
        await _until_loaded(store, failed, timeout=120)
        stream = await account(store, "rs3: primary killed (-9) mid-stream, brought back", ids)
        healed = await account(store, "rs3: primary killed (-9) mid-heal", failed)
        await assert_chain_verifies(app, store)
    report += [stream, healed]
    assert_all_loaded(stream, n)
    assert_all_loaded(healed, healing)


async def _until_loaded(store: Collections, ids: list[str], timeout: float) -> None:
    """A heal cut short is run again with backoff: wait for it, up to ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await store.postings.count_documents({"payment_id": {"$in": ids}, "load_status": "LOADED"}) == len(ids):
            return
        await asyncio.sleep(0.5)


async def test_rabbit_cluster_node_leading_the_postings_queue_stopped_mid_stream(
    rabbit3: RabbitCluster, services: Services, report: list[Figures]
) -> None:
    n = scale(3_000)
    with rabbit3.vhost() as vhost:
        # The topology first, to find the leader; paypost then lists that node first, so every one
        # of its connections opens on the node that goes away.
        probe = make_broker(rabbit3.url(vhost), prefetch=10)
        await probe.connect()
        await declare_topology(probe)
        await probe.stop()
        leader = await asyncio.to_thread(rabbit3.leader, vhost, "paypost.postings")
        for queue in QUORUM_QUEUES:  # every quorum queue paypost declares: three members, one per node
            members = await asyncio.to_thread(rabbit3.members, vhost, queue)
            assert sorted(members) == sorted(node.name for node in rabbit3.nodes), queue
        nodes = [leader] + [node for node in rabbit3.nodes if node is not leader]
        url = ",".join(f"{node.url}{vhost}?reconnect_interval=1" for node in nodes)
        settings = Settings(amqp_url=url, mongodb_uri=services.mongodb_uri,
                            mongodb_db=f"rmq3_{uuid.uuid4().hex[:8]}", api_tokens=SecretStr(f"{OPERATOR}:operator"),
                            audit_sealer="inline")
        bodies = [payment_body(payment_id=f"rq-{i}", ehr_patient_id=f"EHR-{i % 5}") for i in range(n)]
        async with running(settings) as (app, _, store):
            await setup_practice(store)
            assert _nodes_of(app) == {f"127.0.0.1:{leader.port}"}
            async with ClusterFlow(url) as flow:
                publishing = asyncio.create_task(flow.paced(bodies, rate=max(100.0, n / 15)))
                await asyncio.sleep(4)
                await asyncio.to_thread(rabbit3.ctl, "stop_app", node=leader)
                moved = await _until_moved(app, leader.port, timeout=60)
                new_leader = await asyncio.to_thread(rabbit3.leader, vhost, "paypost.postings")
                await asyncio.sleep(3)
                await asyncio.to_thread(rabbit3.ctl, "start_app", node=leader)
                await publishing
            ids = [str(b["payment_id"]) for b in bodies]
            await until_final(store, ids, timeout=300)
            figures = await account(store, f"RabbitMQ cluster: {leader.name.split('@')[0]} (leading paypost.postings) "
                                    "stopped mid-stream, started again", ids)
    report.append(figures)
    assert moved, "paypost stayed on the stopped node"
    assert new_leader is not leader
    assert_all_loaded(figures, n)


def _nodes_of(app: Paypost) -> set[str]:
    """The nodes paypost's own connection and FastStream's are on."""
    found = set()
    for connection in (app.amqp._connection, app.broker._connection):
        if isinstance(connection, ClusterConnection) and connection.connected.is_set():
            found.add(connection.node)
    return found


async def _until_moved(app: Paypost, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(_connected(app)) == 2 and f"127.0.0.1:{port}" not in _nodes_of(app):
            return True
        await asyncio.sleep(0.2)
    return False


def _connected(app: Paypost) -> list[ClusterConnection]:
    return [c for c in (app.amqp._connection, app.broker._connection)
            if isinstance(c, ClusterConnection) and c.connected.is_set()]


async def test_the_live_feed_and_the_queue_depths_move_to_another_node(rabbit3: RabbitCluster) -> None:
    """The console's event subscription and the metrics' passive declares, on the first node of the
    list: that node stops, and both go on through another."""
    with rabbit3.vhost() as vhost:
        probe = make_broker(rabbit3.url(vhost), prefetch=10)
        await probe.connect()
        await declare_topology(probe)
        await probe.stop()
        first = rabbit3.nodes[0]
        url = rabbit3.url(vhost)
        inspector = QueueInspector(url)
        try:
            async with watch_events(url, ["#"]) as events:
                assert "paypost.postings" in await inspector.depths(["paypost.postings"])
                await asyncio.to_thread(rabbit3.ctl, "stop_app", node=first)
                try:
                    others = ",".join(f"{n.url}{vhost}" for n in rabbit3.nodes[1:])
                    deadline = time.monotonic() + 60
                    received = None
                    async with ClusterFlow(others) as flow:
                        assert flow.channel is not None
                        exchange = await flow.channel.get_exchange("paypost.events", ensure=False)
                        while received is None and time.monotonic() < deadline:
                            await exchange.publish(aio_pika.Message(b'{"n": 1}'), routing_key="posting.loaded.x")
                            with contextlib.suppress(TimeoutError):
                                received = await asyncio.wait_for(events.get(), 1.0)
                    assert received is not None and received.routing_key == "posting.loaded.x"
                    depths = await _depths_within(inspector, 30)
                    assert "paypost.postings" in depths
                finally:
                    await asyncio.to_thread(rabbit3.ctl, "start_app", node=first)
        finally:
            await inspector.close()


async def _depths_within(inspector: QueueInspector, seconds: float) -> dict[str, tuple[int, int]]:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return await inspector.depths(["paypost.postings"])
        except Exception:  # the inspector's connection is moving to another node
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def test_two_worker_processes_and_an_api_process_through_a_step_down_and_a_killed_sealer(
    rs3: ReplicaSet, amqp_url: str, report: list[Figures]
) -> None:
    """Many paypost processes (`paypost run --role worker` twice, `--role api` once, each with
    production's default sealer) on the replica set: a mapping fix through the API process, the
    primary stepped down mid-stream and mid-heal, then the worker whose sealer holds the lease
    killed (-9). The other worker goes on alone: nothing lost, nothing posted twice, its sealer
    takes the lease over (a higher token) and the chain verifies."""
    n, healing = scale(600), scale(150)
    db = f"rs3_many_{uuid.uuid4().hex[:8]}"
    processes = [GuardedProcess(amqp_url, rs3.uri, db, role=role) for role in ("api", "worker", "worker")]
    for process in processes:
        process.env.update({"PAYPOST_AUDIT_SEALER": "process", "PAYPOST_LEDGER_ATTEMPTS": "3",
                            "PAYPOST_LEDGER_TIMEOUT": "2"})
    api_process, workers = processes[0], processes[1:]
    client = mongo_connect(rs3.uri)
    store = Collections(client[db])
    try:
        for process in processes:
            await process.start()
        await setup_practice(store)
        failed = await make_failures(store, amqp_url, healing)
        lease = await _sealer_lease(store)
        sealing = next(w for w in workers if w.proc is not None and lease["holder"].split(":")[1] == str(w.proc.pid))
        bodies = [payment_body(payment_id=f"mp-{i}", ehr_patient_id=f"EHR-{i % 5}") for i in range(n)]
        async with httpx.AsyncClient(base_url=api_process.base, headers={"Authorization": f"Bearer {TOKEN}"},
                                     timeout=30) as api, Flow(amqp_url) as flow:
            publishing = asyncio.create_task(flow.paced(bodies, rate=max(50.0, n / 12)))
            await asyncio.sleep(2)
            await enter_mapping(api, healing)
            await asyncio.to_thread(rs3.step_down, await asyncio.to_thread(rs3.primary))  # mid-heal, mid-stream
            assert sealing.proc is not None
            sealing.proc.send_signal(signal.SIGKILL)
            sealing.proc.wait()
            await publishing
        ids = [str(b["payment_id"]) for b in bodies]
        await until_final(store, ids + failed, timeout=300)
        await _until_loaded(store, failed, timeout=120)
        stream = await account(store, "rs3, 2 workers + 1 API process: step-down, the sealing worker killed", ids)
        healed = await account(store, "rs3, 2 workers + 1 API process: mapping fixed through the API process", failed)
        # The killed worker's sealer, orphaned, may have sealed all there was before it went: a sealer
        # takes the lease only for work. Payments after its lease ended are the surviving worker's to seal.
        await _lease_ended(store, lease["holder"])
        after = [f"mp-after-{i}" for i in range(20)]
        async with Flow(amqp_url) as flow:
            for pid in after:
                await flow.publish(payment_body(payment_id=pid))
        await until_final(store, after, timeout=60)
        # Sealed (the surviving worker's paypost looks for work to seal at most every 30 s once there
        # was none, then wakes its sealer), and so under a lease taken over.
        await assert_sealed_by_the_process(store, timeout=180)
        taken_over = await _sealer_lease(store, held_after=lease["token"])
    finally:
        for process in processes:
            process.stop()
        with contextlib.suppress(Exception):
            await client.drop_database(db)
        await client.close()
    report += [stream, healed]
    assert_all_loaded(stream, n)
    assert_all_loaded(healed, healing)
    assert taken_over["token"] > lease["token"] and taken_over["holder"] != lease["holder"]


async def _lease_ended(store: Collections, holder: str) -> None:
    """Until ``holder`` no longer holds the sealer's lease: the killed worker's sealer, orphaned,
    stops its rounds, seals for at most 10 s more and releases it (or it expires, 30 s on)."""
    async def ended() -> bool:
        doc = await store.leases.find_one({"_id": "audit-sealer"})
        return doc is None or doc["holder"] != holder or doc["expires_at"] <= datetime.now(UTC)

    await wait_for(ended, timeout=60, interval=0.5)


async def _sealer_lease(store: Collections, held_after: int = 0, timeout: float = 60) -> dict[str, Any]:
    """The sealer's lease, once a sealer holds it under a token above ``held_after``: the killed
    worker's sealer, orphaned, seals what is left and releases it (or it expires, 30 s on), and
    the other worker's sealer takes it once there is something to seal (its paypost looks at most
    every 30 s while there was nothing)."""
    deadline = time.monotonic() + timeout
    while True:
        doc = await store.leases.find_one({"_id": "audit-sealer"})
        if (doc is not None and doc["token"] > held_after) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert doc is not None, "no sealer took the lease"
    return doc
