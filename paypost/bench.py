"""`paypost bench`: throughput, latency, replay, the report at scale and memory, against the
broker's own round trip measured in the same run on the same machine.

Each run starts from a clean vhost (when the broker is local) and a clean database, runs paypost
as a separate process (so its memory is its own), and prints a table, then one JSON line.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Self

import aio_pika
import httpx
import orjson

from infra.local_services import free_port, port_open, temporary_mongod, temporary_vhost
from infra.mongo import Collections, connect

TOKEN = "bench-operator"
PRACTICE = "bench-clinic"
# The replay's failures are all of one patient account: counted on the index that covers this.
BULK = {"practice_id": PRACTICE, "patient_account_id": "acct-bulk"}


@dataclass
class Sizes:
    baseline: int
    pipeline: int
    latency_seconds: float
    replay: int
    report_rows: int
    memory_backlog: int

    @classmethod
    def of(cls, quick: bool) -> Sizes:
        if quick:
            return cls(baseline=5_000, pipeline=5_000, latency_seconds=5, replay=1_000, report_rows=50_000,
                       memory_backlog=10_000)
        return cls(baseline=50_000, pipeline=50_000, latency_seconds=20, replay=10_000, report_rows=1_000_000,
                   memory_backlog=100_000)


@dataclass
class Results:
    rows: list[tuple[str, str, str]] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, value: float, unit: str, key: str | None = None, note: str = "") -> None:
        shown = f"{value:.2f} {unit}" if value < 10 else f"{value:,.1f} {unit}" if value < 1000 else f"{value:,.0f} {unit}"
        self.rows.append((name, shown, note))
        if key:
            self.figures[key] = round(value, 3)


@contextlib.contextmanager
def no_gc_pauses() -> Iterator[None]:
    """Keep the bench's own garbage collector out of what it times.

    The bench holds tens of thousands of message bodies, tasks and timestamps; a full collection
    walks them all, and a 50-80 ms pause of the publisher shows up as payments that seem slow to
    load. For a measured phase, what exists is frozen and collection is off (a phase allocates
    tens of MB at most); both are restored after it.
    """
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


# A durable write that waits this long waited on the disk, not on paypost (seen here: a 4 KiB
# fdatasync takes 0.5 ms; a stall of the machine's disk, 100 ms to a second).
DISK_STALL = 0.05


class DiskProbe:
    """How long this machine's disk makes a durable write wait, measured while latency is.

    A thread appends 4 KiB to a file in ``folder`` and waits for ``fdatasync``, every ``every``
    seconds, as mongod's journal does before each outcome paypost waits for is durable. When the
    disk stalls, the probe's sync stalls at the same moment as the database's journaled writes:
    every outcome waits, whatever paypost does.
    """

    def __init__(self, folder: str, every: float = 0.02) -> None:
        self._every = every
        self._path = Path(folder) / f"paypost-bench-disk-{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="disk-probe", daemon=True)
        self.syncs: list[tuple[float, float]] = []  # (started, seconds), on time.perf_counter

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._path.unlink(missing_ok=True)

    def _run(self) -> None:
        block = b"x" * 4096
        fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            while not self._stop.wait(self._every):
                os.write(fd, block)
                started = time.perf_counter()
                os.fdatasync(fd)
                self.syncs.append((started, time.perf_counter() - started))
        finally:
            os.close(fd)

    def stalls(self, longer_than: float = DISK_STALL) -> list[tuple[float, float]]:
        """(from, to) of every sync that took longer than ``longer_than`` seconds."""
        return [(started, started + took) for started, took in self.syncs if took > longer_than]

    def slowest_ms(self, before: float = float("inf")) -> float:
        """The longest sync that started before ``before`` (perf_counter), in ms; 0 if none did."""
        return max((took for started, took in self.syncs if started < before), default=0.0) * 1000


def clear_of(spans: dict[str, tuple[float, float]], stalls: list[tuple[float, float]]) -> list[str]:
    """The payments whose wait (publish to outcome) overlapped none of the disk's stalls."""
    return [pid for pid, (sent, done) in spans.items()
            if not any(sent < until and since < done for since, until in stalls)]


