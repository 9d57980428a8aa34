"""Leases in MongoDB: which process does a duty that one process at a time should do.

A lease is one document per duty: who holds it, until when, and a token that grows each time the
lease changes hands (a renewal keeps it), so the token orders the holdings. A holder renews it
before it expires; a process that stopped (or stalled past the expiry) loses it to the next one
that asks, and ``release`` hands it on at once.

paypost uses a lease only to keep processes from doing the same work at once. No write of the
work checks the token against the lease (it is not a fence in the storage's sense): what must
happen once is made so by the write that does it (the sealer's round is a transaction, a posting's
change a conditional write), so a holder that lost its lease unawares can waste a round but never
do the work twice. The token serves the holder itself: a renewal under another token than its
first tells it another process held the duty meanwhile (the outage worker then stops its step).
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from paypost.infra.mongo.database import Doc


def holder_name() -> str:
    """This process, as a lease's holder names it (host, pid and a random part: a pid is reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True, slots=True)
class Held:
    """A lease held: the fencing token of this holding (higher than every earlier holding's)."""

    token: int
    expires_at: datetime


class Lease:
    def __init__(self, leases: AsyncCollection[Doc], duty: str, holder: str, ttl: float) -> None:
        self._leases = leases
        self._duty = duty
        self._holder = holder
        self._ttl = timedelta(seconds=ttl)

    async def acquire(self) -> Held | None:
        """Take or renew the lease; None while another process holds it."""
        now = datetime.now(UTC)
        try:
            doc = await self._leases.find_one_and_update(
                {"_id": self._duty, "$or": [{"holder": self._holder}, {"expires_at": {"$lte": now}}]},
                [{"$set": {
                    # A new holder gets the next token; the holder renewing keeps its own.
                    "token": {"$cond": [{"$eq": ["$holder", self._holder]}, "$token",
                                        {"$add": [{"$ifNull": ["$token", 0]}, 1]}]},
                    "holder": self._holder, "expires_at": now + self._ttl, "renewed_at": now,
                }}],
                upsert=True, return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:
            return None  # the lease exists, held by another process and not expired
        assert doc is not None  # an upsert returns the document it wrote
        return Held(token=doc["token"], expires_at=doc["expires_at"])

    async def release(self) -> None:
        """Give the lease up at once (a stop), so the next process need not wait for it to expire."""
        await self._leases.update_one({"_id": self._duty, "holder": self._holder},
                                      {"$set": {"expires_at": datetime.now(UTC)}})


class DutyLeases:
    """Leases on duties named as they come (one practice's outage, say), all held by one process."""

    def __init__(self, leases: AsyncCollection[Doc], holder: str | None = None) -> None:
        self._leases = leases
        self._holder = holder or holder_name()

    async def hold(self, duty: str, ttl: float) -> int | None:
        """Take or renew the duty's lease: the holding's fencing token, or None while another holds it."""
        held = await Lease(self._leases, duty, self._holder, ttl).acquire()
        return None if held is None else held.token
