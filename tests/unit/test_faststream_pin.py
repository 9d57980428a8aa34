"""infra/rabbit/broker.py writes FastStream's private ``_connection_kwargs``: this fails on any other FastStream.

FastStream 0.7's ``RabbitBroker`` takes no ``connection_class`` (nor any keyword it would hand on to
aio-pika's ``connect_robust``), so ``make_broker`` adds it to the keywords the broker keeps. Pinned here
so an upgrade fails loudly, naming what to read again.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import re
import tomllib
from pathlib import Path

import aio_pika
from faststream.rabbit import RabbitBroker
from faststream.rabbit.broker import broker as rabbit_broker

from paypost.infra.rabbit.broker import FASTSTREAM_VERSION, ClusterConnection, make_broker

RECHECK = (
    f"infra/rabbit/broker.py make_broker writes FastStream {FASTSTREAM_VERSION}'s private "
    "RabbitBroker._connection_kwargs "
    "to hand aio-pika's connect_robust a connection_class (the ClusterConnection over every broker of "
    "PAYPOST_AMQP_URL). On an upgrade, read faststream/rabbit/broker/broker.py again (RabbitBroker.__init__ "
    "and _connect) and faststream/_internal/broker/broker.py (where _connection_kwargs is set): if "
    "RabbitBroker now takes connection_class, pass it there and drop the private write; else check that "
    "_connect still calls connect_robust(**self._connection_kwargs), run tests/integration/test_publisher.py "
    "and the cluster fault tests, then set FASTSTREAM_VERSION and the pin in pyproject.toml."
)


def test_the_installed_faststream_is_the_one_make_broker_was_written_for() -> None:
    installed = importlib.metadata.version("faststream")
    assert installed == FASTSTREAM_VERSION, f"faststream {installed} is installed. {RECHECK}"


def test_pyproject_pins_that_faststream() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert f"faststream[rabbit]=={FASTSTREAM_VERSION}" in pyproject["project"]["dependencies"], RECHECK


def test_rabbit_broker_still_has_no_public_connection_class() -> None:
    assert "connection_class" not in inspect.signature(RabbitBroker.__init__).parameters, (
        f"RabbitBroker takes connection_class now: pass it there instead. {RECHECK}")


def test_the_broker_still_connects_with_the_keywords_make_broker_writes() -> None:
    connect = inspect.getsource(rabbit_broker.RabbitBroker._connect)
    assert re.search(r"connect_robust\(\s*\*\*self\._connection_kwargs\s*,?\s*\)", connect), (
        f"RabbitBroker._connect no longer calls connect_robust(**self._connection_kwargs). {RECHECK}")
    # aio-pika's own, whose connection_class keyword picks the connection made.
    assert vars(rabbit_broker)["connect_robust"] is aio_pika.connect_robust, RECHECK
    assert "connection_class" in inspect.signature(aio_pika.connect_robust).parameters, RECHECK


def test_make_broker_hands_the_cluster_connection_to_connect_robust() -> None:
    made = make_broker("amqp://guest:guest@h1:5672/,amqp://guest:guest@h2:5672/", prefetch=10)
    kwargs = made._connection_kwargs
    assert isinstance(kwargs, dict), RECHECK
    chosen = kwargs["connection_class"]
    assert issubclass(chosen, ClusterConnection), RECHECK
    assert [str(u) for u in chosen.NODES] == ["amqp://guest:guest@h1:5672/", "amqp://guest:guest@h2:5672/"]
    # The keywords FastStream itself keeps are still there: the write adds one, it replaces none.
    assert {"url", "timeout", "fail_fast", "reconnect_interval"} <= kwargs.keys(), f"{sorted(kwargs)}. {RECHECK}"
