"""3b. Light load, as a practice's real traffic is: 10 and 50 payments a second, each mostly alone.
Publish to its ``posting.loaded`` event (p50, p99: what a dashboard sees, the outcome durable by
then) and the CPU each payment costs, beside the broker alone at 10/s: every fixed cost per
payment is paid in full here, where a burst shares it."""

from __future__ import annotations

import asyncio
import time

from paypost.bench.load import PRACTICE, payment
from paypost.bench.outcomes import settled
from paypost.bench.phases import broker_alone
from paypost.bench.probes import CpuMeter, no_gc_pauses, wakeups_carried, wakeups_detail
from paypost.bench.rendering import percentile
from paypost.bench.rig import Rig
from paypost.infra.rabbit.watch import WatchedEvent, watch_events

RATES = (10, 50)


async def _receive(events: asyncio.Queue[WatchedEvent], prefix: str, n: int, into: dict[str, float]) -> None:
    """When each of ``n`` payments' ``posting.loaded`` arrived, by payment id (others are passed over)."""
    while len(into) < n:
        event = await events.get()
        payment_id = str(event.body.get("payment_id", ""))
        if payment_id.startswith(prefix):
            into.setdefault(payment_id, time.perf_counter())


async def timed(rig: Rig, events: asyncio.Queue[WatchedEvent], rate: float, count: int, prefix: str) -> list[float]:
    """``count`` payments published at ``rate`` a second: ms from each one's publish to its ``posting.loaded``."""
    loaded: dict[str, float] = {}
    receiving = asyncio.create_task(_receive(events, prefix, count, loaded))
    with no_gc_pauses():
        sent = await rig.publisher.paced(
            [(f"{prefix}{i}", payment(f"{prefix}{i}", f"acct-{i % 50}", "EHR-1")) for i in range(count)], rate)
        await asyncio.wait_for(receiving, timeout=120)
    return [(loaded[pid] - at) * 1000 for pid, at in sent.items()]


async def measure(rig: Rig, meter: CpuMeter, seconds: float) -> None:
    results = rig.results
    await settled(rig.c)
    async with watch_events(rig.amqp, [f"posting.loaded.{PRACTICE}"]) as events:
        for rate in RATES:
            count = max(20, int(rate * seconds))
            rig.log(f"light load: {count:,} payments at {rate}/s, each timed to its posting.loaded event")
            meter.start()
            waited = await timed(rig, events, rate, count, f"w{rate}-")
            spent = meter.per_payment_us(count)
            woken = meter.wakeups_per_payment(count)
            target = "; target <= the broker alone at 10/s (below) + 4 ms" if rate == RATES[0] else ""
            results.add(f"light load p50 at {rate}/s", percentile(waited, 50), "ms", f"p50_{rate}pps_ms",
                        f"publish to its posting.loaded event{target}")
            results.add(f"  p99 at {rate}/s", percentile(waited, 99), "ms", f"p99_{rate}pps_ms")
            if spent:
                results.add(f"  CPU per payment at {rate}/s, all", sum(spent.values()), "us", f"cpu_us_{rate}pps",
                            f"paypost {spent.get('paypost', 0):,.0f}, mongod {spent.get('mongod', 0):,.0f}, "
                            f"RabbitMQ {spent.get('RabbitMQ', 0):,.0f}")
            if woken:
                results.add(f"  wakeups per payment at {rate}/s", wakeups_carried(woken), "", f"wakeups_{rate}pps",
                            wakeups_detail(woken))
    broker = await broker_alone.measure(rig.amqp, RATES[0], max(20, int(RATES[0] * seconds)))
    results.add(f"  broker alone p50 at {RATES[0]}/s", percentile(broker.latencies_ms, 50), "ms",
                f"broker_p50_{RATES[0]}pps_ms", "publish to delivery through a quorum queue, no database")
