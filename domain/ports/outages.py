"""A practice's system failing or held, and what the outage worker needs."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from paypost.domain.outages import PracticeOutage
from paypost.domain.posting import (
    KeptMessage,
)


class OutageStore(Protocol):
    """The practices whose system is failing or held (``paypost.domain.outages``): one record each."""

    async def every(self) -> list[PracticeOutage]: ...

    async def get(self, practice_id: str) -> PracticeOutage | None: ...

    async def failing(self, practice_id: str, error: str, at: datetime, probe_every: float) -> PracticeOutage:
        """A payment got no answer: the practice is failing from ``at`` unless it already was (or
        held); one more try without an answer is counted and the next try scheduled."""

    async def hold(self, practice_id: str, at: datetime, reason: str, held_by: str | None,
                   task_id: str | None, probe_at: datetime | None) -> PracticeOutage | None:
        """Hold the practice (paypost's hold: only one that is failing and not held by hand); the
        hold if this call made it, else None."""

    async def clear(self, practice_id: str, by_hand: bool) -> PracticeOutage | None:
        """The practice is healthy again: its record goes. Only a release by hand ends a hold by hand.
        The record removed, or None."""


class Leases(Protocol):
    """Which process does a duty: one at a time (``infra/mongo/leases.py``)."""

    async def hold(self, duty: str, ttl: float) -> int | None:
        """Take or renew the duty's lease: its fencing token, the same through renewals and higher
        than any earlier holder's; None while another process holds it."""


class Loader(Protocol):
    """The posting service as the worker uses it: load one kept message now, at the system."""

    async def handle(self, message: KeptMessage, *, trying: bool = False) -> object: ...
