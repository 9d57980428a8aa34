"""The bench's paced publisher: the fixed offered rate of the latency measure."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from paypost.bench.load import Publisher
from paypost.bench.probes import DiskProbe, clear_of, cores_busy


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


def test_a_payment_is_clear_of_a_disk_stall_only_when_its_wait_overlaps_none() -> None:
    stalls = [(10.0, 10.5), (20.0, 20.2)]
    spans = {
        "before": (9.0, 9.9),       # done before the first stall began
        "across": (9.9, 10.6),      # waiting through it
        "inside": (10.1, 10.2),     # published and done within it
        "ends-in": (9.95, 10.1),    # done while it lasted
        "after": (10.5, 10.9),      # published as it ended: a backlog behind it still counts as clear
        "second": (19.0, 21.0),
        "between": (12.0, 13.0),
    }

    assert clear_of(spans, stalls) == ["before", "after", "between"]
    assert clear_of(spans, []) == list(spans)


def test_the_disk_probe_times_each_sync_and_reports_only_the_slow_ones(tmp_path: Path) -> None:
    with DiskProbe(str(tmp_path), every=0.005) as probe:
        time.sleep(0.2)
    assert len(probe.syncs) >= 5
    assert all(took >= 0 for _, took in probe.syncs)
    assert list(tmp_path.iterdir()) == []  # its file is removed
    starts = [started for started, _ in probe.syncs]
    assert starts == sorted(starts)
    # a stall is a sync longer than the threshold, reported as (from, to)
    probe.syncs = [(1.0, 0.001), (2.0, 0.3), (3.0, 0.05)]
    assert probe.stalls(longer_than=0.05) == [(2.0, 2.3)]
    assert probe.slowest_ms() == 300.0
    assert probe.slowest_ms(before=2.0) == 1.0  # only the syncs that started before then


def test_cores_busy_says_how_many_cores_a_phase_kept_busy_and_who_spent_them() -> None:
    spent = {"paypost": 700.0, "mongod": 800.0, "RabbitMQ": 500.0, "bench publisher": 0.0}
    note = cores_busy(spent, per_second=500)  # 2,000 us per payment at 500/s: one core
    assert note.startswith("1.00 of ")
    assert "(paypost 700, mongod 800, RabbitMQ 500)" in note
