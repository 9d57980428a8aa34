"""3. Latency at half the throughput: publish to durable LOADED per payment, beside the broker
alone at the same rate and the disk's syncs, and the p99 of the payments no disk stall held up."""

from __future__ import annotations

import tempfile

from paypost.bench.load import PRACTICE, payment
from paypost.bench.outcomes import spans, wait_count
from paypost.bench.phases import broker_alone
from paypost.bench.probes import (
    DISK_STALL,
    CpuMeter,
    DiskProbe,
    clear_of,
    cores_busy,
    no_gc_pauses,
    wakeups_carried,
    wakeups_detail,
)
from paypost.bench.rendering import percentile
from paypost.bench.rig import Rig


async def measure(rig: Rig, meter: CpuMeter, pipeline_pps: float, seconds: float) -> None:
    rate = pipeline_pps / 2
    count = int(rate * seconds)
    rig.log(f"latency: {count:,} messages at {rate:,.0f}/s through the broker alone, then {count:,} payments")
    broker = await broker_alone.measure(rig.amqp, rate, count)
    meter.start()
    with no_gc_pauses(), DiskProbe(tempfile.gettempdir()) as disk:
        sent = await rig.publisher.paced([(f"l-{i}", payment(f"l-{i}", f"acct-{i % 500}", "EHR-1"))
                                          for i in range(count)], rate)
        await wait_count(rig.c, {"_id": {"$regex": f"^{PRACTICE}/l-"}, "load_status": "LOADED"}, count)
    waits = await spans(rig.c, sent, rig.wall_offset)
    waited_ms = {pid: (done - published) * 1000 for pid, (published, done) in waits.items()}
    lat = list(waited_ms.values())
    results = rig.results
    results.add("latency p50", percentile(lat, 50), "ms", "p50_ms", f"at {rate:,.0f}/s offered")
    results.add("latency p95", percentile(lat, 95), "ms", "p95_ms")
    results.add("latency p99", percentile(lat, 99), "ms", "p99_ms", "target <= 100 ms")
    broker.add_to(results)
    # What the disk did meanwhile: every outcome waits for mongod's journal to reach it.
    syncs = [took * 1000 for _, took in disk.syncs]
    stalls = disk.stalls()
    results.add("  disk: 4 KiB fdatasync p50", percentile(syncs, 50), "ms", "disk_sync_p50_ms",
                f"{len(syncs):,} syncs beside mongod's journal, one per 20 ms ({tempfile.gettempdir()})")
    results.add("  disk: slowest fdatasync", disk.slowest_ms(), "ms", "disk_sync_max_ms",
                f"{len(stalls)} over {DISK_STALL * 1000:.0f} ms, {sum(b - a for a, b in stalls):.2f} s in all")
    clear = clear_of(waits, stalls)
    results.add("  latency p99 of payments clear of those", percentile([waited_ms[pid] for pid in clear], 99), "ms",
                "p99_clear_of_disk_stalls_ms",
                f"{len(waits) - len(clear):,} of {len(waits):,} were waiting while the disk stalled")
    # Fewer payments per batch and per broker frame at this rate: each costs more CPU than
    # in the burst above, and this is how busy the two cores were while latency was measured.
    woken = meter.wakeups_per_payment(count)
    if spent := meter.per_payment_us(count):
        results.add("  CPU per payment at this rate, all", sum(spent.values()), "us", "cpu_us_total_at_rate",
                    cores_busy(spent, rate))
        if burst := results.value("cpu_us_total"):
            results.add("  CPU per payment, half rate / burst", sum(spent.values()) / burst, "",
                        "cpu_ratio_half_to_burst", "printed; no longer a target")
    if woken:  # each process's sleeps and wakes: what a payment costs beyond its own work, grows as batches shrink
        results.add("  wakeups per payment at this rate", wakeups_carried(woken), "", "wakeups_half",
                    wakeups_detail(woken))
