"""3b. Light load, as a practice's real traffic is: 10 and 50 payments a second, each mostly alone.
Publish to durable LOADED (p50, p99) and the CPU each payment costs, beside the broker alone at 10/s:
every fixed cost per payment is paid in full here, where a burst shares it."""

from __future__ import annotations

import asyncio
import time

from paypost.bench.load import PRACTICE, payment
from paypost.bench.outcomes import spans, wait_count
from paypost.bench.phases import broker_alone
from paypost.bench.probes import CpuMeter, no_gc_pauses
from paypost.bench.rendering import percentile
from paypost.bench.rig import Rig

RATES = (10, 50)


async def settled(rig: Rig, at_most: float = 60.0) -> None:
    """Wait until the work the phases before left is done (the audit sealer has caught up), so that
    this phase's CPU is its own payments', not the tail of a burst."""
    deadline = time.monotonic() + at_most
    while time.monotonic() < deadline:
        if not await rig.c.postings.count_documents({"audit_dirty": True}, limit=1):
            break
        await asyncio.sleep(0.5)  # the sealer's next round
    await asyncio.sleep(2.0)  # a last sealing round, the sweeps after it


async def measure(rig: Rig, meter: CpuMeter, seconds: float) -> None:
    results = rig.results
    await settled(rig)
    for rate in RATES:
        count = max(20, int(rate * seconds))
        rig.log(f"light load: {count:,} payments at {rate}/s")
        prefix = f"w{rate}-"
        meter.start()
        with no_gc_pauses():
            sent = await rig.publisher.paced([(f"{prefix}{i}", payment(f"{prefix}{i}", f"acct-{i % 50}", "EHR-1"))
                                              for i in range(count)], rate)
            await wait_count(rig.c, {"_id": {"$regex": f"^{PRACTICE}/{prefix}"}, "load_status": "LOADED"}, count)
        spent = meter.per_payment_us(count)
        waits = await spans(rig.c, sent, rig.wall_offset)
        waited = [(done - published) * 1000 for published, done in waits.values()]
        results.add(f"light load p50 at {rate}/s", percentile(waited, 50), "ms", f"p50_{rate}pps_ms",
                    "publish to LOADED" + ("; target <= 8 ms and <= 2 x the broker alone" if rate == 10 else ""))
        results.add(f"  p99 at {rate}/s", percentile(waited, 99), "ms", f"p99_{rate}pps_ms")
        if spent:
            results.add(f"  CPU per payment at {rate}/s, all", sum(spent.values()), "us", f"cpu_us_{rate}pps",
                        f"paypost {spent.get('paypost', 0):,.0f}, mongod {spent.get('mongod', 0):,.0f}, "
                        f"RabbitMQ {spent.get('RabbitMQ', 0):,.0f}")
    broker = await broker_alone.measure(rig.amqp, RATES[0], max(20, int(RATES[0] * seconds)))
    results.add(f"  broker alone p50 at {RATES[0]}/s", percentile(broker.latencies_ms, 50), "ms",
                f"broker_p50_{RATES[0]}pps_ms", "publish to delivery through a quorum queue, no database")