def payment(payment_id: str, account: str, ehr: str | None) -> bytes:
    body: dict[str, Any] = {
        "event_id": str(uuid.uuid4()), "practice_id": PRACTICE, "payment_id": payment_id,
        "patient_account_id": account, "amount": f"{random.randint(100, 99999) / 100:.2f}",
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

    def __init__(self, amqp: str, mongo: str, db: str) -> None:
        self.port = free_port()
        self.env = {**os.environ, "PAYPOST_AMQP_URL": amqp, "PAYPOST_MONGODB_URI": mongo, "PAYPOST_MONGODB_DB": db,
                    "PAYPOST_HTTP": f"127.0.0.1:{self.port}", "PAYPOST_API_TOKENS": f"{TOKEN}:operator:bench",
                    "PAYPOST_LOG_LEVEL": "WARNING"}
        self.proc: subprocess.Popen[bytes] | None = None
        self.base = f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        paypost = str(Path(sys.executable).with_name("paypost"))
        # Popen only starts the process; waiting for it is async below.
        self.proc = subprocess.Popen([paypost, "run", "--no-local"], env=self.env, stdout=subprocess.DEVNULL,  # noqa: ASYNC220
                                     stderr=subprocess.DEVNULL)
        async with httpx.AsyncClient() as client:
            for _ in range(300):
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.base}/readyz", timeout=1)).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise RuntimeError("paypost did not become ready")

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


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (None where /proc does not tell)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def find_pid(*needles: str) -> int | None:
    """The first local process whose command line holds every needle (the broker, mongod)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if all(n in cmdline for n in needles):
            return int(entry.name)
    return None


def child_pid(parent: int, needle: str) -> int | None:
    """The child process of ``parent`` whose command line holds ``needle`` (paypost's audit sealer)."""
    try:
        children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    except OSError:
        return None
    for child in children:
        with contextlib.suppress(OSError):
            if needle in Path(f"/proc/{child}/cmdline").read_bytes().decode(errors="replace"):
                return int(child)
    return None


class CpuMeter:
    """CPU time each process of the pipeline spends per payment: where the machine's two cores go."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        self.pids = {name: pid for name, pid in pids.items() if pid is not None}
        self._start: dict[str, float] = {}

    def start(self) -> None:
        self._start = {name: cpu for name, pid in self.pids.items() if (cpu := cpu_seconds(pid)) is not None}

    def per_payment_us(self, payments: int) -> dict[str, float]:
        spent = {}
        for name, pid in self.pids.items():
            now = cpu_seconds(pid)
            if now is not None and name in self._start:
                spent[name] = (now - self._start[name]) / payments * 1e6
        return spent


async def baseline(amqp: str, n: int) -> float:
    """Raw aio-pika: publish with confirms and consume-and-ack the same messages at once, no database."""
    connection = await aio_pika.connect(amqp)
    try:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(f"bench.baseline.{uuid.uuid4().hex[:6]}", auto_delete=True)
        consumer_channel = await connection.channel()
        await consumer_channel.set_qos(prefetch_count=200)
        consumer_queue = await consumer_channel.get_queue(queue.name)
        done = asyncio.Event()
        acked = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal acked
            await message.ack()
            acked += 1
            if acked == n:
                done.set()

        await consumer_queue.consume(on_message)
        bodies = [(f"b-{i}", payment(f"b-{i}", "acct", "EHR-1")) for i in range(n)]
        started = time.perf_counter()
        await Publisher(channel, channel.default_exchange).many(bodies, routing_key=queue.name)
        await asyncio.wait_for(done.wait(), timeout=300)
        return n / (time.perf_counter() - started)
    finally:
        await connection.close()


async def broker_latencies(amqp: str, rate: float, count: int) -> list[float]:
    """ms from publish to delivery through a quorum queue like paypost's intake (durable: the broker
    syncs each message to its log on disk first), at ``rate``, with no consumer work and no
    database: the latency the broker alone gives on this machine."""
    connection = await aio_pika.connect(amqp)
    name = f"bench.latency.{uuid.uuid4().hex[:6]}"
    try:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
        consumer_channel = await connection.channel()
        await consumer_channel.set_qos(prefetch_count=200)
        received: dict[str, float] = {}
        done = asyncio.Event()

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            received[message.message_id or ""] = time.perf_counter()
            await message.ack()
            if len(received) == count:
                done.set()

        await (await consumer_channel.get_queue(name)).consume(on_message)
        bodies = [(f"q-{i}", payment(f"q-{i}", "acct", "EHR-1")) for i in range(count)]
        sent = await Publisher(channel, channel.default_exchange).paced(bodies, rate, routing_key=name)
        await asyncio.wait_for(done.wait(), timeout=300)
        await consumer_channel.close()  # before the queue goes, so that the broker cancels nothing
        await queue.delete(if_unused=False, if_empty=False)
        return [(received[pid] - at) * 1000 for pid, at in sent.items()]
    finally:
        await connection.close()


def cores_busy(spent: dict[str, float], per_second: float) -> str:
    """How busy a phase kept the cores, from each process's CPU per payment and payments per second."""
    return (f"{sum(spent.values()) * per_second / 1e6:.2f} of {os.cpu_count() or 1} cores busy "
            f"(paypost {spent.get('paypost', 0):.0f}, mongod {spent.get('mongod', 0):.0f}, "
            f"RabbitMQ {spent.get('RabbitMQ', 0):.0f})")


