"""PAYPOST_AMQP_URL as a list of the brokers of one cluster: how it is read, refused, and walked.

The failover itself, on a real cluster of three, is tests/faults/test_clusters.py."""

from __future__ import annotations

import asyncio

import aiormq
import pytest
from pydantic import ValidationError
from yarl import URL

from paypost.infra.rabbit.broker import _first_answering, connect, connection_class
from paypost.infra.runtime.settings import Settings, amqp_nodes
from paypost.local.servers import free_port


def test_one_broker_is_a_list_of_one() -> None:
    assert amqp_nodes("amqp://guest:guest@127.0.0.1:5672/") == ["amqp://guest:guest@127.0.0.1:5672/"]


def test_several_brokers_are_full_urls_comma_separated() -> None:
    text = "amqps://u:p@h1:5671/v?cafile=/ca.pem, amqps://u:p@h2:5671/v?cafile=/ca.pem,amqps://u:p@h3/v?cafile=/ca.pem"
    assert amqp_nodes(text) == ["amqps://u:p@h1:5671/v?cafile=/ca.pem", "amqps://u:p@h2:5671/v?cafile=/ca.pem",
                                "amqps://u:p@h3/v?cafile=/ca.pem"]


def test_a_comma_in_a_password_stays_in_its_url() -> None:
    assert amqp_nodes("amqp://u:a,b@h1/v,amqp://u:a,b@h2/v") == ["amqp://u:a,b@h1/v", "amqp://u:a,b@h2/v"]


@pytest.mark.parametrize(("bad", "says"), [
    ("amqp://u:p@h1:5672/,h2:5673", "each broker of a list is a full URL"),
    ("h1:5672", "is not an amqp:// or amqps:// URL"),
    ("http://h1/", "is not an amqp:// or amqps:// URL"),
    ("amqp://u:p@h1/a,amqp://u:p@h2/b", "only host and port differ"),
    ("amqp://u:p@h1/v,amqps://u:p@h2/v", "only host and port differ"),
    ("amqp://u:p@h1/v,amqp://w:p@h2/v", "only host and port differ"),
    ("amqp://h1:5672/,amqp://h1/", "names h1:5672 twice"),
    ("amqp://h1:port/", "port that is not a number"),
])
def test_a_list_that_is_not_one_cluster_is_refused_with_a_reason(bad: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        amqp_nodes(bad)


def test_a_refused_url_never_shows_its_password() -> None:
    with pytest.raises(ValueError, match="PAYPOST_AMQP_URL") as refused:
        amqp_nodes("amqp://u:s3cret@h1/a,amqp://u:s3cret@h2/b")
    assert "s3cret" not in str(refused.value)


def test_settings_refuse_a_bad_list_at_start() -> None:
    with pytest.raises(ValidationError, match="each broker of a list is a full URL"):
        Settings(amqp_url="amqp://guest:guest@h1:5672/,h2:5672")


async def test_each_new_attempt_goes_to_the_next_node_round_the_list() -> None:
    """aio-pika drops the transport before each attempt; the connection moves on there."""
    cls = connection_class("amqp://g:g@h1:1/v,amqp://g:g@h2:2/v,amqp://g:g@h3:3/v")
    connection = cls(URL("amqp://g:g@h1:1/v"))
    seen = [connection.url.port]
    for _ in range(4):
        connection.transport = None  # what RobustConnection does before Connection.connect
        seen.append(connection.url.port)
    assert seen == [1, 1, 2, 3, 1]  # the first attempt keeps the node connect() chose


async def test_one_broker_never_moves() -> None:
    connection = connection_class("amqp://g:g@h1:1/v")(URL("amqp://g:g@h1:1/v"))
    connection.transport = None
    connection.transport = None
    assert connection.url.port == 1


async def test_the_first_node_that_accepts_is_chosen() -> None:
    server = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0)
    open_port = server.sockets[0].getsockname()[1]
    closed = free_port()
    try:
        nodes = [URL(f"amqp://127.0.0.1:{closed}/"), URL(f"amqp://127.0.0.1:{open_port}/")]
        assert await _first_answering(nodes) == 1
        assert await _first_answering(list(reversed(nodes))) == 0
        assert await _first_answering([nodes[0]]) == 0  # none answers: the first, to fail as aio-pika fails
    finally:
        server.close()
        await server.wait_closed()


async def test_no_node_answering_fails_at_once() -> None:
    url = f"amqp://guest:guest@127.0.0.1:{free_port()}/,amqp://guest:guest@127.0.0.1:{free_port()}/"
    with pytest.raises(aiormq.exceptions.AMQPConnectionError):
        await asyncio.wait_for(connect(url), 20)
