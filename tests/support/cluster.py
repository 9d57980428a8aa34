"""A RabbitMQ cluster of three and a MongoDB replica set of three, on this machine, for the fault
suite (README, "Nothing lost, nothing posted twice: the fault suite").

Each is started once per test session, by the first test that asks for it, and stopped at the
session's end (also when a test failed). Everything lives in a temporary folder; the nodes and
mongods listen on free ports on 127.0.0.1, beside the machine's own broker.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pymongo import MongoClient
from pymongo.errors import OperationFailure, PyMongoError

from paypost.domain.errors import ServiceError
from paypost.local.servers import free_port, mongod_binary, port_open

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")


def rabbit_cluster_possible() -> bool:
    """The real scripts (not Debian's wrapper, which switches user) and root to run them."""
    return (RABBIT_BIN / "rabbitmq-server").exists() and os.geteuid() == 0


@dataclass
class RabbitNode:
    name: str  # ppN-<session>@localhost
    port: int
    env: dict[str, str]

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"


@dataclass
class RabbitCluster:
    nodes: list[RabbitNode]

    def ctl(self, *args: str, node: RabbitNode | None = None, timeout: float = 120) -> str:
        """``rabbitmqctl -n <node> ...`` (the first node unless told), its output."""
        return _run(RABBIT_BIN / "rabbitmqctl", "-n", (node or self.nodes[0]).name, *args,
                    env=(node or self.nodes[0]).env, timeout=timeout)

    def url(self, vhost: str = "") -> str:
        """``PAYPOST_AMQP_URL`` naming every node, comma-separated, on ``vhost``."""
        return ",".join(f"{n.url}{vhost}" for n in self.nodes)

    @contextlib.contextmanager
    def vhost(self) -> Iterator[str]:
        name = f"paypost-cluster-{uuid.uuid4().hex[:10]}"
        self.ctl("add_vhost", name)
        self.ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        try:
            yield name
        finally:
            with contextlib.suppress(ServiceError):
                self.ctl("delete_vhost", name)

    def running(self) -> RabbitNode:
        """A node whose broker is up (a stopped app cannot answer ``list_queues``)."""
        return next((n for n in self.nodes if port_open("127.0.0.1", n.port)), self.nodes[0])

    def leader(self, vhost: str, queue: str) -> RabbitNode:
        """The node whose member of the quorum queue ``queue`` leads (``list_queues name leader``)."""
        out = self.ctl("list_queues", "-p", vhost, "name", "leader", "--no-table-headers", "--quiet",
                       node=self.running())
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == queue:
                return next(n for n in self.nodes if n.name == parts[1])
        raise ServiceError(f"no leader for {queue} in {out!r}")

    def members(self, vhost: str, queue: str) -> list[str]:
        out = self.ctl("list_queues", "-p", vhost, "name", "members", "--no-table-headers", "--quiet",
                       node=self.running())
        for line in out.splitlines():
            if line.split(maxsplit=1)[0:1] == [queue]:
                return [m.strip(" [],") for m in line.split(maxsplit=1)[1].split(",")]
        raise ServiceError(f"{queue} not found in {out!r}")

    def wait_port(self, node: RabbitNode, open_: bool, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if port_open("127.0.0.1", node.port) == open_:
                return
            time.sleep(0.2)
        raise ServiceError(f"{node.name}: port {node.port} still {'closed' if open_ else 'open'}")


def _run(*argv: str | Path, env: dict[str, str], timeout: float = 120) -> str:
    result = subprocess.run([str(a) for a in argv], env=env, capture_output=True, text=True, timeout=timeout,
                            check=False)
    if result.returncode != 0:
        raise ServiceError(f"{' '.join(map(str, argv))} failed: {(result.stderr or result.stdout).strip()[:400]}")
    return result.stdout


@contextlib.contextmanager
def rabbit_cluster(size: int = 3) -> Iterator[RabbitCluster]:
    """Three nodes ``ppN-<session>@localhost`` joined into one cluster; stopped on the way out."""
    session = uuid.uuid4().hex[:6]
    cookie = uuid.uuid4().hex.upper()
    started: list[RabbitNode] = []
    with tempfile.TemporaryDirectory(prefix="paypost-rabbit-cluster-") as folder:
        try:
            started.extend(_start_node(Path(folder) / f"pp{n}", f"pp{n}-{session}@localhost", cookie)
                           for n in range(1, size + 1))
            cluster = RabbitCluster(started)
            for index, node in enumerate(started):
                try:
                    _wait_node(cluster, node)
                except ServiceError as exc:
                    # Once more on fresh ports (a port picked free may be taken before the node binds it,
                    # by another test worker's server), saying why the first did not start.
                    print(f"{exc}; starting it again on other ports", flush=True)  # noqa: T201 (the test's output)
                    _stop_node(node, timeout=30)
                    started[index] = _start_node(Path(folder) / f"pp{index + 1}-again", node.name, cookie)
                    _wait_node(cluster, started[index])
            for node in started[1:]:
                cluster.ctl("stop_app", node=node)
                cluster.ctl("join_cluster", started[0].name, node=node)
                cluster.ctl("start_app", node=node)
            for node in started:
                cluster.wait_port(node, open_=True)
            yield cluster
        finally:
            for node in started:
                _stop_node(node, timeout=60)


def _stop_node(node: RabbitNode, timeout: float) -> None:
    """Stop the node if it runs (one that never started, or stopped already, is left as it is)."""
    with contextlib.suppress(ServiceError, subprocess.TimeoutExpired):
        _run(RABBIT_BIN / "rabbitmqctl", "-n", node.name, "stop", env=node.env, timeout=timeout)


def _start_node(home: Path, name: str, cookie: str) -> RabbitNode:
    home.mkdir(parents=True)
    (home / ".erlang.cookie").write_text(cookie)
    (home / ".erlang.cookie").chmod(0o400)
    (home / "enabled_plugins").write_text("[].\n")
    port = free_port()
    (home / "rabbitmq.conf").write_text(f"listeners.tcp.default = 127.0.0.1:{port}\nloopback_users = none\n")
    env = {
        **os.environ, "HOME": str(home), "RABBITMQ_NODENAME": name, "RABBITMQ_DIST_PORT": str(free_port()),
        "RABBITMQ_MNESIA_BASE": str(home / "mnesia"), "RABBITMQ_LOG_BASE": str(home / "log"),
        "RABBITMQ_PID_FILE": str(home / "pid"), "RABBITMQ_ENABLED_PLUGINS_FILE": str(home / "enabled_plugins"),
        "RABBITMQ_CONFIG_FILE": str(home / "rabbitmq"),
    }
    _run(RABBIT_BIN / "rabbitmq-server", "-detached", env=env, timeout=60)
    return RabbitNode(name, port, env)


def _wait_node(cluster: RabbitCluster, node: RabbitNode, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ServiceError, subprocess.TimeoutExpired):
            cluster.ctl("await_startup", node=node, timeout=30)
            return
        time.sleep(1)
    raise ServiceError(f"{node.name} did not start within {timeout:.0f}s; its log ends: {_log_tail(node)}")


def _log_tail(node: RabbitNode, lines: int = 8) -> str:
    """The last lines of the node's logs (its folder goes with the cluster's, so the error keeps them)."""
    logs = sorted(Path(node.env["RABBITMQ_LOG_BASE"]).glob("*.log"))
    tail = [line for log in logs for line in log.read_text(errors="replace").splitlines()[-lines:]]
    return " | ".join(tail[-lines:]) or "(no log written)"


@dataclass
class Member:
    port: int
    dbpath: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self, replset: str) -> None:
        self.dbpath.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [mongod_binary(), "--dbpath", str(self.dbpath), "--bind_ip", "127.0.0.1", "--port", str(self.port),
             "--replSet", replset, "--logpath", str(self.dbpath / "mongod.log"), "--logappend", "--quiet"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def kill_9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)


@dataclass
class ReplicaSet:
    name: str
    members: list[Member] = field(default_factory=list)

    @property
    def uri(self) -> str:
        hosts = ",".join(f"127.0.0.1:{m.port}" for m in self.members)
        return f"mongodb://{hosts}/?replicaSet={self.name}"

    def primary(self, timeout: float = 60) -> Member:
        """The member that is a writable primary (waiting for an election if need be)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for member in self.members:
                if member.proc is None or member.proc.poll() is not None:
                    continue
                client: MongoClient[dict[str, object]] = MongoClient(
                    f"mongodb://127.0.0.1:{member.port}/", directConnection=True, serverSelectionTimeoutMS=500)
                try:
                    if client.admin.command("hello").get("isWritablePrimary"):
                        return member
                except PyMongoError:
                    pass
                finally:
                    client.close()
            time.sleep(0.2)
        raise ServiceError(f"replica set {self.name} has no primary after {timeout:.0f}s")

    def step_down(self, member: Member, seconds: int = 10) -> None:
        client: MongoClient[dict[str, object]] = MongoClient(
            f"mongodb://127.0.0.1:{member.port}/", directConnection=True, serverSelectionTimeoutMS=5000)
        try:
            client.admin.command("replSetStepDown", seconds)
        except PyMongoError:
            pass  # older servers close the connection on a step-down
        finally:
            client.close()


@contextlib.contextmanager
def replica_set(name: str = "rs3", size: int = 3) -> Iterator[ReplicaSet]:
    """Three wheel mongods ``--replSet rs3``, initiated together; stopped on the way out."""
    with tempfile.TemporaryDirectory(prefix="paypost-rs3-") as folder:
        rs = ReplicaSet(name, [Member(free_port(), Path(folder) / f"m{i}") for i in range(size)])
        try:
            for member in rs.members:
                member.start(name)
            _initiate(rs)
            rs.primary(timeout=90)
            yield rs
        finally:
            # All at once: one by one, each primary's shutdown waits for a secondary to catch up.
            for member in rs.members:
                if member.proc is not None and member.proc.poll() is None:
                    member.proc.terminate()
            for member in rs.members:
                member.stop()


NODE_NOT_FOUND = 74


def _initiate(rs: ReplicaSet, timeout: float = 60) -> None:
    first = rs.members[0]
    client: MongoClient[dict[str, object]] = MongoClient(
        f"mongodb://127.0.0.1:{first.port}/", directConnection=True, serverSelectionTimeoutMS=1000)
    config = {"_id": rs.name, "members": [{"_id": i, "host": f"127.0.0.1:{m.port}"}
                                          for i, m in enumerate(rs.members)]}
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                client.admin.command("replSetInitiate", config)
                return
            except OperationFailure as exc:
                if exc.code == 23:  # AlreadyInitialized
                    return
                # NodeNotFound: a member does not answer yet (on busy cores its mongod starts later)
                if exc.code != NODE_NOT_FOUND or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
            except PyMongoError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        client.close()

