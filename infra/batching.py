"""Coalescing concurrent database calls into one round trip.

Hundreds of deliveries are in flight at once (the prefetch window). Each still reads as one call
(`insert_one`, `find_one`, a conditional `update_one`), but while one batch is at the database,
the calls made meanwhile wait together and go as the next batch: one `insert_many`, one `find`
with `$in`, one `bulk_write`. Under light load a call goes at once, alone, so latency does not
suffer; under heavy load the round trips per payment fall by the batch size.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError

from paypost.domain.errors import UnconfirmedWrite
from paypost.infra.mongo.database import Doc

R = TypeVar("R")
S = TypeVar("S")


class Coalescer(Generic[R, S]):
    """Runs ``run(requests)`` for the calls gathered while the previous batch was running."""

    def __init__(self, run: Callable[[list[R]], Awaitable[Sequence[S | BaseException]]], max_batch: int = 500) -> None:
        self._run = run
        self._max = max_batch
        self._waiting: list[tuple[R, asyncio.Future[S]]] = []
        self._busy = False
        self._task: asyncio.Task[None] | None = None  # held: the loop keeps only a weak reference

    async def submit(self, request: R) -> S:
        future: asyncio.Future[S] = asyncio.get_running_loop().create_future()
        self._waiting.append((request, future))
        if not self._busy:
            self._busy = True
            self._task = asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:self._max], self._waiting[self._max:]
                try:
                    outcomes = await self._run([request for request, _ in batch])
                except BaseException as exc:  # every caller of the batch gets the error, even a cancel
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    if future.done():
                        continue
                    if isinstance(outcome, BaseException):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
        finally:
            # Calls still waiting (a cancel cut the drain short) go with the next call's drain.
            self._busy = False


class SharedRead(Generic[R, S]):
    """Concurrent calls for the same key share one read: the first starts it, the others wait for
    its answer (a batch asking at once for what no cache holds yet makes one round trip)."""

    def __init__(self, read: Callable[[R], Awaitable[S]]) -> None:
        self._read = read
        self._pending: dict[R, asyncio.Future[S]] = {}

    async def __call__(self, key: R) -> S:
        reading = self._pending.get(key)
        if reading is None:
            reading = asyncio.ensure_future(self._read(key))
            self._pending[key] = reading
            reading.add_done_callback(lambda _: self._pending.pop(key, None))
        return await asyncio.shield(reading)  # a caller cancelled leaves the read to the others


def _unconfirmed(write_concern_errors: list[Doc]) -> str:
    """What an ``UnconfirmedWrite`` says: the server's name for the write concern it could not meet
    (never its message, which may quote a document's key)."""
    said = write_concern_errors[0]
    return f"write concern not met: {said.get('codeName', said.get('code'))}"


async def insert_all(collection: AsyncCollection[Doc], docs: Sequence[Doc]) -> list[bool | Exception]:
    """One unordered ``insert_many``: for each document True, or DuplicateKeyError for a taken _id
    (or the write error that stopped it); an error of the whole insert is raised. A document the
    server inserted without confirming the write concern gets ``UnconfirmedWrite``, not True: it
    may yet be rolled back, so what it records must not be acknowledged or announced as written."""
    outcomes: list[bool | Exception] = [True] * len(docs)
    try:
        await collection.insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        for error in exc.details.get("writeErrors", []):
            if error.get("code") == 11000:
                outcomes[error["index"]] = DuplicateKeyError(error.get("errmsg", "duplicate key"), 11000)
            else:
                outcomes[error["index"]] = BulkWriteError({"writeErrors": [error]})
        if said := exc.details.get("writeConcernErrors"):
            outcomes = [UnconfirmedWrite(_unconfirmed(said)) if outcome is True else outcome for outcome in outcomes]
    return outcomes


def inserter(collection: AsyncCollection[Doc]) -> Coalescer[Doc, bool]:
    """``insert_one`` in batches; each call gets True, or DuplicateKeyError for a taken _id."""

    async def run(docs: list[Doc]) -> list[bool | Exception]:
        return await insert_all(collection, docs)

    return Coalescer(run)


def finder(collection: AsyncCollection[Doc], projection: Doc | None = None) -> Coalescer[Any, Doc | None]:
    """``find_one({"_id": ...})`` in batches: one ``find`` with ``$in``."""

    async def run(ids: list[Any]) -> list[Doc | None]:
        found = {d["_id"]: d async for d in collection.find({"_id": {"$in": list(set(ids))}}, projection)}
        return [found.get(i) for i in ids]

    return Coalescer(run)


def conditional_updater(collection: AsyncCollection[Doc], returning: bool = False
                        ) -> Coalescer[tuple[Doc, Doc], Any]:
    """Conditional ``update_one(filter, update)`` in one ``bulk_write``; each call learns whether
    its own update matched (each carries a marker that is read back in one query).

    With ``returning``, each call gets the document its update changed, or None. An update the
    server applied without confirming the write concern gets ``UnconfirmedWrite`` (as in
    ``insert_all``); one it did not apply, False or None as ever.
    """

    async def run(ops: list[tuple[Doc, Doc]]) -> list[Any]:
        token = uuid.uuid4().hex
        markers = [f"{token}:{i}" for i in range(len(ops))]
        writes = []
        for (query, update), marker in zip(ops, markers, strict=True):
            writes.append(UpdateOne(query, {**update, "$set": {**update.get("$set", {}), "_write": marker}}))
        unconfirmed: str | None = None
        try:
            result = await collection.bulk_write(writes, ordered=False)
            if not returning and result.matched_count == len(ops):
                return [True] * len(ops)  # every update matched: nothing to read back
        except BulkWriteError as exc:
            if exc.details.get("writeErrors") or not (said := exc.details.get("writeConcernErrors")):
                raise
            unconfirmed = _unconfirmed(said)
        ids = list({q["_id"] for q, _ in ops})
        written = {d["_write"]: d async for d in collection.find(
            {"_id": {"$in": ids}, "_write": {"$in": markers}}, None if returning else {"_write": 1})}
        if unconfirmed is not None:
            return [UnconfirmedWrite(unconfirmed) if m in written else None if returning else False for m in markers]
        if not returning:
            return [m in written for m in markers]
        for doc in written.values():
            del doc["_write"]
        return [written.get(m) for m in markers]

    return Coalescer(run)
