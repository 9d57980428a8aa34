"""The practice-management system's credentials (contract section 7): a bearer token or OAuth2
client credentials, write-only and encrypted at rest with PAYPOST_SECRET_KEY, rotated by
`paypost secrets rotate`; against the reference server over real HTTP, on the real database."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from paypost.bootstrap import Paypost
from paypost.domain.errors import LoadFailure
from paypost.domain.load_errors import LoadErrorCode
from paypost.infra.ledgers.http import HttpLedgers
from paypost.infra.ledgers.secrets import SecretBox, SecretKeyError
from paypost.infra.runtime.settings import Settings
from paypost.local.reference_ledger import Credentials, LedgerState
from paypost.testing.ledger_suite import PATIENT, payment_request
from tests.support.api_calls import wait_status
from tests.support.ledgers import LOCAL_HOSTS, http_integration, serve_reference_ledger
from tests.support.tokens import OPERATOR
from tests.support.upstream import Upstream

pytestmark = pytest.mark.integration

CANARY = "canary-secret-7c1e5d"


def sealed_integration(box: SecretBox, url: str, auth: dict[str, Any]) -> Any:
    """An integration as paypost stores it: the auth's secret sealed."""
    secret = auth.pop("token", None) or auth.pop("client_secret")
    return http_integration(url, auth={**auth, "sealed": box.seal(secret)})


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(secrets.token_urlsafe(32))


async def test_a_bearer_token_is_sent_and_a_missing_one_refused(box: SecretBox) -> None:
    http = HttpLedgers(attempts=2, default_timeout=5.0, hosts=LOCAL_HOSTS, secrets=box)
    state = LedgerState(patients={PATIENT}, credentials=Credentials(bearer=CANARY))
    try:
        async with serve_reference_ledger(state) as server:
            with_token = http.for_integration(sealed_integration(box, server.url, {"kind": "bearer", "token": CANARY}))
            assert (await with_token.post(payment_request("pay-b1"))).entry_id
            without = http.for_integration(http_integration(server.url))
            with pytest.raises(LoadFailure) as caught:
                await without.post(payment_request("pay-b2"))
            assert caught.value.code is LoadErrorCode.INTEGRATION_NOT_CONFIGURED
            assert "refused paypost's credentials" in (caught.value.detail or "")
            assert list(state.entries) == ["paypost:clinic-l:pay-b1"]
    finally:
        await http.close()


async def test_client_credentials_fetch_one_token_reuse_it_and_fetch_again_after_a_401(box: SecretBox) -> None:
    http = HttpLedgers(attempts=2, default_timeout=5.0, hosts=LOCAL_HOSTS, secrets=box)
    wanted = Credentials(client_id="paypost", client_secret=CANARY)
    state = LedgerState(patients={PATIENT}, credentials=wanted)
    try:
        async with serve_reference_ledger(state) as server:
            auth = {"kind": "oauth2_client_credentials", "token_url": f"{server.url}/oauth/token",
                    "client_id": "paypost", "client_secret": CANARY, "scope": "ledger"}
            integration = sealed_integration(box, server.url, auth)
            ledger = http.for_integration(integration)
            await asyncio.gather(*(ledger.post(payment_request(f"pay-o{i}")) for i in range(10)))
            assert len(wanted.issued) == 1  # one token for ten requests at once, cached
            again = http.for_integration(integration)  # a later payment of the practice: the same token
            await again.post(payment_request("pay-o10"))
            assert len(wanted.issued) == 1

            wanted.valid.clear()  # the system revokes it: the next request gets 401, then a new token
            await again.post(payment_request("pay-o11"))
            assert len(wanted.issued) == 2 and state.refused == 1
            assert len(state.entries) == 12
    finally:
        await http.close()


async def test_a_token_is_fetched_again_shortly_before_it_expires(box: SecretBox) -> None:
    http = HttpLedgers(attempts=2, default_timeout=5.0, hosts=LOCAL_HOSTS, secrets=box)
    # 2 s of use (paypost fetches again 30 s before the end): room for a loaded machine's first post.
    wanted = Credentials(client_id="paypost", client_secret=CANARY, token_lifetime=32.0)
    try:
        async with serve_reference_ledger(LedgerState(patients={PATIENT}, credentials=wanted)) as server:
            auth = {"kind": "oauth2_client_credentials", "token_url": f"{server.url}/oauth/token",
                    "client_id": "paypost", "client_secret": CANARY}
            ledger = http.for_integration(sealed_integration(box, server.url, auth))
            await ledger.post(payment_request("pay-e1"))
            await asyncio.sleep(2.2)
            await ledger.post(payment_request("pay-e2"))
            assert len(wanted.issued) == 2
    finally:
        await http.close()


def test_a_rotation_keeps_every_secret_open_with_the_new_key_alone() -> None:
    old, new = secrets.token_urlsafe(32), secrets.token_urlsafe(40)
    sealed = SecretBox(old).seal(CANARY)
    assert CANARY not in sealed
    both = SecretBox(f"{new},{old}")
    assert both.open(sealed) == CANARY  # while rotating, old seals still open
    resealed = both.reseal(sealed)
    assert SecretBox(new).open(resealed) == CANARY
    with pytest.raises(SecretKeyError):
        SecretBox(new).open(sealed)  # not rotated: the new key alone cannot open it
    with pytest.raises(SecretKeyError):
        SecretBox(old).open(resealed[:-4] + "AAAA")  # altered: refused, never garbage
    with pytest.raises(SecretKeyError, match="at least 32 random bytes"):
        SecretBox(secrets.token_urlsafe(16))


