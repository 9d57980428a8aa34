"""Local services for `paypost run` and the tests, where none are configured."""

from __future__ import annotations

import os
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from paypost.local.servers import ensure_rabbitmq, port_open, start_mongod, wait_primary

log = structlog.get_logger("paypost.local.services")

LOCAL_MONGO_PORT = 27017


@dataclass
class LocalServices:
    """What `paypost run` started itself, and the environment it chose."""

    env: dict[str, str] = field(default_factory=dict)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def stop(self) -> None:
        for proc in self.processes:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def configured(variable: str) -> bool:
    """Whether the variable, or its ``_FILE`` twin (a Docker or Kubernetes secret), is set."""
    return variable in os.environ or f"{variable}_FILE" in os.environ


def ensure_local_services(data_dir: Path) -> LocalServices:
    """Start a replica-set mongod and RabbitMQ unless PAYPOST_MONGODB_URI / PAYPOST_AMQP_URL say where they are."""
    started = LocalServices()
    if not configured("PAYPOST_MONGODB_URI"):
        uri = f"mongodb://127.0.0.1:{LOCAL_MONGO_PORT}/?replicaSet=rs0"
        if port_open("127.0.0.1", LOCAL_MONGO_PORT):
            wait_primary(LOCAL_MONGO_PORT, "rs0")
            log.info("mongodb_found", uri=uri)
        else:
            started.processes.append(start_mongod(data_dir / "mongo", LOCAL_MONGO_PORT))
            log.info("mongodb_started", uri=uri, dbpath=str(data_dir / "mongo"))
        started.env["PAYPOST_MONGODB_URI"] = uri
    if not configured("PAYPOST_AMQP_URL"):
        ensure_rabbitmq()
    if not os.environ.get("PAYPOST_API_TOKENS") and not configured("PAYPOST_API_TOKENS"):
        started.env["PAYPOST_API_TOKENS"] = local_tokens(data_dir)
    if not configured("PAYPOST_SECRET_KEY"):  # practices' credentials are sealed with it (contract 7)
        started.env["PAYPOST_SECRET_KEY_FILE"] = str(local_secret_key(data_dir))
    os.environ.update(started.env)
    return started


def local_secret_key(data_dir: Path) -> Path:
    """The key that seals practices' credentials for a local run with none configured: made once,
    kept in the data directory (losing it loses the credentials sealed with it)."""
    path = data_dir / "secret-key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32) + "\n")
        path.chmod(0o600)
    return path


def local_tokens(data_dir: Path) -> str:
    """Tokens for a local run with none configured: made once, kept in the data directory."""
    path = data_dir / "api-tokens"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    # An operator first (the README's examples take the first token), a viewer, and an admin for
    # `paypost api-keys` (contract section 6: admins make keys within their own scope).
    value = ",".join(f"{secrets.token_urlsafe(18)}:{role}:local-{role}" for role in ("operator", "viewer", "admin"))
    path.write_text(value + "\n")
    path.chmod(0o600)
    return value
