"""What the bench measures with besides the clock: the disk's syncs, each process's CPU time,
and the processes found by their command line; and a garbage collector kept out of the timings."""

from __future__ import annotations

import contextlib
import gc
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

# A durable write that waits this long waited on the disk, not on paypost (seen here: a 4 KiB
# fdatasync takes 0.5 ms; a stall of the machine's disk, 100 ms to a second).
DISK_STALL = 0.05


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


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (None where /proc does not tell)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds_exact(pid: int) -> float | None:
    """CPU time of a process's live threads so far, to the nanosecond, from each thread's
    ``schedstat`` (time on a core); None where the kernel keeps no such count. ``/proc/PID/stat``
    counts in ticks of 10 ms: over 20 s of an idle process that spends 1 ms a second, one tick is
    half of what is measured, so two idle figures that differ by a tick cannot be compared. A
    thread that ends between two reads takes its time with it: for a process at rest, whose
    threads live as long as it does."""
    tasks = Path(f"/proc/{pid}/task")
    if not tasks.is_dir():
        return None
    total = 0
    for stat in tasks.glob("*/schedstat"):
        try:
            total += int(stat.read_text().split()[0])
        except (OSError, IndexError, ValueError):  # a thread that ended meanwhile; no count kept
            continue
    return total / 1e9 if total else cpu_seconds(pid)


def wakeups(pid: int) -> int | None:
    """How often the process's threads have gone to sleep and been woken so far (voluntary context
    switches, every thread): what one payment alone costs each process beyond its own work."""
    tasks = Path(f"/proc/{pid}/task")
    if not tasks.is_dir():
        return None
    total = 0
    for status in tasks.glob("*/status"):
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            for line in status.read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    total += int(line.split()[1])
    return total


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

    def __init__(self, pids: dict[str, int | None], exact: bool = False) -> None:
        """``exact``: CPU time read to the nanosecond (``cpu_seconds_exact``), for processes at rest."""
        self.pids = {name: pid for name, pid in pids.items() if pid is not None}
        self._cpu = cpu_seconds_exact if exact else cpu_seconds
        self._start: dict[str, float] = {}
        self._woken: dict[str, int] = {}

    def start(self) -> None:
        self._start = {name: cpu for name, pid in self.pids.items() if (cpu := self._cpu(pid)) is not None}
        self._woken = {name: n for name, pid in self.pids.items() if (n := wakeups(pid)) is not None}

    def wakeups_per_payment(self, payments: int) -> dict[str, float]:
        """Each process's sleeps and wakes per payment since ``start``."""
        return {name: (now - self._woken[name]) / payments for name, pid in self.pids.items()
                if name in self._woken and (now := wakeups(pid)) is not None}

    def per_payment_us(self, payments: int) -> dict[str, float]:
        spent = {}
        for name, pid in self.pids.items():
            now = self._cpu(pid)
            if now is not None and name in self._start:
                spent[name] = (now - self._start[name]) / payments * 1e6
        return spent


CARRIERS = ("paypost", "mongod", "RabbitMQ")  # the processes that carry a payment (not the bench's own)


def wakeups_carried(woken: dict[str, float]) -> float:
    """Sleeps and wakes per payment of the processes that carry it, together."""
    return sum(woken.get(name, 0.0) for name in CARRIERS)


def wakeups_detail(woken: dict[str, float]) -> str:
    """Sleeps and wakes per payment of the processes that carry it, for a results row's detail."""
    return ", ".join(f"{name} {woken[name]:,.1f}" for name in CARRIERS if name in woken)


def cores_busy(spent: dict[str, float], per_second: float) -> str:
    """How busy a phase kept the cores, from each process's CPU per payment and payments per second."""
    return (f"{sum(spent.values()) * per_second / 1e6:.2f} of {os.cpu_count() or 1} cores busy "
            f"(paypost {spent.get('paypost', 0):.0f}, mongod {spent.get('mongod', 0):.0f}, "
            f"RabbitMQ {spent.get('RabbitMQ', 0):.0f})")


class DocumentsWritten:
    """Documents MongoDB wrote (inserted, updated and deleted, every collection) between ``start`` and a
    read, from the server's ``metrics.document`` counters: what a payment costs the database in writes.
    The bench's mongod serves only the bench, so what it counts is paypost's (and its sealer's)."""

    def __init__(self, client: Any) -> None:
        self._admin = client.admin
        self._start = 0

    async def _now(self) -> int:
        status = await self._admin.command("serverStatus")
        counts = status["metrics"]["document"]
        return int(counts["inserted"] + counts["updated"] + counts["deleted"])

    async def start(self) -> None:
        self._start = await self._now()

    async def since(self) -> int:
        return await self._now() - self._start