async def wait_count(c: Collections, query: dict[str, Any], n: int, timeout: float = 600,
                     tail: list[str] | None = None) -> float:
    """When ``n`` postings match ``query``. Counting is not free for the database being measured,
    so while the ``tail`` (the payment ids published last) has not reached the status, only those
    are looked up by _id; the count starts once they have."""
    deadline = time.perf_counter() + timeout
    if tail:
        ids = [f"{PRACTICE}/{pid}" for pid in tail]
        status = query.get("load_status")
        while time.perf_counter() < deadline:
            if await c.postings.count_documents({"_id": {"$in": ids}, "load_status": status}) == len(ids):
                break
            await asyncio.sleep(0.02)
    while time.perf_counter() < deadline:
        if await c.postings.count_documents(query) >= n:
            return time.perf_counter()
        await asyncio.sleep(0.25 if tail else 0.1)
    raise TimeoutError(f"only {await c.postings.count_documents(query)} of {n} reached {query}")


async def spans(c: Collections, sent: dict[str, float], wall_offset: float) -> dict[str, tuple[float, float]]:
    """(published, LOADED written) per payment, on the bench's clock (same machine, same clock)."""
    out = {}
    async for doc in c.postings.find({"payment_id": {"$in": list(sent)}}, {"payment_id": 1, "updated_at": 1}):
        out[doc["payment_id"]] = (sent[doc["payment_id"]], doc["updated_at"].timestamp() - wall_offset)
    return out


async def latencies(c: Collections, sent: dict[str, float], wall_offset: float) -> list[float]:
    """ms from publish to the durable LOADED write, per payment."""
    return [(done - published) * 1000 for published, done in (await spans(c, sent, wall_offset)).values()]


