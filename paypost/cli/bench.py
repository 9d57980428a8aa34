"""`paypost bench`: the measures of BENCHMARKS.md, taken on the machine it runs on."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated

import typer

from paypost.cli.common import err


def bench(
    quick: Annotated[bool, typer.Option("--quick", help="small sizes: finishes in under two minutes")] = False,
    scaling: Annotated[bool, typer.Option(
        "--scaling",
        help="instead: the broker's round trip, then throughput through 1, 2 and 4 worker processes")] = False,
    burst: Annotated[int | None, typer.Option(
        "--burst", min=1_000, max=1_000_000, metavar="PAYMENTS",
        help="instead: only the ratio's phases (the broker alone, the pipeline, the floor), this many "
             "payments each; to compare two versions in turn")] = None,
) -> None:
    """Measure throughput, latency, replay, the report at scale and memory, against raw RabbitMQ."""
    from paypost.bench import render, run, summary
    from paypost.bench.runner import run_burst, run_scaling

    started = time.perf_counter()

    def say(line: str) -> None:
        err.print(f"[dim]{line}[/dim]")

    if burst is not None:
        results = asyncio.run(run_burst(burst, say))
    else:
        results = asyncio.run((run_scaling if scaling else run)(quick, say))
    print(render(results, quick, time.perf_counter() - started))
    print(json.dumps(results.figures if scaling or burst is not None else summary(results)))
    if results.stopped_by:
        err.print(f"[red]The bench stopped before its last phase: {results.stopped_by}. "
                  "The figures above are those measured before it.[/red]")
        raise typer.Exit(1)
