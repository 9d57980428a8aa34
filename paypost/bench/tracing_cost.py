"""What tracing costs (contract section 13; BENCHMARKS.md "What tracing costs"): paypost's CPU per
payment at a burst and at 10/s, with tracing off (no ``OTEL_EXPORTER_OTLP_ENDPOINT``) and on (every
span exported over OTLP/HTTP to a receiver in this process, which only answers), measured back to
back, off and on in turn, a fresh paypost for each: the machine is shared, so the ratio of two
neighbouring runs says more than either figure.

    python -m paypost.bench.tracing_cost [--rounds 3] [--burst 2000] [--light-seconds 20]
    python -m paypost.bench.tracing_cost --against /path/to/an/earlier/checkout ...

``--against``: instead of on against off, off against paypost as that checkout has it (its
``paypost run`` imported from there through ``PYTHONPATH``): what tracing's hooks cost when off.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from paypost.bench.load import PRACTICE, payment, services
from paypost.bench.outcomes import settled
from paypost.bench.phases.light import _receive
from paypost.bench.probes import cpu_seconds
from paypost.bench.rendering import Results
from paypost.bench.rig import Rig, started_rig
from paypost.infra.rabbit.watch import watch_events


class _Sink(BaseHTTPRequestHandler):
    """An OTLP/HTTP receiver that reads and drops what it is sent (its CPU is not paypost's)."""

    received = 0

    def do_POST(self) -> None:  # http.server's name
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).received += 1
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # http.server's name
        return


@contextmanager
def otlp_sink() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def _variable(name: str, value: str | None) -> Iterator[None]:
    """``name`` as the paypost started next reads it (``PaypostProcess`` copies the environment)."""
    before = os.environ.pop(name, None)
    if value is not None:
        os.environ[name] = value
    try:
        yield
    finally:
        os.environ.pop(name, None)
        if before is not None:
            os.environ[name] = before


@contextmanager
def tracing_env(endpoint: str | None, code: str | None = None) -> Iterator[None]:
    """Tracing to ``endpoint`` (None: off), in paypost as ``code`` has it (None: as this one)."""
    with _variable("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint), \
            _variable("PYTHONPATH", code if code is not None else os.environ.get("PYTHONPATH")):
        yield


async def _cpu_per_payment(rig: Rig, prefix: str, count: int, rate: float | None) -> float:
    """paypost's CPU (µs) per payment for ``count`` payments, all at once or at ``rate`` a second."""
    pid = rig.paypost.proc.pid if rig.paypost.proc is not None else None
    assert pid is not None
    await settled(rig.c)
    bodies = [(f"{prefix}{i}", payment(f"{prefix}{i}", f"acct-{i % 50}", "EHR-1")) for i in range(count)]
    async with watch_events(rig.amqp, [f"posting.loaded.{PRACTICE}"]) as events:
        loaded: dict[str, float] = {}
        receiving = asyncio.create_task(_receive(events, prefix, count, loaded))
        before = cpu_seconds(pid) or 0.0
        if rate is None:
            await rig.publisher.many(bodies)
        else:
            await rig.publisher.paced(bodies, rate)
        await asyncio.wait_for(receiving, timeout=300)
        await asyncio.sleep(1.0)  # the batch processor's export of the last spans (every 5 s at most)
        after = cpu_seconds(pid) or 0.0
    return (after - before) / count * 1e6


async def measure(rounds: int, burst: int, light_seconds: float, against: str | None = None) -> list[dict[str, float]]:
    """Each round: (off, on), or with ``against``: (that checkout, off), as ``*_off`` and ``*_on``."""
    results = Results()
    figures: list[dict[str, float]] = []
    light = max(20, int(10 * light_seconds))

    def log(text: str) -> None:
        print(text, file=sys.stderr)  # progress, beside the table on stdout

    async with services(log) as (amqp, mongo):
        with otlp_sink() as sink:
            for n in range(rounds):
                row: dict[str, float] = {}
                modes = (("off", None, against), ("on", None, None)) if against else (("off", None, None),
                                                                                      ("on", sink, None))
                for mode, endpoint, code in modes:
                    with tracing_env(endpoint, code):
                        async with started_rig(amqp, mongo, results, log, time.time() - time.perf_counter()) as rig:
                            log(f"round {n + 1}, tracing {mode}: a burst of {burst}, then {light} at 10/s")
                            row[f"burst_{mode}"] = await _cpu_per_payment(rig, f"b{n}{mode}-", burst, None)
                            row[f"10pps_{mode}"] = await _cpu_per_payment(rig, f"l{n}{mode}-", light, 10)
                row["burst_ratio"] = row["burst_on"] / row["burst_off"]
                row["10pps_ratio"] = row["10pps_on"] / row["10pps_off"]
                figures.append(row)
                log(" ".join(f"{k}={v:.2f}" for k, v in row.items()))
            log(f"OTLP requests received: {_Sink.received}")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--burst", type=int, default=2000)
    parser.add_argument("--light-seconds", type=float, default=20.0)
    parser.add_argument("--against", help="an earlier checkout: compare tracing off with it instead of on with off")
    args = parser.parse_args()
    figures = asyncio.run(measure(args.rounds, args.burst, args.light_seconds, args.against))
    off, on = ("before", "off") if args.against else ("off", "on")
    print(f"round  burst {off:>4}  burst {on:>3}  ratio   10/s {off:>4}  10/s {on:>3}  ratio"
          "   (paypost's CPU, µs per payment)")
    for n, row in enumerate(figures, 1):
        print(f"{n:>5}  {row['burst_off']:>9.0f}  {row['burst_on']:>8.0f}  {row['burst_ratio']:>5.2f}"
              f"   {row['10pps_off']:>8.0f}  {row['10pps_on']:>7.0f}  {row['10pps_ratio']:>5.2f}")


if __name__ == "__main__":
    main()
