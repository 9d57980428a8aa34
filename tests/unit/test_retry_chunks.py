"""A heal's chunks in flight (``PostingOperations._chunks_in_flight``): at most IN_FLIGHT at once,
the results in the keys' order whatever order the chunks end in, and the first error stops the
chunks not yet done. The real path (a mapping fix over MongoDB and RabbitMQ, 1,200 failures in three
chunks, each sent back once) is ``tests/integration/test_operators.py``."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import cast

import pytest

from paypost.domain.model import LoadStatus, PostingKind
from paypost.domain.ports.events import Publish
from paypost.domain.ports.postings import PostingCommands
from paypost.domain.posting import AuditEntry, KeptMessage, Posting, PostingKey
from paypost.domain.rules import PostingState
from paypost.handlers.messagebus import MessageBus
from paypost.handlers.operations import CHUNK, IN_FLIGHT, Pacer, PostingOperations

PRACTICE = "clinic-a"


class Loaded:
    """The store as a retry reads it once every key of a chunk loaded in place under its token."""

    def __init__(self) -> None:
        self.token = ""

    async def claim_for_retry(self, keys: Sequence[PostingKey], token: str,
                              audit: AuditEntry) -> list[tuple[Posting, KeptMessage]]:
        assert keys == []  # the retry in place loaded them all: nothing left for the queue
        return []

    async def states(self, keys: Sequence[PostingKey]) -> dict[PostingKey, PostingState]:
        return {k: PostingState(k, PostingKind.PAYMENT, LoadStatus.LOADED, 1, self.token) for k in keys}


class InPlace:
    """A retry in place that takes longer for earlier chunks (so they end in reverse order) and
    counts the chunks running at once; ``failing``: the chunk (by its first key) that raises."""

    def __init__(self, failing: str | None = None) -> None:
        self.running = 0
        self.most = 0
        self.started: list[str] = []
        self.cancelled: list[str] = []
        self.failing = failing

    async def __call__(self, practice_id: str, keys: Sequence[PostingKey], token: str,
                       audit: AuditEntry) -> set[PostingKey]:
        first = keys[0].payment_id
        self.started.append(first)
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            if first == self.failing:
                raise ConnectionError("the database went away")
            await asyncio.sleep(0.05 if len(self.started) % 2 else 0.01)
            return set(keys)
        except asyncio.CancelledError:
            self.cancelled.append(first)
            raise
        finally:
            self.running -= 1


def operations(store: Loaded, here: InPlace) -> PostingOperations:
    async def nothing_published(*_: object, **__: object) -> None:
        raise AssertionError("nothing goes through the queue here")

    return PostingOperations(cast(PostingCommands, store), cast(Publish, nothing_published), MessageBus(),
                             Pacer(1000.0), here=here)


async def test_chunks_run_in_flight_together_and_answer_in_the_keys_order() -> None:
    store, here = Loaded(), InPlace()
    store.token = "heal-1"
    ids = [f"p-{i:05}" for i in range(CHUNK * 5 + 7)]
    results = await operations(store, here).retry(PRACTICE, ids, actor="paypost", command_id="heal-1")
    assert [r.payment_id for r in results] == ids
    assert {r.result for r in results} == {"retried"}
    assert len(here.started) == 6 and here.most == IN_FLIGHT


async def test_the_first_error_stops_the_chunks_not_yet_done() -> None:
    ids = [f"p-{i:05}" for i in range(CHUNK * 6)]
    store, here = Loaded(), InPlace(failing=ids[CHUNK])  # the second chunk
    with pytest.raises(ConnectionError):
        await operations(store, here).retry(PRACTICE, ids, actor="paypost", command_id="heal-2")
    await asyncio.sleep(0.1)  # a chunk left running would start or end meanwhile
    assert here.started == [ids[0], ids[CHUNK]]  # none after the error
    assert here.cancelled == [ids[0]] and here.running == 0


async def test_a_stoppable_retry_still_goes_a_chunk_at_a_time() -> None:
    store, here = Loaded(), InPlace()
    store.token = "save-1"
    asked = 0

    async def stopped() -> bool:
        nonlocal asked
        asked += 1
        return asked > 2  # the operator pressed Stop after two chunks

    ids = [f"p-{i:05}" for i in range(200)]
    results = await operations(store, here).retry(PRACTICE, ids, actor="alice", command_id="save-1", stopped=stopped)
    assert here.most == 1 and len(here.started) == 2
    assert [r.payment_id for r in results] == ids
    assert [r.result for r in results] == ["retried"] * 100 + ["cancelled"] * 100