async def run(quick: bool, log: Callable[[str], None]) -> Results:
    sizes = Sizes.of(quick)
    results = Results()
    wall_offset = time.time() - time.perf_counter()
    async with services(log) as (amqp, mongo):
        log(f"baseline: {sizes.baseline:,} messages through raw aio-pika")
        base = await baseline(amqp, sizes.baseline)
        results.add("baseline: raw publish+consume+ack", base, "msg/s", "baseline_pps",
                    "aio-pika, confirms, no database")

        db = f"bench_{uuid.uuid4().hex[:6]}"
        client = connect(mongo)
        c = Collections(client[db])
        paypost = PaypostProcess(amqp, mongo, db)
        await paypost.start()
        connection = await aio_pika.connect(amqp)
        channel = await connection.channel(publisher_confirms=True)
        publisher = Publisher(channel, await channel.get_exchange("paypost.payments", ensure=True))
        http = httpx.AsyncClient(base_url=paypost.base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        try:
            await http.put(f"/api/v1/practices/{PRACTICE}", json={"name": "Bench", "ledger": {"kind": "builtin"}})
            for i in range(20):
                await http.put(f"/api/v1/practices/{PRACTICE}/ehr-patients/EHR-{i}", json={})

            # 2. sustained throughput
            log(f"pipeline: {sizes.pipeline:,} payments to a durable LOADED outcome")
            bodies = [(f"p-{i}", payment(f"p-{i}", f"acct-{i % 500}", f"EHR-{i % 20}")) for i in range(sizes.pipeline)]
            assert paypost.proc is not None
            mongo_port = mongo.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[-1]
            meter = CpuMeter({"paypost": paypost.proc.pid, "paypost sealer": child_pid(paypost.proc.pid, "spawn_main"),
                              "mongod": find_pid("mongod", f"--port {mongo_port}"),
                              "RabbitMQ": find_pid("beam.smp", "rabbit"),
                              "bench publisher": os.getpid()})
            with no_gc_pauses():
                meter.start()
                started = time.perf_counter()
                await publisher.many(bodies)
                finished = await wait_count(c, {"practice_id": PRACTICE, "load_status": "LOADED"}, sizes.pipeline,
                                            tail=[pid for pid, _ in bodies[-20:]])
            pipeline_pps = sizes.pipeline / (finished - started)
            results.add("pipeline: publish to LOADED", pipeline_pps, "payments/s", "pipeline_pps",
                        f"{sizes.pipeline:,} payments, built-in ledger")
            results.add("ratio pipeline / baseline", pipeline_pps / base, "", "ratio", "target >= 0.5")
            spent = meter.per_payment_us(sizes.pipeline)
            for name, us in spent.items():
                results.add(f"  CPU per payment: {name}", us, "us", f"cpu_us_{name.lower().replace(' ', '_')}")
            if spent:
                total = sum(spent.values())
                cores = os.cpu_count() or 1
                results.add("  CPU per payment, all of them", total, "us", "cpu_us_total",
                            f"{cores} cores carry at most {cores * 1e6 / total:,.0f} payments/s at this cost")

            # 3. latency at half that rate
            rate = pipeline_pps / 2
            count = int(rate * sizes.latency_seconds)
            log(f"latency: {count:,} messages at {rate:,.0f}/s through the broker alone, then {count:,} payments")
            with no_gc_pauses(), DiskProbe(tempfile.gettempdir()) as broker_disk:
                broker = await broker_latencies(amqp, rate, count)
            meter.start()
            with no_gc_pauses(), DiskProbe(tempfile.gettempdir()) as disk:
                sent = await publisher.paced([(f"l-{i}", payment(f"l-{i}", f"acct-{i % 500}", "EHR-1"))
                                              for i in range(count)], rate)
                await wait_count(c, {"_id": {"$regex": f"^{PRACTICE}/l-"}, "load_status": "LOADED"}, count)
            waits = await spans(c, sent, wall_offset)
            waited_ms = {pid: (done - published) * 1000 for pid, (published, done) in waits.items()}
            lat = list(waited_ms.values())
            results.add("latency p50", percentile(lat, 50), "ms", "p50_ms", f"at {rate:,.0f}/s offered")
            results.add("latency p95", percentile(lat, 95), "ms", "p95_ms")
            results.add("latency p99", percentile(lat, 99), "ms", "p99_ms", "target <= 100 ms")
            results.add("  broker alone p50", percentile(broker, 50), "ms", "broker_p50_ms",
                        "publish to delivery through a quorum queue, same rate, no database")
            results.add("  broker alone p99", percentile(broker, 99), "ms", "broker_p99_ms",
                        f"meanwhile the disk (below): slowest sync {broker_disk.slowest_ms():,.0f} ms, "
                        f"{len(broker_disk.stalls())} over {DISK_STALL * 1000:.0f} ms")
            # What the disk did meanwhile: every outcome waits for mongod's journal to reach it.
            syncs = [took * 1000 for _, took in disk.syncs]
            stalls = disk.stalls()
            results.add("  disk: 4 KiB fdatasync p50", percentile(syncs, 50), "ms", "disk_sync_p50_ms",
                        f"{len(syncs):,} syncs beside mongod's journal, one per 20 ms ({tempfile.gettempdir()})")
            results.add("  disk: slowest fdatasync", disk.slowest_ms(), "ms", "disk_sync_max_ms",
                        f"{len(stalls)} over {DISK_STALL * 1000:.0f} ms, {sum(b - a for a, b in stalls):.2f} s in all")
            clear = clear_of(waits, stalls)
            results.add("  latency p99 of payments clear of those", percentile([waited_ms[pid] for pid in clear], 99), "ms",
                        "p99_clear_of_disk_stalls_ms",
                        f"{len(waits) - len(clear):,} of {len(waits):,} were waiting while the disk stalled")
            # Fewer payments per batch and per broker frame at this rate: each costs more CPU than
            # in the burst above, and this is how busy the two cores were while latency was measured.
            if spent := meter.per_payment_us(count):
                results.add("  CPU per payment at this rate, all", sum(spent.values()), "us", "cpu_us_total_at_rate",
                            cores_busy(spent, rate))

            # 4. bulk retry after a mapping fix, with new payments flowing
            log(f"replay: {sizes.replay:,} PATIENT_NOT_MAPPED failures, then their mapping is entered")
            failing = [(f"r-{i}", payment(f"r-{i}", "acct-bulk", None)) for i in range(sizes.replay)]
            await publisher.many(failing)
            await wait_count(c, BULK | {"load_status": "FAILED"}, sizes.replay,
                             tail=[pid for pid, _ in failing[-20:]])
            await asyncio.sleep(1.0)  # let the dead-letter queue drain
            during: dict[str, float] = {}
            stop = asyncio.Event()

            async def trickle() -> None:
                i = 0
                while not stop.is_set():
                    pid = f"d-{i}"
                    during[pid] = time.perf_counter()
                    await publisher.one(pid, payment(pid, "acct-1", "EHR-1"))
                    i += 1
                    await asyncio.sleep(0.02)

            with no_gc_pauses(), DiskProbe(tempfile.gettempdir()) as replay_disk:
                trickler = asyncio.create_task(trickle())
                meter.start()
                started = time.perf_counter()
                r = await http.put(f"/api/v1/practices/{PRACTICE}/patient-accounts/acct-bulk/mapping",
                                   json={"ehr_patient_id": "EHR-3"})
                r.raise_for_status()
                finished = await wait_count(c, BULK | {"load_status": "LOADED"}, sizes.replay,
                                            tail=[pid for pid, _ in failing[-20:]])
                spent = meter.per_payment_us(sizes.replay)
                stop.set()
                await trickler
                await wait_count(c, {"_id": {"$regex": f"^{PRACTICE}/d-"}, "load_status": "LOADED"}, len(during))
            replay_s = finished - started
            results.add(f"replay: {sizes.replay:,} failures to LOADED", replay_s, "s", "replay_10k_s",
                        "one mapping fix; target <= 10 s for 10,000")
            # What each replay cost (the new payments meanwhile included), and the disk meanwhile.
            if spent:
                results.add("  CPU per replay, all", sum(spent.values()), "us", "cpu_us_total_replay",
                            f"{cores_busy(spent, sizes.replay / replay_s)}; disk: slowest sync "
                            f"{replay_disk.slowest_ms(before=finished):,.0f} ms")
            during_lat = await latencies(c, during, wall_offset)
            results.add("new payments during replay p95", percentile(during_lat, 95), "ms", "during_replay_p95_ms",
                        f"{len(during)} payments at 50/s")

            # 5. the report at scale
            log(f"report: {sizes.report_rows:,} postings stored")
            await fill_postings(c, sizes.report_rows)
            await seed_transfer(http, publisher, c)
            report = await time_report(http)
            results.add("report p95 (filtered, paged)", percentile(report["postings"], 95), "ms", "report_p95_ms",
                        f"{sizes.report_rows:,} postings; target <= 50 ms")
            results.add("transfer reconciliation p95", percentile(report["transfer"], 95), "ms",
                        "reconciliation_p95_ms", "a transfer of 500 payments")

            # 6. memory with a backlog waiting
            results.add("peak RSS of paypost after all the above", paypost.peak_rss_mb(), "MB")
            paypost.stop()
            small = sizes.memory_backlog // 5
            peaks = []
            for backlog in (small, sizes.memory_backlog):
                log(f"memory: {backlog:,} payments waiting before paypost starts")
                await publisher.many([(f"m{backlog}-{i}", payment(f"m{backlog}-{i}", f"acct-{i % 500}", "EHR-2"))
                                      for i in range(backlog)])
                worker = PaypostProcess(amqp, mongo, db)
                await worker.start()
                await wait_count(c, {"_id": {"$regex": f"^{PRACTICE}/m{backlog}-"}, "load_status": "LOADED"}, backlog)
                peaks.append(worker.peak_rss_mb())
                worker.stop()
            results.add(f"peak RSS, {small:,} waiting", peaks[0], "MB")
            results.add(f"peak RSS, {sizes.memory_backlog:,} waiting", peaks[1], "MB", "peak_rss_mb",
                        "target <= 300 MB, flat as the backlog grows")
        finally:
            paypost.stop()
            await http.aclose()
            await connection.close()
            await client.drop_database(db)
            await client.close()
    return results


async def fill_postings(c: Collections, n: int) -> None:
    """Synthetic report rows, shaped as paypost writes them, inserted in bulk."""
    statuses = ["LOADED"] * 90 + ["FAILED"] * 6 + ["CLEARED"] * 3 + ["PENDING"]
    codes = ["PATIENT_NOT_MAPPED", "PATIENT_NOT_FOUND", "LEDGER_REJECTED"]
    now = datetime.now(UTC)
    batch = []
    for i in range(n):
        status = statuses[i % len(statuses)]
        practice = f"clinic-{i % 50}"
        error = {"code": codes[i % 3], "message": "m", "fix": "f"} if status == "FAILED" else None
        batch.append({
            "_id": f"{practice}/s-{i}", "practice_id": practice, "payment_id": f"s-{i}", "kind": "payment",
            "patient_account_id": f"acct-{i % 5000}", "event_ehr_patient_id": None, "ehr_patient_id": "EHR-1",
            "amount": Decimal("10.00"), "currency": "USD", "method": "card",
            "merchant_transfer_id": f"MT-{i // 400}", "event_id": f"e-{i}",
            "load_status": status, "load_error": error, "attempts_count": 1, "attempts": [], "audit": [],
            "received_at": now - timedelta(seconds=n - i), "updated_at": now, "replays": 0, "dead_letters": [],
        })
        if len(batch) == 10_000:
            await c.postings.insert_many(batch, ordered=False)
            batch = []
    if batch:
        await c.postings.insert_many(batch, ordered=False)


async def seed_transfer(http: httpx.AsyncClient, publisher: Publisher, c: Collections) -> None:
    ids = [f"p-{i}" for i in range(500)]
    docs = c.postings.find({"payment_id": {"$in": ids}, "practice_id": PRACTICE}, {"amount": 1})
    gross = sum([d["amount"] async for d in docs], Decimal(0))
    body = {"event_id": str(uuid.uuid4()), "practice_id": PRACTICE, "merchant_transfer_id": "MT-bench-500",
            "payment_ids": ids, "refund_ids": [], "gross_amount": f"{gross:.2f}", "fees_amount": "10.00",
            "net_amount": f"{gross - 10:.2f}", "currency": "USD", "settled_at": datetime.now(UTC).isoformat()}
    await publisher.one("t-500", orjson.dumps(body), routing_key="transfer.settled")
    for _ in range(200):
        if (await http.get(f"/api/v1/transfers/{PRACTICE}/MT-bench-500")).status_code == 200:
            return
        await asyncio.sleep(0.05)


async def time_report(http: httpx.AsyncClient, rounds: int = 60) -> dict[str, list[float]]:
    queries = [
        {"practice_id": "clinic-7", "limit": 50},
        {"practice_id": "clinic-7", "status": "FAILED", "limit": 50},
        {"practice_id": "clinic-8", "error_code": "PATIENT_NOT_FOUND", "limit": 100},
        {"practice_id": "clinic-9", "merchant_transfer_id": "MT-109", "limit": 50},
        {"status": "FAILED", "limit": 50},
    ]
    timings: dict[str, list[float]] = {"postings": [], "transfer": []}
    for i in range(rounds):
        params: dict[str, Any] = dict(queries[i % len(queries)])
        started = time.perf_counter()
        page = (await http.get("/api/v1/postings", params=params)).json()
        timings["postings"].append((time.perf_counter() - started) * 1000)
        if page.get("next_cursor"):  # the next page too: paging must stay fast deep in the report
            started = time.perf_counter()
            (await http.get("/api/v1/postings", params={**params, "cursor": page["next_cursor"]})).raise_for_status()
            timings["postings"].append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        (await http.get(f"/api/v1/transfers/{PRACTICE}/MT-bench-500")).raise_for_status()
        timings["transfer"].append((time.perf_counter() - started) * 1000)
    return timings


def render(results: Results, quick: bool, elapsed: float) -> str:
    width = max(len(r[0]) for r in results.rows)
    lines = [f"paypost bench{' --quick' if quick else ''} ({elapsed:.0f} s, {os.cpu_count()} cores)", ""]
    for name, value, note in results.rows:
        lines.append(f"  {name:<{width}}  {value:>18}  {note}")
    return "\n".join(lines)


def summary(results: Results) -> dict[str, float]:
    keys = ["baseline_pps", "pipeline_pps", "ratio", "p50_ms", "p95_ms", "p99_ms", "replay_10k_s", "report_p95_ms",
            "peak_rss_mb"]
    return {k: results.figures.get(k, float("nan")) for k in keys} | {
        k: v for k, v in results.figures.items() if k not in keys}
