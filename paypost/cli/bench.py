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
) -> None:
    """Measure throughput, latency, replay, the report at scale and memory, against raw RabbitMQ."""
    from paypost.bench import render, run, summary

    started = time.perf_counter()
    results = asyncio.run(run(quick, lambda line: err.print(f"[dim]{line}[/dim]")))
    print(render(results, quick, time.perf_counter() - started))
    print(json.dumps(summary(results)))
