"""The bench's run: its sizes, and its phases in order on clean services."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from paypost.bench.load import services
from paypost.bench.phases import (
    baseline,
    floor,
    growth,
    idle,
    latency,
    light,
    memory,
    replay,
    report,
    scaling,
    throughput,
)
from paypost.bench.rendering import Results
from paypost.bench.rig import started_rig


@dataclass
class Sizes:
    baseline: int
    pipeline: int
    latency_seconds: float
    light_seconds: float
    idle_seconds: float
    replay: int
    report_rows: int
    memory_backlog: int
    grown_practices: int
    grown_postings: int

    @classmethod
    def of(cls, quick: bool) -> Sizes:
        if quick:
            return cls(baseline=5_000, pipeline=5_000, latency_seconds=5, light_seconds=4, idle_seconds=5,
                       replay=1_000, report_rows=50_000, memory_backlog=10_000, grown_practices=100,
                       grown_postings=15_000)
        return cls(baseline=50_000, pipeline=50_000, latency_seconds=20, light_seconds=15, idle_seconds=20,
                   replay=10_000, report_rows=1_000_000, memory_backlog=100_000, grown_practices=1_000,
                   grown_postings=150_000)


async def run(quick: bool, log: Callable[[str], None]) -> Results:
    """Every phase, at the quick or the full sizes; ``log`` hears what each is doing. A phase that
    fails ends the run with what was measured before it, and says why (``Results.stopped_by``)."""
    return await _measured(lambda results: _phases(Sizes.of(quick), results, log))


async def run_burst(payments: int, log: Callable[[str], None]) -> Results:
    """The ratio's phases alone (the broker alone, the pipeline, the floor), ``payments`` each: what
    two versions of paypost are compared by, run after run, in the time a full run takes for one."""
    sizes = replace(Sizes.of(False), baseline=payments, pipeline=payments)
    return await _measured(lambda results: _phases(sizes, results, log, ratio_only=True))


async def _measured(phases: Callable[[Results], Awaitable[None]]) -> Results:
    results = Results()
    try:
        await phases(results)
    except Exception as exc:  # noqa: BLE001 - a measuring tool: the figures so far, and what stopped it
        results.stopped_by = f"{type(exc).__name__}: {exc}"
    return results


async def _phases(sizes: Sizes, results: Results, log: Callable[[str], None], ratio_only: bool = False) -> None:
    wall_offset = time.time() - time.perf_counter()
    async with services(log) as (amqp, mongo):
        base = await baseline.measure(amqp, sizes.baseline, results, log)
        async with started_rig(amqp, mongo, results, log, wall_offset) as rig:
            pipeline = await throughput.measure(rig, sizes.pipeline, base)
            await floor.measure(rig, sizes.pipeline, base, pipeline.payments_per_second)
            if ratio_only:
                return
            await latency.measure(rig, pipeline.meter, pipeline.payments_per_second, sizes.latency_seconds)
            await light.measure(rig, pipeline.meter, sizes.light_seconds)
            await idle.measure(rig, pipeline.meter, sizes.idle_seconds)
            await replay.measure(rig, pipeline.meter, sizes.replay)
            await report.measure(rig, sizes.report_rows)
            await memory.measure(rig, sizes.memory_backlog)
        await growth.measure(amqp, mongo, results, log, wall_offset, practices=sizes.grown_practices,
                             postings=sizes.grown_postings, light_seconds=sizes.light_seconds,
                             idle_seconds=sizes.idle_seconds)


async def run_scaling(quick: bool, log: Callable[[str], None]) -> Results:
    """The broker's own round trip, then the scaling curve (1, 2 and 4 workers), in one run."""
    sizes = Sizes.of(quick)
    results = Results()
    async with services(log) as (amqp, mongo):
        await baseline.measure(amqp, sizes.baseline, results, log)
        await scaling.measure(amqp, mongo, sizes.pipeline, results, log)
    return results
