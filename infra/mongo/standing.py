"""What stands in the database that an operator's alerts watch (contract section 13): held practices,
the alerts' outbox to the practices' systems, announcements owed, and the audit trail's seals.

Read on each scrape of ``/metrics`` (``paypost/bootstrap.py``), each by an index: the held
practices from the few outage documents, the outbox by its partial index ``outbox``, owed
announcements by ``announcement_owed`` (partial: only postings that owe one), unsealed entries by
``audit_dirty_by_status`` (partial: only trails with entries not sealed yet), the last seal by
``seq``. Every query has a time limit: a slow database makes a scrape say less, never hang.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from pymongo import ASCENDING, DESCENDING, IndexModel

from paypost.domain.outages import Health
from paypost.infra.mongo.audit_seals import AuditSealer
from paypost.infra.mongo.database import Collections

MAX_MS = 2000
UNSEALED_BOUND = 1000  # a stalled sealer's backlog is "at least this many"

OWED_INDEX = IndexModel([("announcement_owed", ASCENDING)], name="announcement_owed",
                        partialFilterExpression={"announcement_owed": {"$exists": True}})


@dataclass(frozen=True, slots=True)
class Standing:
    held: frozenset[str]
    outbox_backlog: int
    outbox_oldest_seconds: float
    announcements_owed: int
    audit_unsealed: int
    last_seal_age_seconds: float | None  # None: nothing was ever sealed


class StandingFigures:
    def __init__(self, collections: Collections) -> None:
        self._c = collections
        self._seals = collections.db.get_collection("audit_seals", codec_options=collections.postings.codec_options)
        self._sealer = AuditSealer(collections)

    async def ensure_indexes(self) -> None:
        await self._c.postings.create_indexes([OWED_INDEX])

    async def read(self, now: datetime | None = None) -> Standing:
        now = now or datetime.now(UTC)
        held = frozenset([d["_id"] async for d in self._c.outages.find({"health": Health.HELD.value}, {"_id": 1},
                                                                         max_time_ms=MAX_MS)])
        due = {"pms_due": True, "pms_next_at": {"$lte": now}}
        backlog = await self._c.alerts.count_documents(due, hint="outbox", maxTimeMS=MAX_MS)
        oldest = await self._c.alerts.find_one(due, {"pms_next_at": 1}, sort=[("pms_next_at", ASCENDING)],
                                               hint="outbox", max_time_ms=MAX_MS)
        owed = await self._c.postings.count_documents({"announcement_owed": {"$exists": True}},
                                                      hint="announcement_owed", maxTimeMS=MAX_MS)
        unsealed = await self._sealer.changes_waiting(bound=UNSEALED_BOUND)
        last = await self._seals.find_one({}, {"at": 1}, sort=[("seq", DESCENDING)], max_time_ms=MAX_MS)
        return Standing(
            held=held, outbox_backlog=backlog,
            outbox_oldest_seconds=_age(now, oldest["pms_next_at"]) if oldest else 0.0,
            announcements_owed=owed, audit_unsealed=unsealed,
            last_seal_age_seconds=_age(now, last["at"]) if last else None,
        )


def _age(now: datetime, then: datetime) -> float:
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    return max(0.0, (now - then).total_seconds())
