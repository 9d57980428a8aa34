"""Outcomes whose events could not be sent are kept, announced once the delivery comes back, and
never more than a bounded number of them (the path through the real broker and database is
tests/integration/test_events_alerts.py)."""

from __future__ import annotations

from typing import Any

import pytest

import consumers.posting as posting_module
from consumers.posting import Disposition, Outcome, PostingService
from domain.errors import TransientFailure
from domain.model import LoadStatus
from domain.posting import PostingKey


def service() -> PostingService:
    unused: Any = None
    return PostingService(unused, unused, unused, unused, unused, max_message_bytes=1024)


def outcome(payment_id: str) -> Outcome:
    return Outcome(Disposition.ACK, PostingKey("clinic-a", payment_id), LoadStatus.LOADED)


async def test_a_failed_announcement_is_kept_and_made_once_when_the_delivery_comes_back() -> None:
    posting = service()
    sent: list[str] = []
    broker_up = False

    async def announce() -> None:
        if not broker_up:
            raise TransientFailure("the broker is not reachable")
        sent.append("p-1")

    with pytest.raises(TransientFailure):
        await posting._announced(outcome("p-1"), announce)
    assert sent == []
    assert await posting._announce_pending(PostingKey("clinic-a", "p-2")) is None  # nothing owed

    with pytest.raises(TransientFailure):  # still down: kept again
        await posting._announce_pending(PostingKey("clinic-a", "p-1"))
    broker_up = True
    assert await posting._announce_pending(PostingKey("clinic-a", "p-1")) == outcome("p-1")
    assert await posting._announce_pending(PostingKey("clinic-a", "p-1")) is None  # once
    assert sent == ["p-1"]


async def test_at_most_so_many_are_kept_the_oldest_dropped_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(posting_module, "MAX_UNANNOUNCED", 2)
    posting = service()

    async def refused() -> None:
        raise TransientFailure("the broker is not reachable")

    for payment_id in ("p-1", "p-2", "p-3"):
        with pytest.raises(TransientFailure):
            await posting._announced(outcome(payment_id), refused)

    kept = [pid for pid in ("p-1", "p-2", "p-3") if PostingKey("clinic-a", pid) in posting._unannounced]
    assert kept == ["p-2", "p-3"]
