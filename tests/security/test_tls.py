"""Every link encrypted (contract section 9), against real TLS listeners this session starts: HTTPS
from `paypost run`, AMQP over TLS to a RabbitMQ node of its own, MongoDB to a mongod requiring TLS.

The certificates are made here (openssl), in a temporary folder removed at the end.
"""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
from pydantic import SecretStr
from pymongo import MongoClient
from pymongo.errors import ServerSelectionTimeoutError

from paypost.bootstrap import Paypost
from paypost.domain.errors import ServiceError
from paypost.infra.mongo.database import connect
from paypost.infra.runtime.settings import Settings
from paypost.local.servers import (
    RabbitNode,
    free_port,
    mongod_binary,
    rabbitmq_scripts,
    temporary_mongod,
    temporary_rabbitmq_node,
)
from tests.support.api_calls import wait_status
from tests.support.payloads import payment_body
from tests.support.services import Services
from tests.support.tls import Certificates, make_certificates, openssl_available
from tests.support.tokens import OPERATOR, TOKENS
from tests.support.upstream import Upstream
from tests.support.waits import wait_for

# One worker runs this module: its TLS servers start once, for its tests together.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("tls")]
PAYPOST = str(Path(sys.executable).with_name("paypost"))


@pytest.fixture(scope="module")  # its servers stop with this module
def certificates() -> Iterator[Certificates]:
    if not openssl_available():
        pytest.skip("openssl is not installed: the session cannot make its certificates")
    with tempfile.TemporaryDirectory(prefix="paypost-certs-") as folder:
        yield make_certificates(Path(folder))


@pytest.fixture(scope="module")  # its servers stop with this module
def tls_rabbit(certificates: Certificates) -> Iterator[RabbitNode]:
    """A RabbitMQ node of this session with a TLS listener (and a plain one), both on 127.0.0.1."""
    try:
        rabbitmq_scripts()
    except ServiceError as exc:
        pytest.skip(str(exc))
    with temporary_rabbitmq_node("pp-tls", certificates.rabbit) as node:
        yield node


@pytest.fixture
def amqps_url(tls_rabbit: RabbitNode, certificates: Certificates) -> Iterator[str]:
    """An ``amqps://`` URL of a vhost of this test on the TLS node, trusting the session's CA."""
    vhost = f"tls-{uuid.uuid4().hex[:8]}"
    tls_rabbit.ctl("add_vhost", vhost)
    tls_rabbit.ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    try:
        yield f"amqps://guest:guest@localhost:{tls_rabbit.tls_port}/{vhost}?cafile={certificates.ca}"
    finally:
        tls_rabbit.ctl("delete_vhost", vhost)


@pytest.fixture(scope="module")  # its servers stop with this module
def tls_mongodb_uri(certificates: Certificates) -> Iterator[str]:
    """A single-node replica set started with --tlsMode requireTLS; its URI (tls=true, tlsCAFile)."""
    try:
        mongod_binary()
    except ServiceError as exc:
        pytest.skip(str(exc))
    with temporary_mongod("paypost-mongo-tls-", tls=certificates.mongo) as uri:
        yield uri.replace("127.0.0.1", "localhost", 1)  # the name the certificate is for, as a user writes it


def settings_for(amqp_url: str, mongodb_uri: str) -> Settings:
    return Settings(amqp_url=amqp_url, mongodb_uri=mongodb_uri, mongodb_db=f"tls_{uuid.uuid4().hex[:8]}",
                    api_tokens=SecretStr(TOKENS), audit_sealer="inline")


@pytest.fixture
async def started() -> AsyncIterator[list[Paypost]]:
    """The paypost a test starts, stopped (and its database dropped) after it."""
    apps: list[Paypost] = []
    yield apps
    for app in apps:
        if app.consuming:
            await app.stop()
        else:
            await app.mongo.close()
        client = connect(app.settings.mongodb_uri)  # stop() closed paypost's own
        await client.drop_database(app.settings.mongodb_db)
        await client.close()


