"""The bench's paced publisher: the fixed offered rate of the latency measure."""

from __future__ import annotations

import time
from typing import Any

from paypost.bench import Publisher


class Recording(Publisher):
    def __init__(self) -> None:
        self.published: list[tuple[str, float]] = []

    async def one(self, payment_id: str, body: bytes, routing_key: str = "payment.posted") -> None:
        self.published.append((payment_id, time.perf_counter()))


async def test_paced_publishes_each_once_never_before_it_is_due_and_in_groups() -> None:
    publisher = Recording()
    bodies: list[tuple[str, Any]] = [(f"p-{i}", b"{}") for i in range(200)]
    rate = 2000.0

    before = time.perf_counter()
    sent = await publisher.paced(bodies, rate, tick=0.005)

    assert [pid for pid, _ in publisher.published] == [pid for pid, _ in bodies]
    assert list(sent) == [pid for pid, _ in bodies]
    for i, (pid, _) in enumerate(bodies):
        assert sent[pid] >= before + i / rate  # due at its place in the schedule, not earlier
        assert sent[pid] <= dict(publisher.published)[pid]  # timed from before its publish call
    # What falls due within one tick goes out together: far fewer send times than messages.
    assert len(set(sent.values())) < len(bodies) / 2
