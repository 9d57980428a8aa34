"""A dashboard's RabbitMQ user, made by `paypost dashboards grant`, sees one practice and nothing else
(contract section 6), on the real broker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import uuid
from pathlib import Path

import aio_pika
import aiormq.exceptions
import httpx
import pytest
from typer.testing import CliRunner

from paypost.bootstrap import Paypost
from paypost.cli import app
from paypost.infra.rabbit.broker_admin import practice_of, topic_read_pattern
from paypost.infra.rabbit.watch import WatchedEvent, watch_events
from paypost.local.servers import rabbitmqctl
from tests.support.api_calls import wait_status
from tests.support.services import Services
from tests.support.upstream import Upstream
from tests.support.waits import wait_for

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not shutil.which("rabbitmqctl"), reason="needs rabbitmqctl to make a user")]


def paypost_cli(*args: str) -> str:
    """`paypost <args>` in this process; its output (stdout and stderr) once it exited 0."""
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def test_the_topic_pattern_is_the_contracts_and_names_its_practice() -> None:
    pattern = topic_read_pattern("clinic-a")
    assert re.fullmatch(pattern, "posting.failed.clinic-a.PATIENT_NOT_MAPPED")
    assert re.fullmatch(pattern, "posting.loaded.clinic-a")
    assert not re.fullmatch(pattern, "posting.loaded.clinic-ab")
    assert practice_of(pattern) == "clinic-a"
    with pytest.raises(ValueError, match=r"A-Za-z0-9_-"):
        topic_read_pattern("clinic.a")  # a dot would let one practice's pattern reach another's keys


async def _bind(url: str, routing_key: str) -> None:
    """Bind an exclusive queue of the user's own to ``paypost.events`` with ``routing_key``."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind("paypost.events", routing_key=routing_key)
    finally:
        await connection.close()


async def _publish(url: str) -> None:
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange("paypost.events", ensure=False)
        await exchange.publish(aio_pika.Message(b"{}"), routing_key="posting.loaded.clinic-a")
    finally:
        await connection.close()


async def test_a_granted_user_binds_only_its_practices_keys_and_receives_only_its_events(
    services: Services, amqp_url: str, paypost: Paypost, api: httpx.AsyncClient, practice: str,
    upstream: Upstream, tmp_path: Path,
) -> None:
    if not services.local_rabbit:
        # A broker in a container (testcontainers, when Docker answers) or named by PAYPOST_TEST_AMQP_URL
        # has no rabbitmqctl here to make a user with; with PAYPOST_TESTS_NO_SKIP=1 this skip fails.
        pytest.skip("makes a RabbitMQ user with the local broker's rabbitmqctl; the broker of this session is "
                    "not local (a container, or PAYPOST_TEST_AMQP_URL)")
    vhost = amqp_url.rsplit("/", 1)[1]
    user = f"dash-{uuid.uuid4().hex[:8]}"
    await api.put("/api/v1/practices/clinic-b", json={"name": "Clinic B", "ledger": {"kind": "builtin"}})
    try:
        granted = await asyncio.to_thread(paypost_cli, "dashboards", "grant", "--practice", practice,
                                          "--user", user, "--vhost", vhost)
        found = re.search(r"password \(shown once; paypost keeps no copy\): ([0-9a-f]+)", granted)
        assert found, granted
        url = f"amqp://{user}:{found[1]}@127.0.0.1:5672/{vhost}"
        assert user in await asyncio.to_thread(paypost_cli, "dashboards", "list", "--vhost", vhost)
        listed = json.loads(await asyncio.to_thread(paypost_cli, "dashboards", "list", "--vhost", vhost, "--json"))
        assert {"user": user, "vhost": vhost, "practice_id": practice,
                "read_pattern": topic_read_pattern(practice)} in listed["items"]

        for allowed in ("posting.failed.clinic-a.#", "alert.opened.clinic-a.task", "posting.loaded.clinic-a"):
            await _bind(url, allowed)
        for refused in ("posting.failed.#", "posting.failed.clinic-b.#", "#", "*.*.clinic-a", "posting.loaded.*"):
            with pytest.raises(aiormq.exceptions.ChannelAccessRefused, match="ACCESS_REFUSED"):
                await _bind(url, refused)
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused, match="ACCESS_REFUSED"):
            await _publish(url)  # it reads; it never publishes

        # Real events from paypost: clinic-a's arrive; clinic-b's, which the platform's own watcher
        # (with every key) sees, do not.
        async with (watch_events(url, ["posting.failed.clinic-a.#", "posting.loaded.clinic-a"]) as dashboard,
                    watch_events(amqp_url, ["posting.failed.#"]) as platform):
            other = await upstream.payment(practice_id="clinic-b", ehr_patient_id=None, patient_account_id="b-1")
            failed = await upstream.payment(ehr_patient_id=None, patient_account_id="a-1")
            loaded = await upstream.payment()
            await wait_status(api, "clinic-b", other["payment_id"], "FAILED")
            await wait_status(api, "clinic-a", failed["payment_id"], "FAILED")
            await wait_status(api, "clinic-a", loaded["payment_id"], "LOADED")
            seen_by_platform = await _gather(platform, 2)
            assert {e.body["practice_id"] for e in seen_by_platform} == {"clinic-a", "clinic-b"}
            seen = await _gather(dashboard, 2)
            await asyncio.sleep(0.5)  # anything more (clinic-b's event) would have arrived by now
            assert dashboard.empty()
        assert {(e.routing_key, e.body["payment_id"]) for e in seen} == {
            ("posting.failed.clinic-a.PATIENT_NOT_MAPPED", failed["payment_id"]),
            ("posting.loaded.clinic-a", loaded["payment_id"]),
        }

        # Granting again with a password file changes the password; the access stays as it was.
        password_file = tmp_path / "password"
        password_file.write_text("-starts-with-a-dash\n")  # given on stdin: rabbitmqctl never reads it as an option
        await asyncio.to_thread(paypost_cli, "dashboards", "grant", "--practice", practice, "--user", user,
                                "--vhost", vhost, "--password-file", str(password_file))
        url = f"amqp://{user}:-starts-with-a-dash@127.0.0.1:5672/{vhost}"
        await _bind(url, "posting.failed.clinic-a.#")
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await _bind(url, "posting.failed.clinic-b.#")

        await asyncio.to_thread(paypost_cli, "dashboards", "revoke", "--user", user, "--vhost", vhost,
                                "--delete-user")
        with pytest.raises(aio_pika.exceptions.ProbableAuthenticationError):
            await aio_pika.connect(url)
    finally:
        with contextlib.suppress(Exception):
            rabbitmqctl("delete_user", user)


async def _gather(events: asyncio.Queue[WatchedEvent], count: int) -> list[WatchedEvent]:
    got: list[WatchedEvent] = []

    async def enough() -> bool:
        while not events.empty():
            got.append(events.get_nowait())
        return len(got) >= count

    await wait_for(enough)
    return got
