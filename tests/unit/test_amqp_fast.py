"""infra/rabbit/amqp_fast.py writes on aiormq's private channel state: this fails on any other aiormq."""

from __future__ import annotations

import ast
import dataclasses
import importlib.metadata
import inspect
import re
from collections.abc import Iterator
from pathlib import Path

import aiormq
import pytest
import structlog
from aiormq.abc import ChannelFrame

from paypost.infra.rabbit import amqp_fast, broker

RECHECK = (
    f"infra/rabbit/amqp_fast.py copies what aiormq {amqp_fast.AIORMQ_VERSION}'s Channel.basic_publish does "
    "to the channel's "
    "private state. On an upgrade, read aiormq/channel.py again (basic_publish, _on_return_frame, "
    "_confirm_delivery, _on_confirm_frame) and the writer in aiormq/connection.py; check that "
    "write_batch still fills the same tables in the same way (the delivery-tag counter, "
    "confirmations, message_id_delivery_tag, the write queue and ChannelFrame), run "
    "tests/integration/test_publisher.py and `python -m paypost.bench.publishers`; then set "
    "AIORMQ_VERSION and the pin in pyproject.toml. Or drop the framed path for BasicPublisher."
)


def test_the_installed_aiormq_is_the_one_the_fast_path_copies() -> None:
    installed = importlib.metadata.version("aiormq")  # aiormq has no __version__
    assert installed == amqp_fast.AIORMQ_VERSION, f"aiormq {installed} is installed. {RECHECK}"


def test_the_lock_installs_the_aiormq_and_pamqp_the_fast_path_copies() -> None:
    lock = (Path(__file__).parents[2] / "requirements" / "ci.txt").read_text()
    assert f"aiormq=={amqp_fast.AIORMQ_VERSION} " in lock, RECHECK
    assert f"pamqp=={amqp_fast.PAMQP_VERSION} " in lock, RECHECK
    assert amqp_fast.mismatch() is None


@pytest.mark.parametrize("package", ["aiormq", "pamqp"])
def test_beside_another_aiormq_or_pamqp_the_framed_path_turns_itself_off_and_says_so(
        package: str, monkeypatch: pytest.MonkeyPatch) -> None:
    installed = importlib.metadata.version

    def other(name: str) -> str:
        return "99.0.0" if name == package else installed(name)

    monkeypatch.setattr(importlib.metadata, "version", other)
    reason = amqp_fast.mismatch()
    assert reason is not None and f"{package} 99.0.0 is installed" in reason
    with structlog.testing.capture_logs() as logs:
        chosen = broker.publisher("framed", broker.Amqp("amqp://guest:guest@127.0.0.1:5672/"))
    assert isinstance(chosen, broker.BasicPublisher)
    assert [(e["event"], e["log_level"], e["publishing_with"]) for e in logs] == [
        ("framed_publisher_off", "warning", "basic")]
    assert package in logs[0]["reason"]


def test_beside_the_copied_versions_the_framed_path_is_wired_and_basic_when_asked() -> None:
    amqp = broker.Amqp("amqp://guest:guest@127.0.0.1:5672/")
    with structlog.testing.capture_logs() as logs:
        assert isinstance(broker.publisher("framed", amqp), broker.FramedPublisher)
        assert isinstance(broker.publisher("basic", amqp), broker.BasicPublisher)
    assert logs == []


def test_basic_publish_still_works_through_every_private_name_the_fast_path_fills() -> None:
    channel = inspect.getsource(aiormq.Channel)
    publish = inspect.getsource(aiormq.Channel.basic_publish)
    returns = inspect.getsource(aiormq.Channel._on_return_frame)
    assert isinstance(inspect.getattr_static(aiormq.Channel, "lock"), property), f"lock is not a property. {RECHECK}"
    for name in amqp_fast.PRIVATE_STATE:
        assert re.search(rf"\bself\.{name}\b", publish), f"basic_publish does not use {name}. {RECHECK}"
        if name != "lock":
            assert re.search(rf"\bself\.{name}\s*(:[^=]+)?=", channel), f"Channel does not set {name}. {RECHECK}"
    for name in ("message_id_delivery_tag", "confirmations"):
        assert f"self.{name}" in returns, f"a Basic.Return is not matched through {name}. {RECHECK}"
    fields = [f.name for f in dataclasses.fields(ChannelFrame)]
    assert fields == ["payload", "should_close", "drain_future"], f"ChannelFrame has {fields}. {RECHECK}"


def imported(path: Path) -> Iterator[str]:
    """Every module (and ``module.name``) the file imports."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def test_only_the_publisher_imports_the_fast_path() -> None:
    root = Path(__file__).parents[2]
    sources = [path for package in ("api", "consumers", "domain", "infra", "paypost", "producers", "schemas")
               for path in (root / package).rglob("*.py")]
    module = "paypost.infra.rabbit.amqp_fast"
    importers = {path.relative_to(root).as_posix() for path in sources if module in imported(path)}
    assert importers == {"infra/rabbit/broker.py"}
