"""The session's hooks, and the service fixtures every area shares: the real RabbitMQ and MongoDB,
one vhost and one database per test, paypost on them, its API, an upstream publisher, and the
practice most tests start from.

Helpers live in ``tests/support/`` (the upstream client, payload builders, waits, API reads); each
area's own fixtures in its ``conftest.py``.

A test that only calls the API is marked ``api_only`` (``pytestmark`` or ``@pytest.mark.api_only``):
its paypost starts without consumers and background loops (``Paypost.start(consume=False)``), which
is cheaper to start and stop. A test that publishes a payment, or waits for a sweep, keeps the whole
paypost; ``upstream`` refuses to serve an ``api_only`` test, as nothing would consume what it sends.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import uuid
from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any

import aio_pika
import httpx
import pytest
from pydantic import SecretStr

from paypost.bootstrap import Paypost
from paypost.infra.runtime.settings import Settings
from tests.support.api_calls import builtin_practice
from tests.support.services import Services, find_services
from tests.support.tokens import OPERATOR, TOKENS
from tests.support.upstream import Upstream
from tests.support.workers import hand_over, in_worker, taken_back

pytest_plugins = ["tests.support.log_guard"]  # no log line of the suite names a patient (contract section 12)

# Skips in CI fail (PAYPOST_TESTS_NO_SKIP=1, set by .ci/run): a test that skips there because openssl,
# rabbitmq-server, the wheel's mongod or a local broker is missing would pass unseen. A test that is
# meant to skip somewhere says so with @pytest.mark.may_skip(reason=...), and then still may.
NO_SKIP = os.environ.get("PAYPOST_TESTS_NO_SKIP") == "1"
_skipped: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "may_skip(reason): this test may skip even with PAYPOST_TESTS_NO_SKIP=1, for the reason given")
    config.addinivalue_line(
        "markers", "api_only: the test's paypost serves the HTTP API only (no consumer, no background loop)")


# The areas whose tests run longest go first: spread over the workers (pyproject.toml's addopts), a
# fault scenario of minutes left to the end would keep the run going after the others finished.
FIRST = ("tests/faults/", "tests/browser/")


# A test on the event loop is cancelled this long before pytest-timeout's alarm (pyproject.toml's
# ``timeout``, or the test's own mark): its ``finally`` blocks and fixtures then stop what it started
# and it fails with the line it waited on. The alarm itself stops the loop mid-step, from outside,
# and leaves the worker's loop and fixtures broken, so that the worker's later tests error too.
LOOP_GRACE = 20.0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def area(item: pytest.Item) -> int:
        return next((i for i, prefix in enumerate(FIRST) if item.nodeid.startswith(prefix)), len(FIRST))

    items.sort(key=area)  # stable: within an area, the files' own order
    for item in items:
        if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(item.obj):
            limit = _timeout(config, item) - LOOP_GRACE
            if limit > LOOP_GRACE:
                item.obj = _within(item.obj, limit)


def _timeout(config: pytest.Config, item: pytest.Item) -> float:
    """pytest-timeout's limit for ``item``: its ``timeout`` mark's, else the configured one (0: none)."""
    mark = item.get_closest_marker("timeout")
    if mark is not None and (mark.args or "timeout" in mark.kwargs):
        return float(mark.args[0] if mark.args else mark.kwargs["timeout"] or 0)
    return float(config.getini("timeout") or 0)


def _within(test: Any, seconds: float) -> Any:
    @functools.wraps(test)
    async def bounded(*args: Any, **kwargs: Any) -> Any:
        scope = asyncio.timeout(seconds)
        try:
            async with scope:
                return await test(*args, **kwargs)
        except TimeoutError as exc:
            if scope.expired():
                raise TimeoutError(f"still running after {seconds:.0f} s: cancelled {LOOP_GRACE:.0f} s before "
                                   "pytest-timeout's limit, so that its clean-up runs") from exc
            raise

    return bounded


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
        for line in dict.fromkeys(_skipped):  # each worker collects every module: a module's skip once
            terminalreporter.write_line(line)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if in_worker(session.config):  # the controller names them and fails the session (tests.support.workers)
        hand_over(session.config, "paypost_skipped", _skipped)
    elif _skipped and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook, in the controller
def pytest_testnodedown(node: Any, error: object) -> None:
    _skipped.extend(taken_back(node, "paypost_skipped"))


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


def api_only(request: pytest.FixtureRequest) -> bool:
    """Whether the requesting test is marked ``api_only``."""
    return request.node.get_closest_marker("api_only") is not None


@pytest.fixture
def paypost_adapters() -> dict[str, Any]:
    """Adapters the ``paypost`` fixture is built with instead of the real ones (``Paypost``'s keyword
    parameters: ``publish``, ``clock``, ``ledgers``); a test module or class overrides this."""
    return {}


@pytest.fixture
async def paypost(settings: Settings, paypost_adapters: dict[str, Any],
                  request: pytest.FixtureRequest) -> AsyncIterator[Paypost]:
    """paypost on the test's vhost and database: whole (consumers and background loops), or the
    HTTP API only for a test marked ``api_only``."""
    only_api = api_only(request)
    app = Paypost(settings, retry_seconds=10, **paypost_adapters)
    await app.start(consume=not only_api)
    try:
        yield app
    finally:
        if app.consuming or only_api:  # a test may have stopped the whole paypost itself
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


@pytest.fixture
async def upstream(amqp_url: str, paypost: Paypost, request: pytest.FixtureRequest) -> AsyncIterator[Upstream]:
    if api_only(request):
        pytest.fail("upstream publishes to paypost's consumers, and an api_only test starts none: "
                    "drop the api_only mark")
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel(publisher_confirms=True)
    try:
        yield Upstream(channel)
    finally:
        await connection.close()


@pytest.fixture
async def practice(api: httpx.AsyncClient) -> str:
    """A practice with the built-in ledger and patients EHR-1 and EHR-2 registered."""
    return await builtin_practice(api)