async def load_one_payment(app: Paypost, upstream_url: str) -> dict[str, Any]:
    """Start ``app``, register a practice, publish a payment over ``upstream_url``; the LOADED posting."""
    await app.start()
    transport = httpx.ASGITransport(app=app.http_app(manage_lifecycle=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://paypost",
                                 headers={"Authorization": f"Bearer {OPERATOR}"}) as api:
        r = await api.put("/api/v1/practices/clinic-a", json={"name": "A", "ledger": {"kind": "builtin"}})
        assert r.status_code == 200, r.text
        r = await api.put("/api/v1/practices/clinic-a/ehr-patients/EHR-1", json={})
        assert r.status_code == 200, r.text
        connection = await aio_pika.connect(upstream_url)
        try:
            upstream = Upstream(await connection.channel(publisher_confirms=True))
            body = await upstream.payment()
        finally:
            await connection.close()
        return await wait_status(api, "clinic-a", body["payment_id"], "LOADED")


async def test_a_payment_published_over_amqps_loads(
    amqps_url: str, services: Services, started: list[Paypost]
) -> None:
    app = Paypost(settings_for(amqps_url, services.mongodb_uri), retry_seconds=10)
    started.append(app)
    posting = await load_one_payment(app, amqps_url)
    assert posting["amount"] == "125.00"


async def test_amqps_with_a_ca_that_did_not_sign_the_broker_is_refused_clearly(
    tls_rabbit: RabbitNode, certificates: Certificates, services: Services, started: list[Paypost]
) -> None:
    url = f"amqps://guest:guest@localhost:{tls_rabbit.tls_port}/?cafile={certificates.other_ca}"
    app = Paypost(settings_for(url, services.mongodb_uri), retry_seconds=1)
    started.append(app)
    with pytest.raises(ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        await asyncio.wait_for(app.start(), timeout=30)


async def test_paypost_keeps_its_data_in_a_mongod_that_requires_tls(
    tls_mongodb_uri: str, amqp_url: str, started: list[Paypost]
) -> None:
    app = Paypost(settings_for(amqp_url, tls_mongodb_uri), retry_seconds=10)
    started.append(app)
    await load_one_payment(app, amqp_url)
    stored = await app.collections.postings.count_documents({"practice_id": "clinic-a"})
    assert stored == 1


def test_a_mongod_that_requires_tls_refuses_a_plain_client(tls_mongodb_uri: str) -> None:
    plain = tls_mongodb_uri.split("?")[0] + "?directConnection=true"
    client: MongoClient[dict[str, Any]] = MongoClient(plain, serverSelectionTimeoutMS=1500)
    try:
        with pytest.raises(ServerSelectionTimeoutError):
            client.admin.command("ping")
    finally:
        client.close()


def test_https_files_go_together(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYPOST_HTTP_TLS_CERT_FILE", "/etc/paypost/server.pem")
    with pytest.raises(ValueError, match="PAYPOST_HTTP_TLS_KEY_FILE is not set"):
        Settings()
    monkeypatch.setenv("PAYPOST_HTTP_TLS_CERT_FILE", "")  # empty is unset
    monkeypatch.setenv("PAYPOST_HTTP_TLS_KEY_FILE", "/etc/paypost/server.key")
    with pytest.raises(ValueError, match="PAYPOST_HTTP_TLS_CERT_FILE is not set"):
        Settings()
    monkeypatch.setenv("PAYPOST_HTTP_TLS_CERT_FILE", "/etc/paypost/server.pem")
    assert Settings().http_tls


def test_paypost_run_refuses_a_key_that_cannot_be_read(certificates: Certificates, tmp_path: Path) -> None:
    env = {**os.environ, "PAYPOST_HTTP_TLS_CERT_FILE": str(certificates.cert),
           "PAYPOST_HTTP_TLS_KEY_FILE": str(tmp_path / "missing.key"), "PAYPOST_DATA_DIR": str(tmp_path)}
    result = subprocess.run([PAYPOST, "run", "--no-local"], env=env, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "PAYPOST_HTTP_TLS_KEY_FILE" in result.stderr


def trusting(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


@pytest.fixture
def https_paypost(
    certificates: Certificates, amqps_url: str, tls_mongodb_uri: str, tmp_path: Path
) -> Iterator[str]:
    """`paypost run` as a process, every link encrypted: HTTPS served, amqps and MongoDB over TLS."""
    port = free_port()
    env = {**os.environ, "PAYPOST_AMQP_URL": amqps_url, "PAYPOST_MONGODB_URI": tls_mongodb_uri,
           "PAYPOST_MONGODB_DB": f"https_{uuid.uuid4().hex[:8]}", "PAYPOST_HTTP": f"127.0.0.1:{port}",
           "PAYPOST_API_TOKENS": TOKENS, "PAYPOST_DATA_DIR": str(tmp_path),
           "PAYPOST_HTTP_TLS_CERT_FILE": str(certificates.cert), "PAYPOST_HTTP_TLS_KEY_FILE": str(certificates.key)}
    proc = subprocess.Popen([PAYPOST, "run", "--no-local"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        yield f"localhost:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, output
        assert "Traceback" not in output, output


async def test_paypost_run_serves_https_only_over_encrypted_links(
    https_paypost: str, certificates: Certificates, amqps_url: str
) -> None:
    async with httpx.AsyncClient(base_url=f"https://{https_paypost}", verify=trusting(certificates.ca),
                                 headers={"Authorization": f"Bearer {OPERATOR}"}, timeout=5) as api:
        async def healthy() -> bool:
            try:
                return (await api.get("/healthz")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_for(healthy, timeout=60, interval=0.2)
        r = await api.put("/api/v1/practices/clinic-a", json={"name": "A", "ledger": {"kind": "builtin"}})
        assert r.status_code == 200, r.text
        r = await api.put("/api/v1/practices/clinic-a/ehr-patients/EHR-1", json={})
        assert r.status_code == 200, r.text
        connection = await aio_pika.connect(amqps_url)
        try:
            channel = await connection.channel(publisher_confirms=True)
            body = payment_body()
            await Upstream(channel).send("payment.posted", body)
        finally:
            await connection.close()
        posting = await wait_status(api, "clinic-a", body["payment_id"], "LOADED", timeout=20)
        assert posting["payment_id"] == body["payment_id"]
        assert (await api.get("/api/v1/postings", headers={"Authorization": "Bearer nope"})).status_code == 401
        console = await api.get("/")
        assert console.status_code == 200 and "text/html" in console.headers["content-type"]

    # The office's CLI holds the same encrypted link: the API over HTTPS, the private CA trusted.
    cli_env = {**os.environ, "PAYPOST_API_URL": f"https://{https_paypost}", "PAYPOST_API_KEY": OPERATOR,
               "SSL_CERT_FILE": str(certificates.ca), "COLUMNS": "250"}  # a table wide enough to show the ids
    listed = await asyncio.to_thread(subprocess.run, [PAYPOST, "postings", "--practice", "clinic-a"], env=cli_env,
                                     capture_output=True, text=True, timeout=60, check=False)
    assert listed.returncode == 0, listed.stderr
    assert body["payment_id"] in listed.stdout and "LOADED" in listed.stdout

    # No plain listener on that port: an http:// request gets no HTTP answer.
    with pytest.raises(httpx.TransportError):
        await asyncio.to_thread(httpx.get, f"http://{https_paypost}/healthz", timeout=5)
    # And the certificate is the one configured: a client trusting another CA refuses it.
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        await asyncio.to_thread(httpx.get, f"https://{https_paypost}/healthz", verify=trusting(certificates.other_ca),
                                timeout=5)