@pytest.fixture
async def keyed(settings: Settings) -> AsyncIterator[tuple[Paypost, httpx.AsyncClient]]:
    """paypost with a secret key, and an operator's client of its API."""
    app = Paypost(settings.model_copy(update={"secret_key": secrets.token_urlsafe(32)}), retry_seconds=10)
    await app.start()
    transport = httpx.ASGITransport(app=app.http_app(manage_lifecycle=False))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://paypost",
                                     headers={"Authorization": f"Bearer {OPERATOR}"}) as api:
            yield app, api
    finally:
        await app.stop()


async def test_credentials_are_write_only_sealed_at_rest_and_a_payment_loads_with_them(
    keyed: tuple[Paypost, httpx.AsyncClient], amqp_url: str, capsys: pytest.CaptureFixture[str],
) -> None:
    import aio_pika

    app, api = keyed
    state = LedgerState(patients={PATIENT}, credentials=Credentials(client_id="paypost", client_secret=CANARY))
    with capture_logs() as logs:
        async with serve_reference_ledger(state) as server:
            r = await api.put("/api/v1/practices/clinic-k", json={"name": "K", "enabled": True, "ledger": {
                "kind": "http", "base_url": server.url, "auth": {
                    "kind": "oauth2_client_credentials", "token_url": f"{server.url}/oauth/token",
                    "client_id": "paypost", "client_secret": CANARY}}})
            assert r.status_code == 200, r.text
            shown = (await api.get("/api/v1/practices/clinic-k")).json()["ledger"]["auth"]
            assert shown == {"kind": "oauth2_client_credentials", "token_url": f"{server.url}/oauth/token",
                             "client_id": "paypost", "configured": True}
            stored = await app.collections.practices.find_one({"_id": "clinic-k"})
            assert stored is not None and CANARY not in str(stored) and stored["ledger"]["auth"]["sealed"]

            connection = await aio_pika.connect(amqp_url)
            try:
                upstream = Upstream(await connection.channel(publisher_confirms=True))
                await upstream.payment(practice_id="clinic-k", payment_id="pay-k1", ehr_patient_id=PATIENT)
                await wait_status(api, "clinic-k", "pay-k1", "LOADED")
            finally:
                await connection.close()
            assert state.credentials is not None and len(state.credentials.issued) == 1
    everything = str(logs) + str(r.json()) + capsys.readouterr().out + str(await api.get("/api/v1/postings"))
    assert CANARY not in everything


@pytest.mark.api_only
async def test_a_secret_without_a_key_to_seal_it_is_refused_naming_the_variable(api: httpx.AsyncClient) -> None:
    r = await api.put("/api/v1/practices/clinic-n", json={"name": "N", "ledger": {
        "kind": "http", "base_url": "http://127.0.0.1:9/ledger", "auth": {"kind": "bearer", "token": CANARY}}})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "secret_key_missing" and "PAYPOST_SECRET_KEY" in r.json()["error"]["message"]
    assert CANARY not in r.text
    assert (await api.get("/api/v1/practices/clinic-n")).status_code == 404


async def test_paypost_secrets_rotate_without_a_key_says_so_and_changes_nothing(settings: Settings) -> None:
    env = {**os.environ, "PAYPOST_MONGODB_URI": settings.mongodb_uri, "PAYPOST_MONGODB_DB": settings.mongodb_db,
           "PAYPOST_SECRET_KEY": ""}
    env.pop("PAYPOST_SECRET_KEY_FILE", None)
    paypost = str(Path(sys.executable).with_name("paypost"))
    done = await asyncio.to_thread(subprocess.run, [paypost, "secrets", "rotate"], check=False, env=env,
                                   capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    said = " ".join(done.stderr.split())  # the console wraps long lines
    assert "PAYPOST_SECRET_KEY (or PAYPOST_SECRET_KEY_FILE) is not set: nothing to rotate with" in said


async def test_paypost_secrets_rotate_reseals_what_is_stored(settings: Settings, box: SecretBox) -> None:
    from paypost.infra.mongo.database import Collections, connect

    old, new = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    client = connect(settings.mongodb_uri)
    practices = Collections(client[settings.mongodb_db]).practices
    sealed = SecretBox(old).seal(CANARY)
    await practices.insert_one({"_id": "clinic-r", "name": "R", "enabled": True,
                                "ledger": {"kind": "http", "base_url": "https://93.184.216.34",
                                           "auth": {"kind": "bearer", "sealed": sealed}}})
    env = {**os.environ, "PAYPOST_MONGODB_URI": settings.mongodb_uri, "PAYPOST_MONGODB_DB": settings.mongodb_db,
           "PAYPOST_SECRET_KEY": f"{new},{old}"}
    paypost = str(Path(sys.executable).with_name("paypost"))
    try:
        done = await asyncio.to_thread(subprocess.run, [paypost, "secrets", "rotate"], check=False, env=env,
                                       capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "1 practice secret(s) sealed with the first key" in done.stdout
        doc = await practices.find_one({"_id": "clinic-r"})
        assert doc is not None
        assert SecretBox(new).open(doc["ledger"]["auth"]["sealed"]) == CANARY
    finally:
        await client.close()
