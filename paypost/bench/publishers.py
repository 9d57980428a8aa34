"""The publisher's two paths side by side, in one run: aiormq's public ``basic_publish`` for every
message (``paypost.infra.rabbit.broker.BasicPublisher``, "basic") and the batch written in one socket write on
aiormq's private channel state (``paypost.infra.rabbit.broker.FramedPublisher``, "framed").

    .venv/bin/python -m paypost.bench.publishers [--messages 20000] [--rounds 4]

Each run publishes ``--messages`` bodies of ``--size`` bytes through a fresh publisher, ``--window``
at a time gathered together (as a batch of payments' events or a chunk of replays goes), either as
broadcasts to a topic exchange nothing is bound to (an unheard event) or ``mandatory`` to a quorum
queue. It prints publishes per second and the CPU time (``time.process_time``) this Python
process spent per publish. The paths alternate within each round and their order flips from one
round to the next (A B, B A, A B, ...), so that the load of a noisy machine falls on both alike; the
figures to compare are the medians over the rounds. A measurement, not a test: nothing fails.

It makes a vhost of its own on the local broker and deletes it at the end, unless
``PAYPOST_AMQP_URL`` names a broker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import aio_pika

from paypost.infra.rabbit.broker import PUBLISHERS, Amqp
from paypost.local.servers import port_open, temporary_vhost

EVENTS = "bench.events"  # a topic exchange with nothing bound to it
REPLAYS = "bench.replays"  # a quorum queue, as paypost's own queues are


@dataclass(frozen=True)
class Run:
    round: int
    kind: str  # "broadcast" or "mandatory"
    path: str
    publishes_per_s: float
    cpu_us_per_publish: float


def body_of(size: int) -> bytes:
    head = b'{"event_type":"posting.loaded","practice_id":"bench","pad":"'
    return head + b"x" * max(0, size - len(head) - 2) + b'"}'


async def declare(url: str) -> None:
    connection = await aio_pika.connect(url)
    channel = await connection.channel()
    await channel.declare_exchange(EVENTS, aio_pika.ExchangeType.TOPIC, durable=True)
    await channel.declare_queue(REPLAYS, durable=True, arguments={"x-queue-type": "quorum"})
    await connection.close()


async def purge(url: str) -> None:
    """Empty the quorum queue between runs, so that no run publishes onto a longer queue."""
    connection = await aio_pika.connect(url)
    channel = await connection.channel()
    queue = await channel.get_queue(REPLAYS)
    await queue.purge()
    await connection.close()


async def one_run(url: str, path: str, broadcast: bool, args: argparse.Namespace, number: int) -> Run:
    amqp = Amqp(url)
    publish = PUBLISHERS[path](amqp)
    exchange, routing_key = (EVENTS, "posting.loaded.bench") if broadcast else ("", REPLAYS)
    body = body_of(args.size)
    ids = [f"{path}-{number}-{i}" for i in range(args.messages)]
    await publish(exchange, routing_key, body, message_id=f"{path}-{number}-warm", broadcast=broadcast)  # opens
    started, cpu = time.perf_counter(), time.process_time()
    for start in range(0, args.messages, args.window):
        await asyncio.gather(*(publish(exchange, routing_key, body, message_id=message_id, broadcast=broadcast)
                               for message_id in ids[start:start + args.window]))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    await publish.close()
    await amqp.close()
    if not broadcast:
        await purge(url)
    return Run(number, "broadcast" if broadcast else "mandatory", path,
               round(args.messages / elapsed), round(cpu / args.messages * 1e6, 1))


def order(number: int) -> list[str]:
    """The paths of one round: their order flips each round, so neither always goes first."""
    names = list(PUBLISHERS)
    return names if number % 2 == 0 else names[::-1]


async def measure(url: str, args: argparse.Namespace) -> list[Run]:
    await declare(url)
    runs: list[Run] = []
    for number in range(args.rounds):
        for broadcast in (True, False):
            for path in order(number):
                run = await one_run(url, path, broadcast, args, number)
                print(f"round {run.round}  {run.kind:<9}  {run.path:<6}  {run.publishes_per_s:>7,.0f} publishes/s"
                      f"  {run.cpu_us_per_publish:>6.1f} µs CPU per publish", flush=True)
                runs.append(run)
    return runs


def summary(runs: list[Run]) -> dict[str, dict[str, float]]:
    """Per kind: the median rate and CPU of each path, and the basic path's rate against the framed one's."""
    found: dict[str, dict[str, float]] = {}
    for kind in ("broadcast", "mandatory"):
        figures: dict[str, float] = {}
        for path in PUBLISHERS:
            mine = [r for r in runs if r.kind == kind and r.path == path]
            figures[f"{path}_publishes_per_s"] = round(statistics.median(r.publishes_per_s for r in mine))
            figures[f"{path}_cpu_us"] = round(statistics.median(r.cpu_us_per_publish for r in mine), 1)
        figures["basic_rate_vs_framed"] = round(figures["basic_publishes_per_s"]
                                                / figures["framed_publishes_per_s"], 3)
        found[kind] = figures
    return found


@contextlib.contextmanager
def broker() -> Iterator[str]:
    url = os.environ.get("PAYPOST_AMQP_URL")
    if url is not None:
        yield url
        return
    if not port_open("127.0.0.1", 5672):
        raise SystemExit("no RabbitMQ on 127.0.0.1:5672: start it, or set PAYPOST_AMQP_URL")
    with temporary_vhost("paypost-publish-bench") as vhost:
        yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m paypost.bench.publishers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000, help="publishes per run")
    parser.add_argument("--size", type=int, default=400, help="bytes per body")
    parser.add_argument("--window", type=int, default=500, help="publishes gathered together")
    parser.add_argument("--rounds", type=int, default=4, help="rounds; each runs every path on each kind")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop",
                        help="the event loop (paypost run serves on uvloop)")
    args = parser.parse_args(argv)
    factory = None
    if args.loop == "uvloop" and sys.platform != "win32":
        import uvloop

        factory = uvloop.new_event_loop
    print(f"aiormq {importlib.metadata.version('aiormq')}, Python {platform.python_version()}, {args.loop}; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores", flush=True)
    with broker() as url, asyncio.Runner(loop_factory=factory) as runner:
        runs = runner.run(measure(url, args))
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    for kind, figures in summary(runs).items():
        print(f"{kind:<9}  median  framed {figures['framed_publishes_per_s']:>7,.0f}/s "
              f"{figures['framed_cpu_us']:>6.1f} µs   basic {figures['basic_publishes_per_s']:>7,.0f}/s "
              f"{figures['basic_cpu_us']:>6.1f} µs   basic/framed rate {figures['basic_rate_vs_framed']:.3f}")
    print(json.dumps({"args": vars(args), "runs": [asdict(r) for r in runs], "summary": summary(runs)}))


if __name__ == "__main__":
    main()
