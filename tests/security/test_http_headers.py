"""The console's and the API's protective headers, and a live feed opened without a key in its URL
(contract section 12)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from paypost.bootstrap import Paypost
from paypost.infra.mongo.database import connect
from paypost.infra.runtime.settings import Settings
from tests.support.http_server import serve_asgi
from tests.support.tokens import OPERATOR, VIEWER

pytestmark = pytest.mark.integration

PAGES = ["/", "/console/console.js", "/console/console.css", "/api/v1/postings?practice_id=clinic-a",
         "/api/v1/whoami", "/api/v1/openapi.json", "/healthz", "/api/v1/nothing-here"]


def _client(paypost: Paypost, scheme: str = "http", role: str = "all") -> httpx.AsyncClient:
    app = paypost.http_app(manage_lifecycle=False, role=role)  # type: ignore[arg-type]  # a ProcessRole
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"{scheme}://paypost",
                             headers={"Authorization": f"Bearer {OPERATOR}"})


@pytest.mark.api_only
@pytest.mark.parametrize("path", PAGES)
async def test_every_answer_carries_the_protective_headers(paypost: Paypost, path: str) -> None:
    async with _client(paypost) as client:
        r = await client.get(path)
    assert r.status_code < 500
    csp = {d.split(" ", 1)[0]: d.split(" ", 1)[1:] for d in r.headers["content-security-policy"].split("; ")}
    assert csp["script-src"] == ["'self'"]  # no 'unsafe-inline', no other origin
    assert csp["style-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["default-src"] == ["'none'"]
    assert all("http" not in " ".join(v) and "unsafe" not in " ".join(v) for v in csp.values())
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert "strict-transport-security" not in r.headers  # plain HTTP: a browser would ignore it anyway


@pytest.mark.api_only
async def test_over_tls_answers_ask_browsers_to_keep_to_https(paypost: Paypost) -> None:
    for role in ("all", "worker"):
        async with _client(paypost, "https", role) as client:
            r = await client.get("/healthz")
        assert r.headers["strict-transport-security"].startswith("max-age=31536000")
        assert r.headers["x-content-type-options"] == "nosniff"


@pytest.mark.api_only
async def test_no_docs_page_and_the_console_loads_nothing_from_another_origin(paypost: Paypost) -> None:
    async with _client(paypost) as client:
        assert (await client.get("/api/v1/docs")).status_code == 404
        assert (await client.get("/api/v1/openapi.json")).status_code == 200
        index = (await client.get("/")).text
    assert "<script" in index and "src=\"/console/" in index
    assert "http://" not in index and "https://" not in index and "//cdn" not in index
    assert "<style" not in index and " style=" not in index and " on" + "click=" not in index
    scripts = [line for line in index.splitlines() if "<script" in line]
    assert all(" src=" in line for line in scripts), "an inline script would be refused by the CSP"


@pytest.fixture
async def served(paypost: Paypost) -> AsyncIterator[str]:
    """The API on a real HTTP server: a live feed streams (httpx's in-process transport waits for its end)."""
    async with serve_asgi(paypost.http_app(manage_lifecycle=False)) as url:
        try:
            yield url
        finally:
            await paypost.event_hub.close()  # ends the open streams, so the server can stop


async def _ticket(client: httpx.AsyncClient, token: str = OPERATOR) -> str:
    r = await client.post("/api/v1/events/tickets", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 201, r.text
    assert 0 < r.json()["expires_in"] <= 60
    ticket: str = r.json()["ticket"]
    return ticket


async def test_a_ticket_opens_the_live_feed_once(served: str) -> None:
    async with httpx.AsyncClient(base_url=served, timeout=10) as client:
        ticket = await _ticket(client)
        assert OPERATOR not in ticket
        async with client.stream("GET", "/api/v1/events/stream", params={"ticket": ticket}) as feed:
            assert feed.status_code == 200
            assert await anext(feed.aiter_lines()) == ": connected"
        again = await client.get("/api/v1/events/stream", params={"ticket": ticket})
        assert again.status_code == 401 and "used" in again.json()["error"]["message"]
        # A key in the URL opens nothing: not the old ?access_token=, nor a key passed as a ticket.
        assert (await client.get("/api/v1/events/stream", params={"access_token": OPERATOR})).status_code == 401
        assert (await client.get("/api/v1/events/stream", params={"ticket": OPERATOR})).status_code == 401
        # A ticket opens the live feed only.
        other = await _ticket(client)
        assert (await client.get("/api/v1/whoami", params={"ticket": other})).status_code == 401
        assert (await client.post("/api/v1/events/tickets", params={"ticket": other})).status_code == 401


@pytest.mark.api_only
async def test_a_ticket_carries_its_keys_scope_and_lapses(paypost: Paypost, settings: Settings) -> None:
    async with _client(paypost) as client:
        ticket = await _ticket(client, VIEWER)
        client.headers.pop("Authorization")
        # The viewer's ticket is the viewer's: taken by the keys, it says who it was issued to.
        who, _ = await paypost.application.keys.admit_ticket(ticket, "127.0.0.1")
        assert who.name == "victor" and who.role.value == "viewer"
    async with _client(paypost) as client:
        late = await _ticket(client)
    mongo = connect(settings.mongodb_uri)
    try:  # it was issued a minute ago: expired
        await mongo[settings.mongodb_db]["feed_tickets"].update_many(
            {}, {"$set": {"expires_at": datetime.now(UTC) - timedelta(seconds=1)}})
    finally:
        await mongo.close()
    async with _client(paypost) as client:
        r = await client.get("/api/v1/events/stream", params={"ticket": late}, headers={"Authorization": ""})
    assert r.status_code == 401


@pytest.mark.api_only
async def test_any_api_process_accepts_a_ticket_once(paypost: Paypost, settings: Settings) -> None:
    other = Paypost(settings)  # a second API process of the same database
    try:
        async with _client(paypost) as client:
            ticket = await _ticket(client)
        who, _ = await other.application.keys.admit_ticket(ticket, "127.0.0.1")
        assert who.name == "alice"
        from paypost.handlers.keys import UnknownKey

        with pytest.raises(UnknownKey):
            await paypost.application.keys.admit_ticket(ticket, "127.0.0.1")
    finally:
        await other.mongo.close()


def test_secrets_in_the_settings_are_never_shown() -> None:
    from pydantic import SecretStr

    key = "k" * 43
    settings = Settings(api_tokens=SecretStr("tok-123:admin"), secret_key=SecretStr(key),
                        amqp_url="amqp://paypost:hunter2@broker:5672/", mongodb_uri="mongodb://u:hunter3@db/")
    assert "**" in repr(settings.api_tokens) and "**" in repr(settings.secret_key)
    shown = repr(settings) + str(settings)
    assert "tok-123" not in shown and key not in shown and "hunter2" not in shown and "hunter3" not in shown
    dumped = settings.model_dump_json()
    assert "tok-123" not in dumped and key not in dumped
    assert settings.tokens["tok-123"].role == "admin" and settings.secret_keys == key
