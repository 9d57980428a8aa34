"""Sealing the audit trail into a hash chain, signing it, and verifying it.

A seal appends to a chain of its own and never writes a posting: the sealer follows the postings'
changes in the order MongoDB made them (a change stream of the inserts, and of the updates that
touch a trail), and each round hashes the entries appended since, appends one seal naming them
(posting and index), and records in that seal how far it read the changes (``stream``, the
stream's resume token, and ``until``, the time of the newest change it covers). The next round,
in any process, reads on from there: every entry is in a change after that point or is sealed
already. Which entries of a posting are sealed is read from the seals themselves (an index on the
postings they name), so a change read twice (a round run again, a sealer that took over) seals
nothing twice. A payment's posting is written once and never again for its seal.

``paypost audit verify`` recomputes every sealed entry from the postings and every seal from the
one before: an edited, removed or reordered entry, an entry sealed twice, or an edited seal, is
reported.

Any number of paypost processes may seal at once. Each round is one transaction: it reads the
trails of the postings changed, which of their entries the seals cover and the last seal, and
appends the next seal (``seq`` is unique). Two rounds that append the same ``seq`` conflict, and
the one that loses runs again, reading the seals anew: the chain stays linear and every entry is
sealed exactly once, through crashes and a primary's failover. A lease (``infra/mongo/leases.py``)
lets one process's sealer work at a time, so the others do not waste rounds on conflicts.

Where the chain starts reading: the newest seal's ``stream``, or a later point noted beside the chain
(``audit_stream``) by a round that read changes and found nothing more to seal (an entry edited in
place, a change read twice); before any seal, the point recorded when paypost first set up the
database (``audit_stream`` too). If MongoDB no longer has the changes since
then (its oplog rolled on while no sealer ran), the sealer reads every posting once, sealing what
the seals do not cover, and starts again from the changes after that. Postings of versions that
marked a changed trail ``audit_dirty`` are sealed the same way, once, and the mark removed.

Beside the postings' trails the chain covers three collections of records (contract section 12): the
access trail (``access_log``, kind ``access``), the retention purge's records (``audit_purges``,
kind ``purge``) and the month's closes (``period_closes``), each written with ``sealed: false`` and
marked sealed in the round that chains it. With ``PAYPOST_AUDIT_KEY`` each seal is signed
(HMAC-SHA-256 of its seq and hash), and so is each purge record: someone who can write to the
database but does not hold the key can neither rewrite the trail and hash the chain again, nor pass
off a deletion as a purge.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bson import Timestamp
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.change_stream import AsyncCollectionChangeStream
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
from paypost.infra.mongo.database import Collections, Doc
from paypost.infra.mongo.leases import Lease, holder_name

# Rounds that lost a race (another round appended the same seq first) run again this often.
SEQ_RACES = 50
WRITE_CONFLICT = 112
# MongoDB no longer has the changes asked for (its oplog rolled on), or cannot resume from the token.
CHANGES_LOST = frozenset({260, 280, 286})
SEALED_BY_INDEX = "sealed_by_posting"

# The postings' changes that may add to a trail: every insert and replacement, and the updates that
# set ``audit`` or one of its entries (``audit.3``); only which posting, when, and where to resume.
TRAIL_CHANGES: list[Doc] = [
    {"$match": {"$or": [
        {"operationType": {"$in": ["insert", "replace"]}},
        {"operationType": "update", "$expr": {"$anyElementTrue": [{"$map": {
            "input": {"$objectToArray": "$updateDescription.updatedFields"},
            "in": {"$regexMatch": {"input": "$$this.k", "regex": "^audit(\\.|$)"}}}}]}},
    ]}},
    {"$project": {"documentKey": 1, "clusterTime": 1, "wallTime": 1}},
]
# How long one read of the changes waits for more, at most, once it has read what there was.
CAUGHT_UP_MS = 20


def _is_conflict(exc: OperationFailure) -> bool:
    return exc.code == WRITE_CONFLICT or "WriteConflict" in str(exc.details or exc)


@dataclass
class _Taken:
    """The postings a round seals: changed since the last round (or a page of a full read)."""

    ids: list[Any] = field(default_factory=list)
    token: Mapping[str, Any] | None = None  # where the changes were read to: stored in the round's seal
    cluster_time: Timestamp | None = None  # the newest change's: the round reads at least that far
    until: datetime | None = None  # the newest change's time
    caught_up: bool = False  # no change was left to read


class _Changes:
    """The postings' changes as a round takes them, from where the chain last read."""

    def __init__(self, stream: AsyncCollectionChangeStream[Doc], until: datetime | None) -> None:
        self._stream = stream
        self.until = until
        self.unstored = False  # changes were read since the last seal that stored how far

    async def take(self, limit: int) -> _Taken:
        taken = _Taken(until=self.until)
        seen: set[Any] = set()
        while len(seen) < limit:
            change = await self._stream.try_next()
            if change is None:
                taken.caught_up = True
                break
            self.unstored = True
            if change["documentKey"]["_id"] not in seen:
                seen.add(change["documentKey"]["_id"])
                taken.ids.append(change["documentKey"]["_id"])
            taken.cluster_time = change["clusterTime"]
            taken.until = change.get("wallTime") or taken.until
        taken.token = self._stream.resume_token
        self.until = taken.until
        return taken


