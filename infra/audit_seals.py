"""Sealing the audit trail into a hash chain, and verifying it.

Writes on the posting path only mark a posting ``audit_dirty``; a sealer, every few seconds, hashes
the new entries and appends one seal to the chain (a unique ``seq`` keeps it linear when several
paypost processes seal at once). ``paypost audit verify`` recomputes every sealed entry from the
postings and every seal from the one before: an edited, removed or reordered entry, or an edited
seal, is reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.errors import DuplicateKeyError, OperationFailure

from domain.audit_chain import GENESIS, entry_hash, seal_hash
from domain.model import IN_FLIGHT
from infra.mongo import Collections

IN_FLIGHT_VALUES = [status.value for status in IN_FLIGHT]


@dataclass
class Verification:
    seals: int = 0
    entries: int = 0
    unsealed: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class AuditSealer:
    def __init__(self, collections: Collections) -> None:
        self._postings = collections.postings
        self._seals = collections.db.get_collection("audit_seals", codec_options=collections.postings.codec_options)

    async def ensure_indexes(self) -> None:
        await self._seals.create_index([("seq", ASCENDING)], unique=True)
        # Only dirty postings are in this index (a sealed one leaves it), by status, so the
        # sealer skips those in flight without reading them.
        await self._postings.create_indexes([IndexModel([("audit_dirty", ASCENDING), ("load_status", ASCENDING)],
                                                        name="audit_dirty_by_status",
                                                        partialFilterExpression={"audit_dirty": True})])
        with contextlib.suppress(OperationFailure):
            await self._postings.drop_index("audit_dirty_1")  # the index of earlier versions

    async def seal(self, limit: int = 500) -> int:
        """Seal what was appended since the last seal; returns how many entries were sealed."""
        # A posting in flight is sealed once it settles (milliseconds later, as a rule), so that
        # its trail is read and written back once rather than twice.
        docs = await self._postings.find({"audit_dirty": True, "load_status": {"$nin": IN_FLIGHT_VALUES}},
                                         {"audit": 1, "audit_sealed": 1}).limit(limit).to_list(None)
        if not docs:
            return 0
        covered = [
            {"posting": doc["_id"], "index": index, "hash": entry_hash(doc["_id"], index, doc["audit"][index])}
            for doc in docs
            for index in range(doc.get("audit_sealed", 0), len(doc["audit"]))
        ]
        if covered:
            for _ in range(20):
                last = await self._seals.find_one(sort=[("seq", DESCENDING)])
                seq = (last["seq"] + 1) if last else 1
                previous = last["hash"] if last else GENESIS
                try:
                    await self._seals.insert_one({
                        "seq": seq, "previous": previous, "entries": covered, "at": datetime.now(UTC),
                        "hash": seal_hash(previous, seq, (c["hash"] for c in covered)),
                    })
                    break
                except DuplicateKeyError:
                    continue  # another process sealed first: chain onto its seal
        # Marked sealed in one update per trail length (nearly all settled postings have the same
        # few entries); a posting whose trail grew since it was read does not match and is
        # marked only as far as this seal covers it, staying dirty for the next round.
        by_length: dict[int, list[str]] = {}
        for doc in docs:
            by_length.setdefault(len(doc["audit"]), []).append(doc["_id"])
        for sealed, ids in by_length.items():
            marked = await self._postings.update_many(
                {"_id": {"$in": ids}, "audit": {"$size": sealed}},
                {"$set": {"audit_sealed": sealed, "audit_dirty": False}})
            if marked.matched_count < len(ids):
                await self._postings.update_many(
                    {"_id": {"$in": ids}, "audit": {"$not": {"$size": sealed}}},
                    [{"$set": {"audit_sealed": {"$max": [{"$ifNull": ["$audit_sealed", 0]}, sealed]},
                               "audit_dirty": True}}])
        return len(covered)

    async def seal_all(self, limit: int = 200, pause: float = 0.0) -> int:
        """Seal until nothing is left to seal (a busy minute leaves thousands); returns the entries sealed.

        In rounds of ``limit`` postings, each followed by a pause of ``pause`` times as long as the
        round took: the database serves the payments too, and short rounds with gaps between them
        delay their writes less than one long burst.
        """
        total = 0
        while True:
            started = time.monotonic()
            sealed = await self.seal(limit)
            total += sealed
            if sealed == 0:
                return total
            await asyncio.sleep((time.monotonic() - started) * pause)

    async def verify(self) -> Verification:
        """Check the chain of seals, then every posting's trail against what the seals say of it."""
        result = Verification()
        sealed = await self._verify_seals(result)
        await self._verify_trails(sealed, result)
        return result

    async def _verify_seals(self, result: Verification) -> dict[str, dict[int, str]]:
        """Each seal follows the one before and hashes what it covers; returns, by posting, the
        hash of each sealed entry by its index."""
        previous, expected_seq = GENESIS, 1
        sealed: dict[str, dict[int, str]] = {}
        async for seal in self._seals.find({}).sort("seq", ASCENDING):
            result.seals += 1
            if seal["seq"] != expected_seq:
                result.problems.append(f"seal {expected_seq} is missing (found {seal['seq']})")
            if seal["previous"] != previous:
                result.problems.append(f"seal {seal['seq']} does not follow seal {seal['seq'] - 1}")
            if seal_hash(seal["previous"], seal["seq"], (c["hash"] for c in seal["entries"])) != seal["hash"]:
                result.problems.append(f"seal {seal['seq']} was altered")
            for c in seal["entries"]:
                if c["index"] in sealed.setdefault(c["posting"], {}):
                    result.problems.append(f"{c['posting']} entry {c['index']} is sealed twice")
                sealed[c["posting"]][c["index"]] = c["hash"]
            previous, expected_seq = seal["hash"], seal["seq"] + 1
        return sealed

    async def _verify_trails(self, sealed: dict[str, dict[int, str]], result: Verification) -> None:
        """Each sealed entry is still there, unedited; a posting sealed but gone is reported."""
        async for doc in self._postings.find({}, {"audit": 1}):
            hashes = sealed.pop(doc["_id"], {})
            for index, entry in enumerate(doc.get("audit", [])):
                want = hashes.get(index)
                if want is None:
                    result.unsealed += 1
                elif entry_hash(doc["_id"], index, entry) != want:
                    result.problems.append(f"{doc['_id']}: audit entry {index} was altered")
                else:
                    result.entries += 1
            for index in sorted(i for i in hashes if i >= len(doc.get("audit", []))):
                result.problems.append(f"{doc['_id']}: audit entry {index} was removed")
        for posting in sealed:
            result.problems.append(f"{posting}: the posting and its audit trail were removed")
