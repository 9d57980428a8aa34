"""The bench's own measuring: the paced publisher (the fixed offered rate of the latency measure),
the disk probe, which payments a disk stall held up, and how busy a phase kept the cores."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from paypost.bench.load import Publisher
from paypost.bench.probes import (
    CpuMeter,
    DiskProbe,
    clear_of,
    cores_busy,
    cpu_seconds_exact,
    wakeups,
    wakeups_carried,
    wakeups_detail,
)


class Recording(Publisher):
    def __init__(self) -> None:
        self.published: list[tuple[str, float]] = []

    async def one(self, payment_id: str, body: bytes, routing_key: str = "payment.posted") -> None:
        self.published.append((payment_id, time.perf_counter()))


BODIES: list[tuple[str, Any]] = [(f"p-{i}", b"{}") for i in range(200)]
RATE = 2000.0


async def test_paced_publishes_each_once_never_before_it_is_due_and_in_groups() -> None:
    publisher = Recording()

    before = time.perf_counter()
    sent = await publisher.paced(BODIES, RATE, tick=0.005)

    assert [pid for pid, _ in publisher.published] == [pid for pid, _ in BODIES]
    published = dict(publisher.published)
    late = [pid for i, (pid, _) in enumerate(BODIES) if published[pid] < before + i / RATE]
    assert late == []  # each went out at its place in the schedule or after, never earlier
    # What falls due within one tick goes out together: far fewer send times than messages.
    assert len(set(sent.values())) < len(BODIES) / 2


async def test_paced_times_each_payment_from_when_it_fell_due_to_before_its_publish_call() -> None:
    publisher = Recording()

    before = time.perf_counter()
    sent = await publisher.paced(BODIES, RATE, tick=0.005)

    published = dict(publisher.published)
    mistimed = [pid for i, (pid, _) in enumerate(BODIES) if not before + i / RATE <= sent[pid] <= published[pid]]
    assert mistimed == []


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


def test_the_disk_probe_times_each_sync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []

    def slow_sync(fd: int) -> None:  # a disk that takes 10 ms to make each write durable
        synced.append(fd)
        time.sleep(0.01)

    monkeypatch.setattr(os, "fdatasync", slow_sync)
    with DiskProbe(str(tmp_path), every=0.005) as probe:
        deadline = time.monotonic() + 10  # the cores may be busy (other test workers): until 3 syncs
        while len(synced) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)

    assert len(probe.syncs) == len(synced) >= 3  # one timing per sync
    assert min(took for _, took in probe.syncs) >= 0.01  # each covers its sync's 10 ms


def test_the_disk_probe_writes_in_its_folder_and_leaves_nothing_there(tmp_path: Path) -> None:
    with DiskProbe(str(tmp_path), every=0.005):
        time.sleep(0.05)
        written = [p.stat().st_size for p in tmp_path.iterdir()]

    assert len(written) == 1 and written[0] > 0
    assert list(tmp_path.iterdir()) == []


def test_the_disk_probe_reports_only_the_syncs_slower_than_the_threshold(tmp_path: Path) -> None:
    probe = DiskProbe(str(tmp_path))
    probe.syncs = [(1.0, 0.001), (2.0, 0.3), (3.0, 0.05)]

    assert probe.stalls(longer_than=0.05) == [(2.0, 2.3)]  # as (from, to); exactly the threshold is no stall
    assert probe.slowest_ms() == 300.0
    assert probe.slowest_ms(before=2.0) == 1.0  # only the syncs that started before then


def test_cores_busy_says_how_many_cores_a_phase_kept_busy_and_who_spent_them() -> None:
    spent = {"paypost": 700.0, "mongod": 800.0, "RabbitMQ": 500.0, "bench publisher": 0.0}
    note = cores_busy(spent, per_second=500)  # 2,000 us per payment at 500/s: one core
    assert note == f"1.00 of {os.cpu_count() or 1} cores busy (paypost 700, mongod 800, RabbitMQ 500)"


def _spin(seconds: float) -> None:
    until = time.thread_time() + seconds
    while time.thread_time() < until:
        pass


def test_the_exact_cpu_reading_counts_a_few_milliseconds_that_the_ticks_of_proc_stat_cannot() -> None:
    pid = os.getpid()
    before = cpu_seconds_exact(pid)
    assert before is not None
    _spin(0.003)  # 3 ms of work: under one 10 ms tick of /proc/PID/stat
    after = cpu_seconds_exact(pid)
    assert after is not None and 0.003 <= after - before < 0.5
    assert cpu_seconds_exact(2**22 + 1) is None  # no such process

    meter = CpuMeter({"this": pid}, exact=True)
    meter.start()
    _spin(0.004)
    spent = meter.per_payment_us(1)["this"]
    assert 4_000 <= spent < 500_000


def test_wakeups_count_each_sleep_of_every_thread_and_only_the_carriers_are_summed() -> None:
    before = wakeups(os.getpid())
    assert before is not None
    for _ in range(20):
        time.sleep(0.001)  # each sleep gives the core up: one voluntary context switch at least
    after = wakeups(os.getpid())
    assert after is not None and after - before >= 20
    assert wakeups(2**22 + 1) is None  # no such process

    woken = {"paypost": 7.0, "mongod": 40.0, "RabbitMQ": 110.0, "bench publisher": 18.0}
    assert wakeups_carried(woken) == 157.0
    assert wakeups_detail(woken) == "paypost 7.0, mongod 40.0, RabbitMQ 110.0"


def test_a_phase_that_fails_ends_the_run_with_the_figures_before_it_and_says_why(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from typer.testing import CliRunner

    from paypost.bench import runner
    from paypost.bench.rendering import Results
    from paypost.cli import app

    async def phases(sizes: runner.Sizes, results: Results, log: Any) -> None:
        results.add("baseline: broker round trip", 2_000.0, "msg/s", "baseline_pps")
        raise RuntimeError("paypost (paypost run --role all) did not answer /readyz with 200 in time")

    monkeypatch.setattr(runner, "_phases", phases)
    result = CliRunner().invoke(app, ["bench", "--quick"])
    assert result.exit_code == 1
    assert "baseline: broker round trip" in result.stdout and '"baseline_pps": 2000.0' in result.stdout
    said = " ".join(result.output.split())  # the console wraps its lines
    assert "The bench stopped before its last phase: RuntimeError: paypost (paypost run --role all) did not " \
           "answer /readyz" in said
    assert "Traceback" not in result.output


def test_the_burst_option_runs_only_the_ratios_phases_with_that_many_payments(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``paypost bench --burst N``: the broker alone, the pipeline and the floor, N payments each, and
    their figures as the last line; nothing else is measured."""
    import contextlib
    import json
    from collections.abc import AsyncIterator

    from typer.testing import CliRunner

    from paypost.bench import runner
    from paypost.bench.phases import baseline, throughput
    from paypost.bench.phases import floor as floor_phase
    from paypost.bench.phases import latency as latency_phase
    from paypost.bench.phases.throughput import Throughput
    from paypost.bench.rendering import Results
    from paypost.cli import app

    ran: list[tuple[str, int]] = []

    @contextlib.asynccontextmanager
    async def services(log: Any) -> AsyncIterator[tuple[str, str]]:
        yield "amqp://broker", "mongodb://database"

    @contextlib.asynccontextmanager
    async def rig(amqp: str, mongo: str, results: Results, log: Any, offset: float) -> AsyncIterator[Any]:
        yield results

    async def broker(amqp: str, n: int, results: Results, log: Any) -> float:
        ran.append(("baseline", n))
        results.add("baseline: broker round trip", 4_000.0, "msg/s", "baseline_pps")
        return 4_000.0

    async def pipeline(results: Any, n: int, base: float) -> Throughput:
        ran.append(("pipeline", n))
        results.add("pipeline: publish to LOADED", 3_000.0, "payments/s", "pipeline_pps")
        return Throughput(3_000.0, meter=None)  # type: ignore[arg-type]  # the later phases are not run

    async def floor(results: Any, n: int, base: float, pps: float) -> None:
        ran.append(("floor", n))
        results.add("floor: the least a load needs", 3_500.0, "payments/s", "floor_pps")

    monkeypatch.setattr(runner, "services", services)
    monkeypatch.setattr(runner, "started_rig", rig)
    monkeypatch.setattr(baseline, "measure", broker)
    monkeypatch.setattr(throughput, "measure", pipeline)
    monkeypatch.setattr(floor_phase, "measure", floor)
    async def later(*args: Any, **kwargs: Any) -> None:
        ran.append(("latency", 0))

    monkeypatch.setattr(latency_phase, "measure", later)  # the full run's next phase: --burst stops before it

    result = CliRunner().invoke(app, ["bench", "--burst", "20000"])

    assert result.exit_code == 0, result.output
    assert ran == [("baseline", 20_000), ("pipeline", 20_000), ("floor", 20_000)]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "baseline_pps": 4000.0, "pipeline_pps": 3000.0, "floor_pps": 3500.0}
    refused = CliRunner().invoke(app, ["bench", "--burst", "10"])
    assert refused.exit_code == 2 and "Traceback" not in refused.output
