"""6. Memory: paypost's peak after the phases above, then a fresh paypost started with a backlog
waiting, twice (a fifth of it, then all of it): its peak should stay flat as the backlog grows."""

from __future__ import annotations

from paypost.bench.load import PRACTICE, PaypostProcess, payment
from paypost.bench.outcomes import wait_count
from paypost.bench.rig import Rig


async def measure(rig: Rig, backlog: int) -> None:
    results = rig.results
    results.add("peak RSS of paypost after all the above", rig.paypost.peak_rss_mb(), "MB")
    rig.paypost.stop()
    small = backlog // 5
    peaks = []
    for waiting in (small, backlog):
        rig.log(f"memory: {waiting:,} payments waiting before paypost starts")
        await rig.publisher.many([(f"m{waiting}-{i}", payment(f"m{waiting}-{i}", f"acct-{i % 500}", "EHR-2"))
                                  for i in range(waiting)])
        worker = PaypostProcess(rig.amqp, rig.mongo, rig.db)
        await worker.start(probe="/healthz")  # its readiness may lag while the backlog floods it
        await wait_count(rig.c, {"_id": {"$regex": f"^{PRACTICE}/m{waiting}-"}, "load_status": "LOADED"}, waiting)
        peaks.append(worker.peak_rss_mb())
        worker.stop()
    results.add(f"peak RSS, {small:,} waiting", peaks[0], "MB")
    results.add(f"peak RSS, {backlog:,} waiting", peaks[1], "MB", "peak_rss_mb",
                "target <= 300 MB, flat as the backlog grows")
