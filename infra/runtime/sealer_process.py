"""The audit sealer in a process of its own.

Sealing reads every settled posting's trail back, hashes it and writes the posting once more. On
the posting event loop that was a third of paypost's CPU and the longest pauses its payments
saw (a round of 200 postings holds the loop for tens of milliseconds). In a process of its own it
runs beside the payments on the machine's other core. The parent starts it, restarts it if it
dies, and at stop asks it to seal what is left and waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import time
from multiprocessing.synchronize import Event as StopEvent

import structlog

log = structlog.get_logger("paypost.sealer")


def _seal_until_stopped(uri: str, db: str, every: float, holder: str, audit_key: str, stop: StopEvent,
                        log_level: str, log_format: str, parent: int) -> None:
    """The child's main: seal every ``every`` seconds until ``stop`` is set or ``parent`` is gone,
    then once more."""
    from paypost.infra.runtime.logging import configure_logging

    configure_logging(log_level, log_format)
    # Background work: when the cores are busy, the payments' process goes first.
    with contextlib.suppress(OSError):
        os.nice(10)
    # Ctrl-C reaches the whole process group; the parent decides when the sealer stops, so that
    # its last round still runs. SIGTERM (a service manager stopping the group) asks the same.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    asyncio.run(_seal_loop(uri, db, every, holder, audit_key, stop, parent))


async def _seal_loop(uri: str, db: str, every: float, holder: str, audit_key: str, stop: StopEvent,
                     parent: int) -> None:
    from paypost.domain.audit_chain import AuditKeys
    from paypost.infra.mongo.audit_seals import AuditSealer
    from paypost.infra.mongo.database import Collections, connect
    from paypost.infra.runtime.retry import log_failure

    client = connect(uri)
    sealer = AuditSealer(Collections(client[db]), AuditKeys(audit_key) if audit_key.strip() else None)
    lease = sealer.lease(holder)
    log.info("audit_sealer_started", every_s=every)
    try:
        while not stop.is_set():
            try:
                # Rounds of 100 with a pause as long as each round: at most half of the time at
                # the database, in bursts of a few milliseconds (one round of 500 held the
                # payments' writes up for tens). That still seals 2,500 postings a second.
                await sealer.seal_leading(lease, limit=100, pause=1.0)
            except Exception as exc:  # noqa: BLE001 (logged, with its traceback unless an outage)
                log_failure(log, "audit_seal_failed", exc)
            # Polled, never waited on: a child killed inside Event.wait leaves the event's condition
            # counting a sleeper that never wakes, and the parent's stop.set() then blocks for ever.
            deadline = time.monotonic() + every
            while not stop.is_set() and time.monotonic() < deadline:  # noqa: ASYNC110 - see above
                await asyncio.sleep(0.05)
            if os.getppid() != parent:
                # paypost was killed (kill -9 leaves no time to stop us): a new paypost starts a
                # sealer of its own, so this one seals what is left and goes.
                log.warning("audit_sealer_orphaned", parent=parent)
                stop.set()
        try:
            sealed = await sealer.seal_all(limit=500)  # stopping: no payments to make way for
        except Exception as exc:  # noqa: BLE001 (logged, with its traceback unless an outage)
            log_failure(log, "audit_seal_failed", exc)
            sealed = 0
        log.info("audit_sealer_stopped", sealed_at_stop=sealed)
        with contextlib.suppress(Exception):  # the lease expires by itself if this fails
            await lease.release()
    finally:
        await client.close()


class SealerProcess:
    """Starts, watches and stops the sealer's process."""

    def __init__(self, uri: str, db: str, *, every: float = 2.0, log_level: str = "INFO",
                 log_format: str = "console", audit_key: str = "") -> None:
        from paypost.infra.mongo.leases import holder_name

        # The sealing lease is this paypost's: a sealer started again after a crash takes it at once.
        # The audit key reaches the child through the spawn's pipe, never its command line.
        self._args = (uri, db, every, holder_name(), audit_key)
        self._logging = (log_level, log_format)
        self._context = multiprocessing.get_context("spawn")  # a fresh interpreter: no loop or sockets inherited
        self._stop = self._context.Event()
        self._process: multiprocessing.process.BaseProcess | None = None
        self.restarts = 0

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        self._stop.clear()
        self._process = self._context.Process(
            target=_seal_until_stopped, args=(*self._args, self._stop, *self._logging, os.getpid()),
            name="paypost-sealer", daemon=True,
        )
        self._process.start()

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
        await asyncio.to_thread(self._process.join, 5)
        self._process = None

    async def stop(self, grace: float = 60.0) -> None:
        """Ask it to seal what is left and exit; kill it only if it does not within ``grace`` seconds."""
        if self._process is None:
            return
        self._stop.set()
        await asyncio.to_thread(self._process.join, grace)
        if self._process.is_alive():
            log.error("audit_sealer_killed", after_s=grace)
            await self.kill()
        self._process = None
