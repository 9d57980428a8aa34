"""2. Sustained throughput: a burst of payments to a durable LOADED outcome, and the CPU each
process spends per payment."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from paypost.bench.load import PRACTICE, payment
from paypost.bench.outcomes import settled, wait_count
from paypost.bench.probes import (
    CpuMeter,
    DocumentsWritten,
    child_pid,
    find_pid,
    no_gc_pauses,
    wakeups_carried,
    wakeups_detail,
)
from paypost.bench.rig import Rig


@dataclass
class Throughput:
    payments_per_second: float
    meter: CpuMeter  # paypost, its sealer, mongod, RabbitMQ and the bench: the later phases meter them too


async def measure(rig: Rig, n: int, baseline: float) -> Throughput:
    rig.log(f"pipeline: {n:,} payments to a durable LOADED outcome")
    bodies = [(f"p-{i}", payment(f"p-{i}", f"acct-{i % 500}", f"EHR-{i % 20}")) for i in range(n)]
    assert rig.paypost.proc is not None
    mongo_port = rig.mongo.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[-1]
    meter = CpuMeter({"paypost": rig.paypost.proc.pid,
                      "paypost sealer": child_pid(rig.paypost.proc.pid, "spawn_main"),
                      "mongod": find_pid("mongod", f"--port {mongo_port}"),
                      "RabbitMQ": find_pid("beam.smp", "rabbit"),
                      "bench publisher": os.getpid()})
    writes = DocumentsWritten(rig.c.db.client)
    await writes.start()
    with no_gc_pauses():
        meter.start()
        started = time.perf_counter()
        await rig.publisher.many(bodies)
        finished = await wait_count(rig.c, {"practice_id": PRACTICE, "load_status": "LOADED"}, n,
                                    tail=[pid for pid, _ in bodies[-20:]])
    spent = meter.per_payment_us(n)
    woken = meter.wakeups_per_payment(n)
    await settled(rig.c)  # the audit sealer's share of the writes, and the sweeps' after the burst
    written = await writes.since()
    pipeline_pps = n / (finished - started)
    results = rig.results
    results.add("pipeline: publish to LOADED", pipeline_pps, "payments/s", "pipeline_pps",
                f"{n:,} payments, built-in ledger")
    results.add("ratio pipeline / baseline", pipeline_pps / baseline, "", "ratio", "target >= 0.75")
    results.add("  documents written per payment", written / n, "", "writes_per_payment",
                f"{written:,} inserted, updated or deleted, every collection, the seal's share included; "
                "target <= 1.2")
    for name, us in spent.items():
        results.add(f"  CPU per payment: {name}", us, "us", f"cpu_us_{name.lower().replace(' ', '_')}")
    if spent:
        total = sum(spent.values())
        cores = os.cpu_count() or 1
        results.add("  CPU per payment, all of them", total, "us", "cpu_us_total",
                    f"{cores} cores carry at most {cores * 1e6 / total:,.0f} payments/s at this cost")
    if woken:
        results.add("  wakeups per payment", wakeups_carried(woken), "", "wakeups_burst", wakeups_detail(woken))
    return Throughput(pipeline_pps, meter)
