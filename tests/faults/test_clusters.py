"""The fault suite on RabbitMQ's and MongoDB's own clustering (issue 16, parts 4 and 5): a replica
set of three whose primary steps down or is killed, and a RabbitMQ cluster of three whose node
leading ``paypost.postings`` stops, each in the middle of a stream of payments (and, for MongoDB, of
a mapping fix healing a few hundred failures). One paypost, in this process, on the cluster."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Self

import aio_pika
import httpx
import pytest

from infra.broker import ClusterConnection, QueueInspector, connect, declare_topology, make_broker
from infra.mongo import Collections
from infra.mongo import connect as mongo_connect
from infra.settings import Settings
from infra.watch import watch_events
from paypost.bootstrap import Paypost
from tests.conftest import OPERATOR, payment_body
from tests.faults.conftest import Figures, account, scale
from tests.faults.test_faults import Flow, setup_practice, until_final
from tests.support.cluster import RabbitCluster, ReplicaSet, rabbit_cluster, rabbit_cluster_possible, replica_set
from tests.support.services import Services

pytestmark = [pytest.mark.integration, pytest.mark.faults]

HEAL_ACCOUNT = "acct-heal"


@pytest.fixture(scope="session")
def rs3() -> Iterator[ReplicaSet]:
    """The replica set of three, started by the first test that needs it, stopped at the session's end."""
    with replica_set("rs3") as rs:
        yield rs


@pytest.fixture(scope="session")
def rabbit3() -> Iterator[RabbitCluster]:
    if not rabbit_cluster_possible():
        pytest.skip("needs /usr/lib/rabbitmq/bin/rabbitmq-server, run as root (ENVIRONMENT.md)")
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


def rs_settings(rs: ReplicaSet, amqp_url: str) -> Settings:
    return Settings(amqp_url=amqp_url, mongodb_uri=rs.uri, mongodb_db=f"rs3_{uuid.uuid4().hex[:8]}",
                    api_tokens=f"{OPERATOR}:operator", audit_sealer="inline", ledger_attempts=3, ledger_timeout=2)


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
    from infra.audit_seals import AuditSealer

    await app.sealer.seal_all()
    result = await AuditSealer(store).verify()
    assert result.ok, result.problems[:5]
    assert result.unsealed == 0


def assert_all_loaded(figures: Figures, n: int) -> None:
    assert (figures.lost, figures.double_posts, figures.pending, figures.failed, figures.cleared) == (0, 0, 0, 0, 0)
    assert figures.loaded == n


async def test_replica_set_primary_steps_down_mid_stream_and_mid_heal(
    rs3: ReplicaSet, amqp_url: str, report: list[Figures]
) -> None:
    n, healing = scale(2_000), scale(300)
    settings = rs_settings(rs3, amqp_url)
    async with running(settings) as (app, api, store):
        await setup_practice(store)
        failed = await make_failures(store, amqp_url, healing)
        bodies = [payment_body(payment_id=f"sd-{i}", ehr_patient_id=f"EHR-{i % 5}") for i in range(n)]
        async with Flow(amqp_url) as flow:
            publishing = asyncio.create_task(flow.paced(bodies, rate=max(100.0, n / 12)))
            await asyncio.sleep(3)
            await asyncio.to_thread(rs3.step_down, await asyncio.to_thread(rs3.primary))  # mid-stream
            await asyncio.to_thread(rs3.primary)
            await enter_mapping(api, healing)
            await asyncio.to_thread(rs3.step_down, await asyncio.to_thread(rs3.primary))  # mid-heal, mid-stream
            await publishing
        ids = [str(b["payment_id"]) for b in bodies]
        await until_final(store, ids + failed, timeout=300)
        await _until_loaded(store, failed, timeout=120)
        stream = await account(store, "rs3: primary stepped down twice, mid-stream", ids)
        healed = await account(store, "rs3: primary stepped down mid-heal", failed)
        await assert_chain_verifies(app, store)
    report += [stream, healed]
    assert_all_loaded(stream, n)
    assert_all_loaded(healed, healing)


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
        members = await asyncio.to_thread(rabbit3.members, vhost, "paypost.postings")
        assert sorted(members) == sorted(node.name for node in rabbit3.nodes)  # three members, one per node
        nodes = [leader] + [node for node in rabbit3.nodes if node is not leader]
        url = ",".join(f"{node.url}{vhost}?reconnect_interval=1" for node in nodes)
        settings = Settings(amqp_url=url, mongodb_uri=services.mongodb_uri,
                            mongodb_db=f"rmq3_{uuid.uuid4().hex[:8]}", api_tokens=f"{OPERATOR}:operator",
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
