"""3c. Nothing arriving: what paypost and its audit sealer spend on their own, a second, once the work
before is done. A platform runs paypost around the clock, and most seconds of a practice's day carry
no payment: what wakes without work is paid every one of them."""

from __future__ import annotations

import asyncio

from paypost.bench.outcomes import settled
from paypost.bench.probes import CpuMeter
from paypost.bench.rig import Rig

IDLE = ("paypost", "paypost sealer")


QUIET = 20.0  # seconds, after the phases before have settled: the sealer's backoff to its rest


async def quiet(rig: Rig, meter: CpuMeter, seconds: float) -> tuple[dict[str, float], dict[str, float]]:
    """Once the work before is done and the sealer rests: what paypost and its sealer spend over
    ``seconds`` of nothing arriving, by process, in ms a second and in wakeups a second."""
    await settled(rig.c)  # the sweeps and seals that follow the phases before have finished
    rig.log(f"idle: {QUIET:.0f} s quiet (the sealer's last rounds before it rests), then {seconds:.0f} s measured")
    await asyncio.sleep(QUIET)
    idle = CpuMeter({name: pid for name, pid in meter.pids.items() if name in IDLE}, exact=True)
    idle.start()
    await asyncio.sleep(seconds)
    spent = idle.per_payment_us(1)  # µs over the whole wait
    woken = idle.wakeups_per_payment(1)
    return ({name: us / seconds / 1000 for name, us in spent.items()},
            {name: n / seconds for name, n in woken.items()})


async def measure(rig: Rig, meter: CpuMeter, seconds: float) -> None:
    per_second, woken = await quiet(rig, meter, seconds)
    rig.results.add("idle: CPU a second, paypost and its sealer", sum(per_second.values()), "ms",
                    "idle_cpu_ms_per_s",
                    ", ".join(f"{name} {ms:.1f} ms ({woken.get(name, 0):.0f} wakeups)"
                              for name, ms in per_second.items()) + "; target <= 3 ms")
