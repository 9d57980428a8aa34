"""What paypost and its audit sealer spend a second with nothing arriving, against an earlier checkout.

    python -m paypost.bench.idle_cost --against /path/to/an/earlier/checkout --rounds 3 --seconds 60

Each round starts a ``paypost run`` of that checkout (imported from there through ``PYTHONPATH``)
and then one of this one, each on a database of its own with the bench's practice set up, waits
until what follows the set-up is done (the seals, the sweeps, a sealer's rest), and reads both
processes' CPU time (each thread's time on a core, to the nanosecond, from ``/proc``) and their
wakeups (voluntary context switches) over ``--seconds``. The two figures of a round saw the same
machine a minute apart.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import Any

from paypost.bench.load import services
from paypost.bench.outcomes import settled
from paypost.bench.phases.idle import QUIET
from paypost.bench.probes import CpuMeter, child_pid
from paypost.bench.rendering import Results
from paypost.bench.rig import started_rig
from paypost.bench.tracing_cost import _variable


async def _idle(code: str | None, seconds: float, log: Any) -> dict[str, float]:
    results = Results()
    with _variable("PYTHONPATH", code if code is not None else os.environ.get("PYTHONPATH")):
        async with services(log) as (amqp, mongo), \
                started_rig(amqp, mongo, results, log, time.time() - time.perf_counter()) as rig:
            assert rig.paypost.proc is not None
            pid = rig.paypost.proc.pid
            await settled(rig.c)
            await asyncio.sleep(QUIET)
            meter = CpuMeter({"paypost": pid, "paypost sealer": child_pid(pid, "spawn_main")}, exact=True)
            meter.start()
            await asyncio.sleep(seconds)
            spent, woken = meter.per_payment_us(1), meter.wakeups_per_payment(1)
    return {**{f"{name} ms/s": us / seconds / 1000 for name, us in spent.items()},
            **{f"{name} wakeups/s": n / seconds for name, n in woken.items()}}


async def measure(rounds: int, seconds: float, against: str | None) -> list[tuple[dict[str, float], dict[str, float]]]:
    def log(text: str) -> None:
        print(text, file=sys.stderr)  # progress, beside the table on stdout

    figures = []
    for n in range(rounds):
        log(f"round {n + 1}: {'the earlier checkout, then ' if against else ''}this one, {seconds:.0f} s idle each")
        before = await _idle(against, seconds, log) if against else {}
        after = await _idle(None, seconds, log)
        figures.append((before, after))
    return figures


def _total(row: dict[str, float], unit: str) -> float:
    return sum(v for k, v in row.items() if k.endswith(unit))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--against", help="an earlier checkout, measured before this one in each round")
    args = parser.parse_args()
    figures = asyncio.run(measure(args.rounds, args.seconds, args.against))
    print("round   before ms/s (wakeups/s)   now ms/s (wakeups/s)   paypost and its sealer, nothing arriving")
    for n, (before, after) in enumerate(figures, 1):
        shown = (f"{_total(before, 'ms/s'):>10.2f} ({_total(before, 'wakeups/s'):>5.1f})" if before
                 else f"{'':>10} {'':>7}")
        print(f"{n:>5}   {shown}          {_total(after, 'ms/s'):>6.2f} ({_total(after, 'wakeups/s'):>5.1f})"
              f"   now: {', '.join(f'{k} {v:.2f}' for k, v in after.items())}")


if __name__ == "__main__":
    main()
