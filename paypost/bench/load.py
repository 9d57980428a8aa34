"""What the bench loads paypost with, and the paypost it loads: clean services, payment bodies,
a publisher with confirms, and `paypost run` as a process of its own."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import orjson

from paypost.local.servers import free_port, port_open, temporary_mongod, temporary_vhost

TOKEN = "bench-operator"  # noqa: S105  # the bench's own key, for the paypost it starts and stops
PRACTICE = "bench-clinic"
# The replay's failures are all of one patient account: counted on the index that covers this.
BULK = {"practice_id": PRACTICE, "patient_account_id": "acct-bulk"}


def payment(payment_id: str, account: str, ehr: str | None) -> bytes:
    body: dict[str, Any] = {
        "event_id": str(uuid.uuid4()), "practice_id": PRACTICE, "payment_id": payment_id,
        "patient_account_id": account, "amount": f"{random.randint(100, 99999) / 100:.2f}",  # noqa: S311  # amounts, not secrets
        "currency": "USD", "method": "card", "occurred_at": datetime.now(UTC).isoformat(),
        "merchant_transfer_id": "MT-bench",
    }
    if ehr:
        body["ehr_patient_id"] = ehr
    return orjson.dumps(body)


class Publisher:
    """Publishes with confirms, many in flight at once (as a busy upstream would)."""

    def __init__(self, channel: aio_pika.abc.AbstractChannel, exchange: aio_pika.abc.AbstractExchange) -> None:
        self.channel = channel
        self.exchange = exchange

    async def many(self, bodies: list[tuple[str, bytes]], routing_key: str = "payment.posted",
                   window: int = 500, on_sent: Callable[[str], None] | None = None) -> None:
        for start in range(0, len(bodies), window):
            batch = bodies[start:start + window]
            await asyncio.gather(*[self.one(pid, body, routing_key) for pid, body in batch])
            if on_sent:
                for pid, _ in batch:
                    on_sent(pid)

    async def paced(self, bodies: list[tuple[str, bytes]], rate: float, tick: float = 0.005,
                    routing_key: str = "payment.posted") -> dict[str, float]:
        """Publish at ``rate`` per second: every ``tick``, what is due by then goes out together (as
        from a busy upstream's several workers), each timed from its own publish call. A timer per
        message cost this process and the broker more CPU per payment (BENCHMARKS.md), taken from
        the two cores paypost is measured on. Nothing goes out before it is due."""
        sent: dict[str, float] = {}
        pending: list[asyncio.Task[None]] = []
        started = time.perf_counter()
        done = 0
        while done < len(bodies):
            now = time.perf_counter()
            due = min(len(bodies), int((now - started) * rate) + 1)
            for payment_id, body in bodies[done:due]:
                sent[payment_id] = now
                pending.append(asyncio.create_task(self.one(payment_id, body, routing_key)))
            done = due
            await asyncio.sleep(tick)
        await asyncio.gather(*pending)
        return sent

    async def one(self, payment_id: str, body: bytes, routing_key: str = "payment.posted") -> None:
        await self.exchange.publish(
            aio_pika.Message(body, message_id=payment_id, content_type="application/json",
                             delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=routing_key,
        )


@contextlib.asynccontextmanager
async def services(log: Callable[[str], None]) -> AsyncIterator[tuple[str, str]]:
    """A clean vhost and a clean database: (amqp_url, mongodb_uri)."""
    with contextlib.ExitStack() as stack:
        amqp = os.environ.get("PAYPOST_AMQP_URL")
        if amqp is None and port_open("127.0.0.1", 5672):
            vhost = stack.enter_context(temporary_vhost("paypost-bench"))
            amqp = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
        elif amqp is None:
            raise SystemExit("no RabbitMQ: set PAYPOST_AMQP_URL")
        mongo = os.environ.get("PAYPOST_MONGODB_URI") or stack.enter_context(temporary_mongod("paypost-bench-"))
        log(f"broker {amqp.rsplit('@', 1)[-1]}, database {mongo.split('?')[0]}")
        yield amqp, mongo


class PaypostProcess:
    """`paypost run` as its own process, so its peak memory is its own."""

    def __init__(self, amqp: str, mongo: str, db: str, role: str = "all", output: Path | None = None) -> None:
        """``output``: a file its log lines are appended to (none: they are dropped)."""
        self.role = role
        self.output = output
        self.port = free_port()
        self.env = {**os.environ, "PAYPOST_AMQP_URL": amqp, "PAYPOST_MONGODB_URI": mongo, "PAYPOST_MONGODB_DB": db,
                    "PAYPOST_HTTP": f"127.0.0.1:{self.port}", "PAYPOST_API_TOKENS": f"{TOKEN}:operator:bench",
                    "PAYPOST_LOG_LEVEL": "WARNING"}
        self.proc: subprocess.Popen[bytes] | None = None
        self.base = f"http://127.0.0.1:{self.port}"

    async def start(self, probe: str = "/readyz") -> None:
        """Start it and wait until ``probe`` answers 200 (``/healthz``: it is up, whether or not its
        database and broker answer it at once, as under a backlog of thousands)."""
        paypost = str(Path(sys.executable).with_name("paypost"))
        sink = self.output.open("ab") if self.output is not None else None
        try:
            self.proc = subprocess.Popen(  # noqa: ASYNC220 - Popen only starts it; waiting for it is async below
                [paypost, "run", "--no-local", "--role", self.role], env=self.env,
                stdout=sink or subprocess.DEVNULL, stderr=sink or subprocess.DEVNULL)
        finally:
            if sink is not None:
                sink.close()  # the process holds its own descriptor
        async with httpx.AsyncClient() as client:
            for _ in range(300):
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.base}{probe}", timeout=1)).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"paypost (paypost run --role {self.role}) did not answer {probe} with 200 in time")

    def peak_rss_mb(self) -> float:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)
