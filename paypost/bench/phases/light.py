"""3b. Light load, as a practice's real traffic is: 10 and 50 payments a second, each mostly alone.
Publish to its ``posting.loaded`` event (p50, p99: what a dashboard sees, the outcome durable by
then) and the CPU each payment costs, beside the broker alone at 10/s: every fixed cost per
payment is paid in full here, where a burst shares it.

Beside them, the database's own round trip, alone after 100 ms with nothing to do (as each payment
at 10/s finds it) and back to back: what each of the light path's two round trips in series (the
mapping's read, the outcome's write) costs on this machine before paypost does anything."""

from __future__ import annotations

import asyncio
import time

from paypost.bench.load import PRACTICE, payment
from paypost.bench.outcomes import settled
from paypost.bench.phases import broker_alone
from paypost.bench.probes import CpuMeter, no_gc_pauses, wakeups_carried, wakeups_detail
from paypost.bench.rendering import percentile
from paypost.bench.rig import Rig
from paypost.infra.mongo.database import Collections
from paypost.infra.rabbit.watch import WatchedEvent, watch_events

RATES = (10, 50)
ROUND_TRIPS = 20  # of each kind: spaced by the light load's gap, then back to back


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
    await measure_round_trips(rig)


async def _round_trips(c: Collections, gap: float) -> tuple[float, float]:
    """Median ms of a ``find_one`` by ``_id`` and of an ``insert_one`` (paypost's write concern, the
    journal waited for), each after ``gap`` seconds with nothing sent; in a collection of their own."""
    probes = c.db.get_collection("bench_round_trips")
    await probes.insert_one({"_id": "probe"})
    finds: list[float] = []
    inserts: list[float] = []
    try:
        for _ in range(ROUND_TRIPS):
            await asyncio.sleep(gap)
            started = time.perf_counter()
            await probes.find_one({"_id": "probe"})
            finds.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(gap)
            started = time.perf_counter()
            await probes.insert_one({})
            inserts.append((time.perf_counter() - started) * 1000)
    finally:
        await probes.drop()
    return percentile(finds, 50), percentile(inserts, 50)


async def measure_round_trips(rig: Rig) -> None:
    """The database's round trips alone (``_round_trips``): at the light load's spacing and back to back."""
    idle_find, idle_insert = await _round_trips(rig.c, 1 / RATES[0])
    busy_find, busy_insert = await _round_trips(rig.c, 0)
    rig.results.add("  database round trip after 100 ms idle: read", idle_find, "ms", "db_read_idle_ms",
                    f"find_one by _id; back to back {busy_find:.2f} ms")
    rig.results.add("  database round trip after 100 ms idle: write", idle_insert, "ms", "db_write_idle_ms",
                    f"insert_one, journal waited for; back to back {busy_insert:.2f} ms")
