"""paypost works with only the broker permissions the README documents."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import uuid

import aio_pika
import httpx
import pytest
from pydantic import SecretStr

from paypost.bootstrap import Paypost
from paypost.infra.runtime.settings import Settings
from paypost.local.servers import rabbitmqctl
from tests.support.api_calls import wait_status
from tests.support.payloads import payment_body
from tests.support.services import Services
from tests.support.tokens import OPERATOR, TOKENS
from tests.support.upstream import Upstream

pytestmark = pytest.mark.integration

# As documented in the README ("Broker permissions").
CONFIGURE = r"^(paypost\..*|amq\.gen-.*|amq_.*)$"
WRITE = r"^(paypost\..*|amq\.gen-.*|amq_.*|amq\.default)$"
READ = r"^(paypost\..*|amq\.gen-.*|amq_.*)$"


@pytest.mark.skipif(not shutil.which("rabbitmqctl"), reason="needs rabbitmqctl to make a user")
async def test_paypost_runs_with_the_documented_permissions_alone(services: Services, amqp_url: str) -> None:
    if not services.local_rabbit:
        # A broker in a container (testcontainers, when Docker answers) or named by PAYPOST_TEST_AMQP_URL
        # has no rabbitmqctl here to make a user with; with PAYPOST_TESTS_NO_SKIP=1 this skip fails.
        pytest.skip("makes a RabbitMQ user with the local broker's rabbitmqctl; the broker of this session is "
                    "not local (a container, or PAYPOST_TEST_AMQP_URL)")
    vhost = amqp_url.rsplit("/", 1)[1]
    # token_hex: a token_urlsafe password may start with "-", which rabbitmqctl reads as an option
    user, password = f"paypost-{uuid.uuid4().hex[:6]}", secrets.token_hex(12)
    rabbitmqctl("add_user", user, password)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, user, CONFIGURE, WRITE, READ)
        settings = Settings(amqp_url=f"amqp://{user}:{password}@127.0.0.1:5672/{vhost}",
                            mongodb_uri=services.mongodb_uri, mongodb_db=f"perm_{uuid.uuid4().hex[:8]}",
                            api_tokens=SecretStr(TOKENS))
        app = Paypost(settings)
        await app.start()
        connection = await aio_pika.connect(amqp_url)  # the upstream publisher, with its own account
        upstream = Upstream(await connection.channel(publisher_confirms=True))
        feed = app.event_hub.subscribe()  # the console's live feed: a queue of its own
        heard = asyncio.ensure_future(anext(feed))  # listening from now on
        try:
            transport = httpx.ASGITransport(app=app.http_app(manage_lifecycle=False))
            async with httpx.AsyncClient(transport=transport, base_url="http://paypost",
                                         headers={"Authorization": f"Bearer {OPERATOR}"}) as api:
                await api.put("/api/v1/practices/clinic-a", json={"name": "A", "ledger": {"kind": "builtin"}})
                await api.put("/api/v1/practices/clinic-a/ehr-patients/EHR-1", json={})
                failed = payment_body(ehr_patient_id=None, patient_account_id="acct-p")
                await upstream.send("payment.posted", failed)
                await wait_status(api, "clinic-a", failed["payment_id"], "FAILED")  # dead-lettering works
                r = await api.put("/api/v1/practices/clinic-a/patient-accounts/acct-p/mapping",
                                  json={"ehr_patient_id": "EHR-1"})
                assert r.status_code == 200
                await wait_status(api, "clinic-a", failed["payment_id"], "LOADED")  # replays work
                await upstream.send("payment.posted", payment_body(ehr_patient_id=None, patient_account_id="acct-q"))
                event = await asyncio.wait_for(heard, timeout=15)  # the live feed hears paypost's events
                assert event.routing_key.startswith(("posting.", "alert."))
                r = await api.post("/api/v1/postings/changes",
                                   json={"practice_id": "clinic-a", "retry": [failed["payment_id"]]})
                assert r.status_code == 202  # commands publish
                assert (await api.get("/metrics")).status_code == 200
        finally:
            heard.cancel()
            await feed.aclose()
            await connection.close()
            await app.stop()
    finally:
        with contextlib.suppress(Exception):
            rabbitmqctl("delete_user", user)
