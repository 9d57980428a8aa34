"""Sealing the audit trail into a hash chain, signing it, and verifying it.

Writes on the posting path only mark a posting ``audit_dirty``; a sealer, every few seconds, hashes
the new entries and appends one seal to the chain. ``paypost audit verify`` recomputes every sealed
entry from the postings and every seal from the one before: an edited, removed or reordered entry,
an entry sealed twice, or an edited seal, is reported.

Any number of paypost processes may seal at once. Each round is one transaction: it reads the
dirty postings and the last seal, appends the next seal (``seq`` is unique) and marks what it
sealed, all or nothing. Two rounds that cover the same entries, or append the same ``seq``,
conflict, and the one that loses runs again on what is left: the chain stays linear and every
entry is sealed exactly once, through crashes and a primary's failover. A lease (``infra/mongo/leases.py``)
lets one process's sealer work at a time, so the others do not waste rounds on conflicts.

Beside the postings' trails the chain covers two collections of records (contract section 12): the
access trail (``access_log``, kind ``access``) and the retention purge's records (``audit_purges``,
kind ``purge``), each written with ``sealed: false`` and marked sealed in the round that chains it.
With ``PAYPOST_AUDIT_KEY`` each seal is signed (HMAC-SHA-256 of its seq and hash), and so is each
purge record: someone who can write to the database but does not hold the key can neither rewrite
the trail and hash the chain again, nor pass off a deletion as a purge.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from datetime import UTC, datetime

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, OperationFailure

from paypost.domain.audit_chain import (
    GENESIS,
    AuditKeys,
    Verification,
    compare_heads,
    entry_hash,
    purge_message,
    record_hash,
    seal_hash,
    seal_message,
)
from paypost.domain.model import IN_FLIGHT
from paypost.infra.mongo.database import Collections, Doc
from paypost.infra.mongo.leases import Lease, holder_name

IN_FLIGHT_VALUES = [status.value for status in IN_FLIGHT]


# Rounds that lost a race (another round sealed the same entries or appended the same seq first)
# run again this often.
SEQ_RACES = 50
WRITE_CONFLICT = 112


def _is_conflict(exc: OperationFailure) -> bool:
    return exc.code == WRITE_CONFLICT or "WriteConflict" in str(exc.details or exc)


class AuditSealer:
    def __init__(self, collections: Collections, keys: AuditKeys | None = None,
                 seals: AsyncCollection[Doc] | None = None) -> None:
        """``seals``: where the seals are kept, when not the database's ``audit_seals`` (a test's stand-in)."""
        self._client = collections.db.client
        self._postings = collections.postings
        codecs = collections.postings.codec_options
        self._seals = seals if seals is not None else collections.db.get_collection("audit_seals", codec_options=codecs)
        self._records = {"access": collections.db.get_collection("access_log", codec_options=codecs),
                         "purge": collections.db.get_collection("audit_purges", codec_options=codecs),
                         # a month's close (contract section 11, infra/mongo/deposits.py)
                         "period": collections.db.get_collection("period_closes", codec_options=codecs)}
        self._leases = collections.leases
        self._keys = keys  # None: seals are not signed (no PAYPOST_AUDIT_KEY)

    def lease(self, holder: str | None = None, ttl: float = 30.0) -> Lease:
        """A paypost process's claim to be the one sealer at work (the others stand by). A sealer
        process started again by the same paypost holds it under the same name, at once."""
        return Lease(self._leases, "audit-sealer", holder or holder_name(), ttl)

    async def seal_leading(self, lease: Lease, limit: int = 200, pause: float = 0.0) -> int | None:
        """Seal everything left while ``lease`` is held; how many entries. Nothing to seal: 0, and the
        lease is not renewed (an idle sealer writes nothing). None: there is something to seal, but
        another process's sealer holds the lease (this one stands by, to take it over)."""
        if not await self.waiting():
            return 0
        if await lease.acquire() is None:
            return None
        return await self.seal_all(limit, pause)

    async def ensure_indexes(self) -> None:
        await self._seals.create_index([("seq", ASCENDING)], unique=True)
        # Only dirty postings are in this index (a sealed one leaves it), by status, so the
        # sealer skips those in flight without reading them.
        await self._postings.create_indexes([IndexModel([("audit_dirty", ASCENDING), ("load_status", ASCENDING)],
                                                        name="audit_dirty_by_status",
                                                        partialFilterExpression={"audit_dirty": True})])
        with contextlib.suppress(OperationFailure):
            await self._postings.drop_index("audit_dirty_1")  # the index of earlier versions
        for records in self._records.values():
            await records.create_indexes([IndexModel([("sealed", ASCENDING)], name="unsealed",
                                                     partialFilterExpression={"sealed": False})])

    async def seal(self, limit: int = 500) -> int:
        """Seal what was appended since the last seal; returns how many entries were sealed.

        A round that conflicted with another (the same entries or the same seq) runs again, up to
        ``SEQ_RACES`` times; any other failure (the database away) is raised at once, not retried
        here: the driver's own ``with_transaction`` would retry for two minutes, holding a stop.
        """
        if not await self.waiting():
            return 0  # an idle round opens no transaction (one killed midway holds its locks for a minute)
        for race in range(SEQ_RACES):
            try:
                async with self._client.start_session() as session, await session.start_transaction():
                    return await self._round(session, limit)
            except DuplicateKeyError:
                pass  # another process appended this seq first: chain onto its seal
            except OperationFailure as exc:
                if not exc.has_error_label("TransientTransactionError") or not _is_conflict(exc):
                    raise
            # Lost to another round: run again on what is left, after a pause that grows and is
            # drawn at random, so that rounds racing each other fall out of step.
            await asyncio.sleep(random.uniform(0, 0.005 * (race + 1)))  # noqa: S311 - jitter, no secret
        raise RuntimeError(f"{SEQ_RACES} sealing rounds in a row lost the race for the next seal")

    async def waiting(self) -> bool:
        """Whether anything waits to be sealed (read outside a transaction, on the partial indexes)."""
        if await self._postings.find_one({"audit_dirty": True, "load_status": {"$nin": IN_FLIGHT_VALUES}},
                                         {"_id": 1}) is not None:
            return True
        for records in self._records.values():
            if await records.find_one({"sealed": False}, {"_id": 1}) is not None:
                return True
        return False

    async def _round(self, session: AsyncClientSession, limit: int) -> int:
        # A posting in flight is sealed once it settles (milliseconds later, as a rule), so that
        # its trail is read and written back once rather than twice.
        docs = await self._postings.find({"audit_dirty": True, "load_status": {"$nin": IN_FLIGHT_VALUES}},
                                         {"audit": 1, "audit_sealed": 1}, session=session).limit(limit).to_list(None)
        records = {kind: await c.find({"sealed": False}, session=session).limit(limit).to_list(None)
                   for kind, c in self._records.items()}
        if not docs and not any(records.values()):
            return 0
        covered = [
            {"posting": doc["_id"], "index": index, "hash": entry_hash(doc["_id"], index, doc["audit"][index])}
            for doc in docs
            for index in range(doc.get("audit_sealed", 0), len(doc["audit"]))
        ]
        beside = [{"kind": kind, "id": str(d["_id"]), "hash": record_hash(kind, str(d["_id"]), d)}
                  for kind, found in records.items() for d in found]
        if covered or beside:
            last = await self._seals.find_one(sort=[("seq", DESCENDING)], session=session)
            seq = (last["seq"] + 1) if last else 1
            previous = last["hash"] if last else GENESIS
            digest = seal_hash(previous, seq, [*(c["hash"] for c in covered), *(r["hash"] for r in beside)])
            seal = {"seq": seq, "previous": previous, "entries": covered, "at": datetime.now(UTC), "hash": digest}
            if beside:
                seal["records"] = beside
            if self._keys is not None:
                seal["key_id"], seal["signature"] = self._keys.sign(seal_message(seq, digest))
            await self._seals.insert_one(seal, session=session)
        # Marked sealed in one update per trail length (nearly all settled postings have the same
        # few entries). In the transaction, each trail is as it was read: one that grew since
        # makes the round conflict and run again.
        by_length: dict[int, list[str]] = {}
        for doc in docs:
            by_length.setdefault(len(doc["audit"]), []).append(doc["_id"])
        for sealed, ids in by_length.items():
            await self._postings.update_many({"_id": {"$in": ids}},
                                             {"$set": {"audit_sealed": sealed, "audit_dirty": False}},
                                             session=session)
        for kind, found in records.items():
            if found:
                await self._records[kind].update_many({"_id": {"$in": [d["_id"] for d in found]}},
                                                      {"$set": {"sealed": True}}, session=session)
        return len(covered) + len(beside)

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

    async def verify(self, against: list[dict[str, object]] | None = None) -> Verification:
        """Check the chain of seals and their signatures, then every posting's trail and every record
        against what the seals say of it; with ``against`` (an export of the seals' heads), that the
        chain is still the one exported, and no shorter."""
        result = Verification(keyed=self._keys is not None)
        chain: dict[int, str] = {}
        sealed, records = await self._verify_seals(result, chain)
        purged_postings, purged_records = await self._purged(result)
        await self._verify_trails(sealed, purged_postings, result)
        await self._verify_records(records, purged_records, result)
        if against is not None:
            result.problems += compare_heads(against, chain)
        return result

    async def heads(self) -> list[dict[str, object]]:
        """Each seal's head (seq, hash, time, key and signature), for keeping outside the database."""
        return [{"seq": s["seq"], "hash": s["hash"], "at": s["at"].isoformat(), "key_id": s.get("key_id"),
                 "signature": s.get("signature")}
                async for s in self._seals.find({}, {"entries": 0, "records": 0}).sort("seq", ASCENDING)]

    def _check_signature(self, what: str, key_id: str | None, message: str, signature: str | None,
                         result: Verification) -> bool:
        if self._keys is None:
            return True
        if signature is None:
            result.problems.append(f"{what} is not signed")
            return False
        checked = self._keys.check(key_id, message, signature)
        if checked is None:
            result.problems.append(f"{what} is signed with a key PAYPOST_AUDIT_KEY does not hold (a wrong key?)")
        elif not checked:
            result.problems.append(f"{what}: its signature does not match (rewritten and hashed again?)")
        return bool(checked)

    async def _verify_seals(self, result: Verification, chain: dict[int, str]
                            ) -> tuple[dict[str, dict[int, str]], dict[tuple[str, str], str]]:
        """Each seal follows the one before, hashes what it covers, and carries its signature; returns,
        by posting, the hash of each sealed entry by its index, and the hash of each sealed record."""
        previous, expected_seq = GENESIS, 1
        sealed: dict[str, dict[int, str]] = {}
        records: dict[tuple[str, str], str] = {}
        newest_unsigned = False
        async for seal in self._seals.find({}).sort("seq", ASCENDING):
            self._check_seal(seal, previous, expected_seq, result)
            for c in seal["entries"]:
                if c["index"] in sealed.setdefault(c["posting"], {}):
                    result.problems.append(f"{c['posting']} entry {c['index']} is sealed twice")
                sealed[c["posting"]][c["index"]] = c["hash"]
            for r in seal.get("records", []):
                if (r["kind"], r["id"]) in records:
                    result.problems.append(f"{r['kind']} record {r['id']} is sealed twice")
                records[(r["kind"], r["id"])] = r["hash"]
            chain[seal["seq"]] = seal["hash"]
            previous, expected_seq = seal["hash"], seal["seq"] + 1
            newest_unsigned = seal.get("signature") is None
        if chain:
            last = max(chain)
            result.head = (last, chain[last])
            if self._keys is not None and newest_unsigned:
                result.problems.append(f"seal {last}, the newest, is not signed: no seal vouches for the chain "
                                       "(sealed before PAYPOST_AUDIT_KEY was set, or its signatures removed)")
        return sealed, records

    def _check_seal(self, seal: Doc, previous: str, expected_seq: int, result: Verification) -> None:
        """One seal: in its place, after the one before, its hash and its signature as they should be."""
        result.seals += 1
        if seal["seq"] != expected_seq:
            result.problems.append(f"seal {expected_seq} is missing (found {seal['seq']})")
        if seal["previous"] != previous:
            result.problems.append(f"seal {seal['seq']} does not follow seal {seal['seq'] - 1}")
        hashes = [*(c["hash"] for c in seal["entries"]), *(r["hash"] for r in seal.get("records", []))]
        if seal_hash(seal["previous"], seal["seq"], hashes) != seal["hash"]:
            result.problems.append(f"seal {seal['seq']} was altered")
        if self._keys is not None and seal.get("signature") is None and result.signed == 0:
            # Sealed before PAYPOST_AUDIT_KEY was set: checked by the signed seals after it (each
            # covers every seal before it), and the newest seal must be signed (see verify).
            result.unsigned_before_key += 1
        elif self._check_signature(f"seal {seal['seq']}", seal.get("key_id"),
                                   seal_message(seal["seq"], seal["hash"]), seal.get("signature"), result) \
                and self._keys is not None:
            result.signed += 1

    async def _purged(self, result: Verification) -> tuple[set[str], set[str]]:
        """The postings and access entries a retention purge removed, by the purge's signed records."""
        postings: set[str] = set()
        access: set[str] = set()
        async for record in self._records["purge"].find({"kind": "page"}):
            content = {k: v for k, v in record.items() if k not in ("key_id", "signature")}
            digest = record_hash("purge", str(record["_id"]), content)
            if not self._check_signature(f"purge record {record['_id']}", record.get("key_id"),
                                         purge_message(str(record["_id"]), digest), record.get("signature"), result):
                continue  # a purge record nobody can vouch for excuses nothing
            postings.update(record.get("postings", []))
            access.update(record.get("access", []))
        return postings, access

    async def _verify_trails(self, sealed: dict[str, dict[int, str]], purged: set[str], result: Verification) -> None:
        """Each sealed entry is still there, unedited; a posting sealed but gone is reported, unless
        a retention purge removed it."""
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
        for posting, hashes in sealed.items():
            if posting in purged:
                result.removed_by_retention += len(hashes)
            else:
                result.problems.append(f"{posting}: the posting and its audit trail were removed")

    async def _verify_records(self, sealed: dict[tuple[str, str], str], purged: set[str],
                              result: Verification) -> None:
        """Each sealed access entry and purge record is still there, unedited; an access entry gone
        is reported unless a retention purge removed it."""
        for kind, records in self._records.items():
            async for doc in records.find({}):
                want = sealed.pop((kind, str(doc["_id"])), None)
                if want is None:
                    result.unsealed += 1
                elif record_hash(kind, str(doc["_id"]), doc) != want:
                    result.problems.append(f"{kind} record {doc['_id']} was altered")
                else:
                    result.records += 1
        for kind, record_id in sealed:
            if kind == "access" and record_id in purged:
                result.removed_by_retention += 1
            else:
                result.problems.append(f"{kind} record {record_id} was removed")
