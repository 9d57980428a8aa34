"""The audit sealer in a process of its own.

Sealing reads every settled posting's trail back, hashes it and writes the posting once more. On
the posting event loop that was a third of paypost's CPU and the longest pauses its payments
saw (a round of 200 postings holds the loop for tens of milliseconds). In a process of its own it
runs beside the payments on the machine's other core. The parent starts it, restarts it if it
dies, and at stop asks it to seal what is left (its last rounds begin within ``SEAL_AT_STOP_WITHIN``
seconds) and waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import time
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as StopEvent
from typing import TYPE_CHECKING

import structlog

log = structlog.get_logger("paypost.sealer")


IDLE_AT_MOST = 10.0  # seconds between the rounds of a sealer that found nothing to seal, at most
REST_AFTER = 3  # rounds in a row with nothing sealed, after which a sealer its paypost wakes rests
# The last rounds at a stop begin within this many seconds: well inside paypost's own stop (30 s by
# default), which a backlog of hundreds of thousands otherwise ran out, the sealer then killed.
SEAL_AT_STOP_WITHIN = 10.0


def _seal_until_stopped(uri: str, db: str, every: float, holder: str, audit_key: str, stop: StopEvent,
                        log_level: str, log_format: str, parent: int, wake: Connection, rests: bool) -> None:
    """The child's main: seal every ``every`` seconds (less often while there is nothing to seal)
    until ``stop`` is set or ``parent`` is gone, then once more."""
    from paypost.infra.runtime.logging import configure_logging

    configure_logging(log_level, log_format)
    # Background work: when the cores are busy, the payments' process goes first.
    with contextlib.suppress(OSError):
        os.nice(10)
    # Ctrl-C reaches the whole process group; the parent decides when the sealer stops, so that
    # its last round still runs. SIGTERM (a service manager stopping the group) asks the same.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    asyncio.run(_seal_loop(uri, db, every, holder, audit_key, stop, parent, wake, rests))


class _Woken:
    """The parent's end of the pipe, watched by the event loop: a byte from the parent (a stop) or the
    pipe's end (the parent is gone, even killed with -9) wakes the sealer. Nothing is polled."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self.event = asyncio.Event()
        self.parent_gone = False
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(connection.fileno(), self._readable)

    def _readable(self) -> None:
        try:
            while self._connection.poll():
                self._connection.recv_bytes()
        except (EOFError, OSError):
            self.parent_gone = True
            self._loop.remove_reader(self._connection.fileno())
        self.event.set()

    async def wait(self, seconds: float | None) -> None:
        """Until woken, or ``seconds`` pass (None: until woken)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.event.wait(), timeout=seconds)
        self.event.clear()


async def _seal_loop(uri: str, db: str, every: float, holder: str, audit_key: str, stop: StopEvent,
                     parent: int, wake: Connection, rests: bool) -> None:
    from paypost.domain.audit_chain import AuditKeys
    from paypost.infra.mongo.audit_seals import AuditSealer
    from paypost.infra.mongo.database import Collections, connect
    from paypost.infra.runtime.retry import log_failure

    if TYPE_CHECKING:
        from paypost.infra.mongo.database import Client
        from paypost.infra.mongo.leases import Lease

    keys = AuditKeys(audit_key) if audit_key.strip() else None

    def opened() -> tuple[Client, AuditSealer, Lease]:
        # No driver monitor streams to a sealer: one that polls is enough for a background job, and
        # wakes its process less often.
        client = connect(uri, serverMonitoringMode="poll")
        sealer = AuditSealer(Collections(client[db]), keys)
        return client, sealer, sealer.lease(holder)

    held: tuple[Client, AuditSealer, Lease] | None = None
    woken = _Woken(wake)

    def ending() -> bool:
        # A stop, or paypost gone: a sealer whose paypost was killed begins no more rounds of the
        # backlog it was sealing (payments still arriving keep one going indefinitely, under a lease
        # a new paypost's sealer waits for); it goes to its last rounds below.
        return stop.is_set() or woken.parent_gone or os.getppid() != parent

    log.info("audit_sealer_started", every_s=every, rests=rests)
    idle, idle_rounds = every, 0
    try:
        while not stop.is_set():
            held = held or opened()
            client, sealer, lease = held
            sealed: int | None = 0
            try:
                # Rounds of 100 with a pause as long as each round: at most half of the time at
                # the database, in bursts of a few milliseconds (one round of 500 held the
                # payments' writes up for tens). That still seals 2,500 postings a second.
                sealed = await sealer.seal_leading(lease, limit=100, pause=1.0, until=ending)
            except Exception as exc:  # noqa: BLE001 (logged, with its traceback unless an outage)
                log_failure(log, "audit_seal_failed", exc)
            # Nothing to seal: the next round comes later, twice as late each time up to IDLE_AT_MOST;
            # and a sealer whose paypost wakes it (``rests``) closes its connections after a few such
            # rounds and sleeps until woken: with no payments, nothing of it runs at all. One standing
            # by (something to seal, another process's sealer leading: None) keeps its rhythm, so it
            # takes the lease over as soon as the leader's ends.
            busy = sealed is None or sealed > 0
            idle_rounds = 0 if busy else idle_rounds + 1
            idle = every if busy else min(idle * 2, max(every, IDLE_AT_MOST))
            if rests and idle_rounds >= REST_AFTER:
                await client.close()
                held = None
                await woken.wait(None)
                idle, idle_rounds = every, 0
            else:
                await woken.wait(idle)
            if not stop.is_set() and ending():
                # paypost was killed (kill -9 leaves no time to stop us): a new paypost starts a
                # sealer of its own, so this one seals what is left and goes.
                log.warning("audit_sealer_orphaned", parent=parent)
                stop.set()
        held = held or opened()
        client, sealer, lease = held
        left = False
        try:
            # Stopping: no payments to make way for, but within paypost's own stop. What a backlog
            # leaves by then, the next sealer (another process's, or the next start's) seals.
            deadline = time.monotonic() + SEAL_AT_STOP_WITHIN
            sealed = await sealer.seal_all(limit=500, until=lambda: time.monotonic() >= deadline)
            left = await sealer.waiting()
        except Exception as exc:  # noqa: BLE001 (logged, with its traceback unless an outage)
            log_failure(log, "audit_seal_failed", exc)
            sealed = 0
        log.info("audit_sealer_stopped", sealed_at_stop=sealed, left_for_the_next_sealer=left)
        with contextlib.suppress(Exception):  # the lease expires by itself if this fails
            await lease.release()
    finally:
        if held is not None:
            await held[0].close()


class SealerProcess:
    """Starts, watches and stops the sealer's process."""

    def __init__(self, uri: str, db: str, *, every: float = 2.0, log_level: str = "INFO",
                 log_format: str = "console", audit_key: str = "", rests: bool = False) -> None:
        """``rests``: the sealer sleeps, its connections closed, once it finds nothing to seal a few
        rounds in a row, until ``nudge`` (or a stop) wakes it; whoever starts it then wakes it when
        there is something to seal (``paypost.runtime.seal_periodically`` does)."""
        from paypost.infra.mongo.leases import holder_name

        # The sealing lease is this paypost's: a sealer started again after a crash takes it at once.
        # The audit key reaches the child through the spawn's pipe, never its command line.
        self._args = (uri, db, every, holder_name(), audit_key)
        self._logging = (log_level, log_format)
        self._rests = rests
        self._context = multiprocessing.get_context("spawn")  # a fresh interpreter: no loop or sockets inherited
        self._stop = self._context.Event()
        self._process: multiprocessing.process.BaseProcess | None = None
        self._wake: Connection | None = None  # our end of the pipe the child waits on
        self.restarts = 0

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def sentinel(self) -> int | None:
        """A descriptor that becomes readable when the process ends (see ``multiprocessing``)."""
        return self._process.sentinel if self._process is not None else None

    def start(self) -> None:
        self._stop.clear()
        theirs, ours = self._context.Pipe(duplex=False)
        self._process = self._context.Process(
            target=_seal_until_stopped,
            args=(*self._args, self._stop, *self._logging, os.getpid(), theirs, self._rests),
            name="paypost-sealer", daemon=True,
        )
        self._process.start()
        theirs.close()  # the child holds it now: once we are gone (or close ours), it reads the pipe's end
        if self._wake is not None:
            self._wake.close()
        self._wake = ours

    def nudge(self) -> None:
        """Wake the child now: there is something to seal (or, at a stop, it reads ``_stop`` then)."""
        if self._wake is not None:
            with contextlib.suppress(OSError):
                self._wake.send_bytes(b"!")

    def restart_if_dead(self) -> bool:
        """Start it again if it exited without being asked; True when it did."""
        if self._process is None or self._process.is_alive() or self._stop.is_set():
            return False
        log.error("audit_sealer_died", exit_code=self._process.exitcode, restarts=self.restarts)
        self.restarts += 1
        self.start()
        return True

    async def kill(self) -> None:
        """Stop it now, sealing nothing more (what is unsealed is sealed by the next sealer)."""
        if self._process is None:
            return
        self._stop.set()
        self._process.kill()
        self._close_pipe()
        await asyncio.to_thread(self._process.join, 5)
        self._process = None

    async def stop(self, grace: float = 60.0) -> None:
        """Ask it to seal what is left and exit; kill it only if it does not within ``grace`` seconds."""
        if self._process is None:
            return
        self._stop.set()
        self.nudge()
        await asyncio.to_thread(self._process.join, grace)
        if self._process.is_alive():
            log.error("audit_sealer_killed", after_s=grace)
            await self.kill()
        self._process = None
        self._close_pipe()

    def _close_pipe(self) -> None:
        if self._wake is not None:
            self._wake.close()
            self._wake = None