class AuditSealer:
    def __init__(self, collections: Collections, keys: AuditKeys | None = None,
                 seals: AsyncCollection[Doc] | None = None) -> None:
        """``seals``: where the seals are kept, when not the database's ``audit_seals`` (a test's stand-in)."""
        self._client = collections.db.client
        self._postings = collections.postings
        codecs = collections.postings.codec_options
        self._seals = seals if seals is not None else collections.db.get_collection("audit_seals", codec_options=codecs)
        self._starts = collections.db.get_collection("audit_stream", codec_options=codecs)
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

    async def seal_leading(self, lease: Lease, limit: int = 200, pause: float = 0.0,
                           until: Callable[[], bool] | None = None) -> int | None:
        """Seal everything left while ``lease`` is held; how many entries. Nothing to seal: 0, and the
        lease is not renewed (an idle sealer writes nothing). None: there is something to seal, but
        another process's sealer holds the lease (this one stands by, to take it over). ``until``: as
        for ``seal_all``."""
        if not await self.waiting():
            return 0
        if await lease.acquire() is None:
            return None
        return await self.seal_all(limit, pause, until=until)

    async def ensure_indexes(self) -> None:
        await self._seals.create_index([("seq", ASCENDING)], unique=True)
        # Which entries of a posting are sealed: the seals that name it.
        await self._seals.create_indexes([IndexModel([("entries.posting", ASCENDING)], name=SEALED_BY_INDEX)])
        # Postings of earlier versions whose trail changed since its seal (``audit_dirty``): sealed once.
        await self._postings.create_indexes([IndexModel([("audit_dirty", ASCENDING), ("load_status", ASCENDING)],
                                                        name="audit_dirty_by_status",
                                                        partialFilterExpression={"audit_dirty": True})])
        with contextlib.suppress(OperationFailure):
            await self._postings.drop_index("audit_dirty_1")  # the index of earlier versions
        for records in self._records.values():
            await records.create_indexes([IndexModel([("sealed", ASCENDING)], name="unsealed",
                                                     partialFilterExpression={"sealed": False})])
        # Where the chain starts reading the postings' changes, before its first seal: now, before
        # this paypost writes anything (kept if an earlier start recorded it).
        now = (await self._postings.database.command("ping"))["operationTime"]
        await self._starts.update_one({"_id": "postings"}, {"$setOnInsert": {"from": now, "at": datetime.now(UTC)}},
                                      upsert=True)

    async def seal(self, limit: int = 500) -> int:
        """One round: seal what changed since the last seal, up to ``limit`` postings (and as many of
        each kind of record); returns how many entries were sealed."""
        return await self.seal_all(limit, rounds=1)

    async def seal_all(self, limit: int = 200, pause: float = 0.0, rounds: int | None = None,
                       until: Callable[[], bool] | None = None) -> int:
        """Seal until nothing is left to seal (a busy minute leaves thousands); returns the entries sealed.

        In rounds of ``limit`` postings, each followed by a pause of ``pause`` times as long as the
        round took: the database serves the payments too, and short rounds with gaps between them
        delay their writes less than one long burst. ``rounds``: at most that many. ``until``: no
        round begins once it says so (a stop: what is left, the next sealer seals from where this
        one's chain ends).
        """
        total, done = 0, 0
        async with self._changes() as changes:
            while (rounds is None or done < rounds) and not (until is not None and until()):
                started = time.monotonic()
                done += 1
                sealed, more = await self._next_round(changes, limit)
                total += sealed
                if not more:
                    break
                await asyncio.sleep((time.monotonic() - started) * pause)
        return total

    async def _next_round(self, changes: _Changes | None, limit: int) -> tuple[int, bool]:
        """One round: the entries sealed, and whether there may be more to seal."""
        legacy = [d["_id"] async for d in self._postings.find({"audit_dirty": True}, {"_id": 1},
                                                              hint="audit_dirty_by_status").limit(limit)]
        if legacy:
            return await self._seal(_Taken(ids=legacy), limit, legacy=True), True
        if changes is None:  # the changes are lost: read every posting once instead
            return await self._seal_everything(limit), False
        taken = await changes.take(limit)
        # A round that read only changes sealed already (a round run again, a sealer taking over, an
        # entry edited in place) notes how far it read once it has caught up, beside the chain (in
        # ``audit_stream``), so that they are not read again and again.
        store_read = taken.caught_up and changes.unstored
        sealed = await self._seal(taken, limit, store_read=store_read)
        if sealed or store_read:
            changes.unstored = False
        return sealed, not taken.caught_up or await self._records_left()

    @contextlib.asynccontextmanager
    async def _changes(self) -> AsyncIterator[_Changes | None]:
        """The postings' changes from where the chain last read; None if MongoDB no longer has them
        (or the database was never set up by a version that records where to start)."""
        last = await self._seals.find_one({"stream": {"$exists": True}}, {"seq": 1, "stream": 1, "until": 1},
                                          sort=[("seq", DESCENDING)])
        origin = await self._starts.find_one({"_id": "postings"})
        if origin is not None and "stream" in origin and origin["after_seq"] >= (last["seq"] if last else 0):
            last = origin  # a round read further than the newest seal says, and sealed nothing more
        if last is not None:
            start = {"resume_after": last["stream"]}
        elif origin is not None:
            start = {"start_at_operation_time": origin["from"]}
        else:
            yield None
            return
        try:
            stream = await self._postings.watch(TRAIL_CHANGES, max_await_time_ms=CAUGHT_UP_MS, **start)
        except OperationFailure as exc:
            if exc.code not in CHANGES_LOST:
                raise
            yield None
            return
        try:
            yield _Changes(stream, last.get("until") if last is not None else None)
        finally:
            await stream.close()

    async def _seal_everything(self, limit: int) -> int:
        """Read every posting once, sealing what the seals do not cover, then record that the changes
        are to be read from the moment before this read began."""
        stream = await self._postings.watch(TRAIL_CHANGES, max_await_time_ms=CAUGHT_UP_MS)
        try:
            token, started_at = stream.resume_token, datetime.now(UTC)
        finally:
            await stream.close()
        total, after = 0, None
        while True:
            page = [d["_id"] async for d in self._postings.find(
                {"_id": {"$gt": after}} if after is not None else {}, {"_id": 1}).sort("_id", ASCENDING).limit(limit)]
            if page:
                total += await self._seal(_Taken(ids=page), limit)
                after = page[-1]
            if len(page) < limit:
                break
        # Every entry written before ``token`` is sealed now: the chain reads on from there.
        return total + await self._seal(_Taken(token=token, until=started_at), limit, store_read=True)

    async def _seal(self, taken: _Taken, limit: int, *, legacy: bool = False, store_read: bool = False) -> int:
        """Seal in one transaction, run again if it lost a race (another round appended the same seq).

        Any other failure (the database away) is raised at once, not retried here: the driver's own
        ``with_transaction`` would retry for two minutes, holding a stop."""
        for race in range(SEQ_RACES):
            try:
                async with self._client.start_session(causal_consistency=True) as session:
                    if taken.cluster_time is not None:  # read the postings at least as new as their changes
                        session.advance_operation_time(taken.cluster_time)
                    async with await session.start_transaction():
                        return await self._round(session, taken, limit, legacy, store_read)
            except DuplicateKeyError:
                pass  # another process appended this seq first: chain onto its seal
            except OperationFailure as exc:
                if not exc.has_error_label("TransientTransactionError") or not _is_conflict(exc):
                    raise
            # Lost to another round: run again, after a pause that grows and is drawn at random, so
            # that rounds racing each other fall out of step.
            await asyncio.sleep(random.uniform(0, 0.005 * (race + 1)))  # noqa: S311 - jitter, no secret
        raise RuntimeError(f"{SEQ_RACES} sealing rounds in a row lost the race for the next seal")

    async def waiting(self) -> bool:
        """Whether anything waits to be sealed: a posting changed since the last seal, a posting of an
        earlier version marked changed, or a record."""
        return await self.changes_waiting(bound=1) > 0

    async def changes_waiting(self, bound: int = 10_000) -> int:
        """What waits to be sealed, counted up to ``bound`` of each kind: postings changed since the
        chain last read (each change adds an entry or more), postings of earlier versions marked
        changed, and records."""
        legacy = await self._postings.count_documents({"audit_dirty": True}, hint="audit_dirty_by_status",
                                                      limit=bound)
        records = [await c.count_documents({"sealed": False}, limit=bound) for c in self._records.values()]
        async with self._changes() as changes:
            if changes is None:
                return bound  # lost: every posting is to be read again
            taken = await changes.take(bound)
            return legacy + sum(records) + (len(taken.ids) if taken.caught_up else bound)

    async def sealed_until(self) -> datetime | None:
        """The time of the newest change the chain has sealed (every change before it is sealed); None
        if no seal says (none made by this version yet)."""
        last = await self._seals.find_one({"until": {"$ne": None}}, {"until": 1}, sort=[("seq", DESCENDING)])
        return last["until"] if last is not None else None

    async def sealed_count(self, posting_id: str) -> int:
        """How many of a posting's entries are sealed (they are sealed from the first, in order)."""
        return (await self._sealed_counts(None, [posting_id])).get(posting_id, 0)

    async def _records_left(self) -> bool:
        for records in self._records.values():
            if await records.find_one({"sealed": False}, {"_id": 1}) is not None:
                return True
        return False

    async def _sealed_counts(self, session: AsyncClientSession | None, ids: Sequence[Any]) -> dict[Any, int]:
        """By posting, how many of its entries the seals cover."""
        wanted = list(ids)
        found = await self._seals.aggregate([
            {"$match": {"entries.posting": {"$in": wanted}}},
            {"$project": {"entries": {"$filter": {"input": "$entries", "cond": {"$in": ["$$this.posting", wanted]}}}}},
            {"$unwind": "$entries"},
            {"$group": {"_id": "$entries.posting", "last": {"$max": "$entries.index"}}},
        ], session=session, hint=SEALED_BY_INDEX)
        return {d["_id"]: d["last"] + 1 async for d in found}

    async def _round(self, session: AsyncClientSession, taken: _Taken, limit: int, legacy: bool,
                     store_read: bool) -> int:
        docs = await self._postings.find({"_id": {"$in": taken.ids}}, {"audit": 1},
                                         session=session).to_list(None) if taken.ids else []
        sealed = await self._sealed_counts(session, taken.ids) if docs else {}
        records = {kind: await c.find({"sealed": False}, session=session).limit(limit).to_list(None)
                   for kind, c in self._records.items()}
        covered = [
            {"posting": doc["_id"], "index": index, "hash": entry_hash(doc["_id"], index, doc["audit"][index])}
            for doc in docs
            for index in range(sealed.get(doc["_id"], 0), len(doc.get("audit", [])))
        ]
        beside = [{"kind": kind, "id": str(d["_id"]), "hash": record_hash(kind, str(d["_id"]), d)}
                  for kind, found in records.items() for d in found]
        if not covered and not beside:
            if store_read and taken.token is not None:  # read further, nothing to seal: noted beside the chain
                last = await self._seals.find_one({}, {"seq": 1}, sort=[("seq", DESCENDING)], session=session)
                await self._starts.update_one(
                    {"_id": "postings"},
                    {"$set": {"stream": taken.token, "until": taken.until, "after_seq": last["seq"] if last else 0}},
                    upsert=True, session=session)
        else:
            last = await self._seals.find_one(sort=[("seq", DESCENDING)], session=session)
            seq = (last["seq"] + 1) if last else 1
            previous = last["hash"] if last else GENESIS
            digest = seal_hash(previous, seq, [*(c["hash"] for c in covered), *(r["hash"] for r in beside)])
            seal: Doc = {"seq": seq, "previous": previous, "entries": covered, "at": datetime.now(UTC), "hash": digest}
            if taken.token is not None:
                seal["stream"], seal["until"] = taken.token, taken.until
            if beside:
                seal["records"] = beside
            if self._keys is not None:
                seal["key_id"], seal["signature"] = self._keys.sign(seal_message(seq, digest))
            await self._seals.insert_one(seal, session=session)
        if legacy:  # sealed by this version's rule now: the earlier versions' mark goes
            await self._postings.update_many({"_id": {"$in": taken.ids}}, {"$unset": {"audit_dirty": ""}},
                                             session=session)
        for kind, found in records.items():
            if found:
                await self._records[kind].update_many({"_id": {"$in": [d["_id"] for d in found]}},
                                                      {"$set": {"sealed": True}}, session=session)
        return len(covered) + len(beside)

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
