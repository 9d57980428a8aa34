"""Vhosts of their own for the tests, made and deleted in batches.

Each test still gets a vhost nobody used before, deleted after it. But ``rabbitmqctl`` starts an
Erlang VM for each call (about 0.4 s, most of it CPU), and one vhost took three calls (add, permit,
delete): about 1.2 s of every test on these 2 cores. Here one call makes a batch of vhosts with
their permissions (``import_definitions``), and one call deletes a batch of used ones; both run in
a thread beside the tests (the next batch is made while half of this one is left, the used ones
are deleted while the next test runs), so a test waits for neither.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from paypost.domain.errors import ServiceError
from paypost.local.servers import broker_admin

# The vhosts alive at once on the broker, made, in use or waiting to be deleted, by all the suite's
# workers together, at most about this many. Each vhost holds about eight of the broker's file
# descriptors (its message stores), and a broker started as Debian's package starts it may open 1,024:
# 4 workers with batches of 16 (about 190 vhosts) used them all, and it then took no connection.
VHOSTS_ALIVE = 48


def batch_size(workers: int) -> int:
    """Vhosts made at a time by each of ``workers`` test processes (pytest-xdist's): up to three
    batches a worker are alive at once (in use, the next one, the used ones)."""
    return max(2, min(16, VHOSTS_ALIVE // (3 * max(1, workers))))


class VhostPool:
    """Fresh vhosts ``prefix-<hex>`` for ``user``, made ``batch`` at a time; each is used once."""

    def __init__(self, prefix: str, user: str = "guest", batch: int = 16) -> None:
        self.prefix, self.user, self.batch = prefix, user, batch
        self._fresh: list[str] = []
        self._used: list[str] = []
        self._beside = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vhosts")  # one call at a time
        self._next: Future[list[str]] | None = None  # the next batch, being made

    def take(self) -> str:
        if not self._fresh:
            self._fresh = self._made_next() or self._make(self.batch)
        if len(self._fresh) <= self.batch // 2 and self._next is None:
            self._next = self._beside.submit(self._make, self.batch)
        return self._fresh.pop()

    def _made_next(self) -> list[str]:
        """The batch made beside, once it is; none if its making failed (made again here, then)."""
        making, self._next = self._next, None
        if making is None:
            return []
        try:
            return making.result()
        except ServiceError:
            return []

    def give_back(self, name: str) -> None:
        """``name`` was used: it is deleted with the next batch of used ones, beside the tests."""
        self._used.append(name)
        if len(self._used) >= self.batch:
            names, self._used = self._used, []
            self._beside.submit(self._delete, names)

    def close(self) -> None:
        """Delete every vhost made here, used or not (waiting for what runs beside)."""
        self._used += self._fresh + self._made_next()
        self._fresh = []
        self._beside.shutdown(wait=True)
        self._delete(self._used)
        self._used = []

    def _make(self, n: int) -> list[str]:
        names = [f"{self.prefix}-{uuid.uuid4().hex[:10]}" for _ in range(n)]
        definitions = {"vhosts": [{"name": name} for name in names],
                       "permissions": [{"user": self.user, "vhost": name, "configure": ".*", "write": ".*",
                                        "read": ".*"} for name in names]}
        # The lock is held until the vhosts are usable: another worker's change waits for all of it.
        with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="paypost-vhosts-") as file, \
                broker_admin() as ctl:
            json.dump(definitions, file)
            file.flush()
            Path(file.name).chmod(0o644)  # the broker's node reads it
            ctl("import_definitions", file.name)
            # The import may finish after the command returns: wait until the user may use every vhost.
            deadline = time.monotonic() + 30
            while True:
                permitted = set(ctl("list_user_permissions", "-s", self.user).split())
                if permitted.issuperset(names):
                    return names
                if time.monotonic() > deadline:
                    raise ServiceError(f"vhosts {sorted(set(names) - permitted)} were not made within 30 s")
                time.sleep(0.1)

    def _delete(self, names: list[str]) -> None:
        if not names:
            return
        binaries = ", ".join(f'<<"{name}">>' for name in names)
        with broker_admin() as ctl:
            try:  # one call for the batch (rabbit_vhost:delete/2 of the broker's own code)
                ctl("eval", f'lists:foreach(fun(V) -> rabbit_vhost:delete(V, <<"{self.user}">>) end, [{binaries}]).')
            except ServiceError:  # a broker without it: one call each
                for name in names:
                    try:
                        ctl("delete_vhost", name)
                    except ServiceError:
                        continue  # gone already, or the broker is down: nothing more to do here
