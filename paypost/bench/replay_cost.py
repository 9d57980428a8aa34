"""The bench's replay phase alone: failures of one patient account, then the mapping that heals them.

    python -m paypost.bench.replay_cost --failures 5000

What a change to the retry's path costs, in a minute rather than a whole ``paypost bench``: on clean
services and a database of its own, the same phase the full run measures (the failures published
and FAILED, then one mapping fix replays them while new payments arrive at 50 a second), with the
same figures: the documents written per replay, its time, paypost's CPU per replay, and the new
payments' p95 meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from paypost.bench.load import services
from paypost.bench.phases import replay
from paypost.bench.probes import CpuMeter
from paypost.bench.rendering import Results
from paypost.bench.rig import started_rig


async def measure(failures: int) -> Results:
    def log(text: str) -> None:
        print(text, file=sys.stderr)  # progress, beside the figures on stdout

    results = Results()
    async with services(log) as (amqp, mongo), \
            started_rig(amqp, mongo, results, log, time.time() - time.perf_counter()) as rig:
        assert rig.paypost.proc is not None
        await replay.measure(rig, CpuMeter({"paypost": rig.paypost.proc.pid}), failures)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--failures", type=int, default=5000)
    args = parser.parse_args()
    results = asyncio.run(measure(args.failures))
    width = max(len(name) for name, _, _ in results.rows)
    for name, value, note in results.rows:
        print(f"  {name:<{width}}  {value:>14}  {note}")


if __name__ == "__main__":
    main()
