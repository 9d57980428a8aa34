"""Fixtures: the real RabbitMQ and MongoDB, one vhost and one database per test."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from typing import Any

import aio_pika
import httpx
import orjson
import pytest
from pydantic import SecretStr

from paypost.bootstrap import Paypost
from paypost.infra.runtime.settings import Settings
from tests.support import canaries
from tests.support.services import Services, find_services

pytest_plugins = ["tests.support.log_guard"]  # no log line of the suite names a patient (contract section 12)

OPERATOR = "op-token"
VIEWER = "view-token"
TOKENS = f"{OPERATOR}:operator:alice,{VIEWER}:viewer:victor,op2-token:operator:bob"


# Skips in CI fail (PAYPOST_TESTS_NO_SKIP=1, set by .ci/run): a test that skips there because openssl,
# rabbitmq-server, the wheel's mongod or a local broker is missing would pass unseen. A test that is
# meant to skip somewhere says so with @pytest.mark.may_skip(reason=...), and then still may.
NO_SKIP = os.environ.get("PAYPOST_TESTS_NO_SKIP") == "1"
_skipped: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "may_skip(reason): this test may skip even with PAYPOST_TESTS_NO_SKIP=1, for the reason given")


def _skip_reason(report: pytest.CollectReport | pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple):  # (file, line, "Skipped: why")
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if not NO_SKIP or not report.skipped or hasattr(report, "wasxfail") or item.get_closest_marker("may_skip"):
        return
    reason = _skip_reason(report)
    _skipped.append(f"{item.nodeid}: {reason}")
    report.outcome = "failed"  # the test fails, saying why it would have skipped
    report.longrepr = f"skipped with PAYPOST_TESTS_NO_SKIP=1 (a skip fails here): {reason}"


def pytest_collectreport(report: pytest.CollectReport) -> None:
    # A module skipped as a whole (allow_module_level, importorskip) cannot be turned into a failing
    # test without ending the session at collection; it fails the session at its end instead.
    if NO_SKIP and report.skipped:
        _skipped.append(f"{report.nodeid}: {_skip_reason(report)}")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _skipped:
        terminalreporter.section("skipped with PAYPOST_TESTS_NO_SKIP=1: each fails the session")
        for line in _skipped:
            terminalreporter.write_line(line)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _skipped and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    with find_services() as found:
        yield found


@pytest.fixture
def amqp_url(services: Services) -> Iterator[str]:
    with services.vhost() as url:
        yield url


@pytest.fixture
def settings(services: Services, amqp_url: str) -> Settings:
    return Settings(
        amqp_url=amqp_url,
        mongodb_uri=services.mongodb_uri,
        mongodb_db=f"paypost_test_{uuid.uuid4().hex[:10]}",
        api_tokens=SecretStr(TOKENS),
        ledger_attempts=3,
        ledger_timeout=1.0,
        alert_escalate_after=600,
        audit_sealer="inline",  # one process per test; the sealer's own process is tested on its own
        ledger_allowed_hosts="127.0.0.0/8,localhost",  # the reference ledger the tests serve themselves
        ledger_hold_after=3.0,  # an outage is held after 3 s, then tried every second (contract 7)
        ledger_probe_every=1.0,
    )


@pytest.fixture
async def paypost(settings: Settings) -> AsyncIterator[Paypost]:
    app = Paypost(settings, retry_seconds=10)
    await app.start()
    try:
        yield app
    finally:
        if app.consuming:
            await app.stop()
        await _drop(settings)


async def _drop(settings: Settings) -> None:
    from paypost.infra.mongo.database import connect

    client = connect(settings.mongodb_uri)
    await client.drop_database(settings.mongodb_db)
    await client.close()


@pytest.fixture
async def api(paypost: Paypost) -> AsyncIterator[httpx.AsyncClient]:
    app = paypost.http_app(manage_lifecycle=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://paypost",
                                 headers={"Authorization": f"Bearer {OPERATOR}"}) as client:
        yield client


class Upstream:
    """An upstream system: any AMQP client following the contract (plain aio-pika here)."""

    def __init__(self, channel: aio_pika.abc.AbstractChannel) -> None:
        self.channel = channel

    async def raw(self, routing_key: str, body: bytes, *, message_id: str | None = None,
                  headers: dict[str, Any] | None = None, exchange: str = "paypost.payments") -> None:
        ex = await self.channel.get_exchange(exchange, ensure=False)
        await ex.publish(
            aio_pika.Message(body, message_id=message_id, headers=headers, content_type="application/json",
                             delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=routing_key,
        )

    async def send(self, routing_key: str, body: dict[str, Any], **kwargs: Any) -> None:
        kwargs.setdefault("message_id", body.get("event_id") or body.get("command_id"))
        await self.raw(routing_key, orjson.dumps(body), **kwargs)

    async def payment(self, **fields: Any) -> dict[str, Any]:
        body = payment_body(**fields)
        await self.send("payment.posted", body)
        return body

    async def refund(self, **fields: Any) -> dict[str, Any]:
        body = {"event_id": str(uuid.uuid4()), "practice_id": "clinic-a", "refund_id": f"ref-{uuid.uuid4().hex[:8]}",
                "payment_id": "pay-1", "amount": "10.00", "currency": "USD",
                "occurred_at": "2026-11-25T10:00:00+00:00", **fields}
        await self.send("payment.refunded", body)
        return body


def payment_body(**fields: Any) -> dict[str, Any]:
    body = {"event_id": str(uuid.uuid4()), "practice_id": "clinic-a", "payment_id": f"pay-{uuid.uuid4().hex[:8]}",
            "patient_account_id": canaries.ACCOUNT, "ehr_patient_id": canaries.PATIENT, "amount": "125.00",
            "currency": "USD", "method": "card", "occurred_at": "2026-11-25T10:00:00+00:00", "memo": canaries.MEMO,
            **fields}
    return {k: v for k, v in body.items() if v is not None}


@pytest.fixture
async def upstream(amqp_url: str, paypost: Paypost) -> AsyncIterator[Upstream]:
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel(publisher_confirms=True)
    try:
        yield Upstream(channel)
    finally:
        await connection.close()


async def wait_for(check: Callable[[], Awaitable[Any]], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy; fail with what it last returned."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")


@pytest.fixture
async def practice(api: httpx.AsyncClient) -> str:
    """A practice with the built-in ledger and patients EHR-1 and EHR-2 registered."""
    r = await api.put("/api/v1/practices/clinic-a", json={"name": "Clinic A", "ledger": {"kind": "builtin"},
                                                           "enabled": True})
    assert r.status_code == 200, r.text
    for ehr in ("EHR-1", "EHR-2"):
        r = await api.put(f"/api/v1/practices/clinic-a/ehr-patients/{ehr}", json={})
        assert r.status_code == 200, r.text
    return "clinic-a"
