"""The runtime's order of start and stop, its duties in one task group, and a stop past its bound
(the parts as the composition root wires them run on the real services in every integration test;
a stop whose broker does not answer is tests/faults/test_faults.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from paypost.runtime import Parts, Runtime


class Intake:
    def __init__(self, said: list[str], stop_takes: float = 0.0) -> None:
        self.said = said
        self.stop_takes = stop_takes

    async def start(self) -> None:
        self.said.append("intake started")

    async def stop(self) -> None:
        await asyncio.sleep(self.stop_takes)
        self.said.append("intake stopped")

    def abort(self) -> None:
        self.said.append("intake aborted")


def step(said: list[str], name: str) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        said.append(name)
    return run


def parts(said: list[str], duties: dict[str, Callable[[asyncio.Event], Awaitable[None]]],
          intake: Intake | None = None) -> Parts:
    return Parts(prepare=[step(said, "indexes"), step(said, "topology")], intake=intake or Intake(said),
                 duties=duties, drain=[step(said, "drained")], halt=[step(said, "halted")],
                 close=[step(said, "broker closed"), step(said, "database closed")])


def duty(said: list[str], name: str) -> Callable[[asyncio.Event], Awaitable[None]]:
    async def run(stop: asyncio.Event) -> None:
        said.append(f"{name} running")
        await stop.wait()
        said.append(f"{name} finished")
    return run


async def test_it_starts_and_stops_in_order_and_runs_each_duty_until_the_stop() -> None:
    said: list[str] = []
    runtime = Runtime(parts(said, {"sweeps": duty(said, "sweeps"), "sealing": duty(said, "sealing")}),
                      stop_timeout=5)
    await runtime.start()
    await asyncio.sleep(0.05)
    assert runtime.consuming
    assert said == ["indexes", "topology", "intake started", "sweeps running", "sealing running"]
    await runtime.stop()
    assert not runtime.consuming
    assert said[5:] == ["intake stopped", "drained", "sweeps finished", "sealing finished",
                        "broker closed", "database closed"]


async def test_a_process_that_does_not_consume_runs_no_duty() -> None:
    said: list[str] = []
    runtime = Runtime(parts(said, {"sweeps": duty(said, "sweeps")}), stop_timeout=5)
    await runtime.start(consume=False)
    await asyncio.sleep(0.05)
    assert said == ["indexes", "topology"] and not runtime.consuming
    await runtime.stop()
    assert "sweeps running" not in said and said[-2:] == ["broker closed", "database closed"]


async def test_a_duty_that_ends_with_an_error_leaves_the_others_running() -> None:
    said: list[str] = []

    async def broken(stop: asyncio.Event) -> None:
        raise RuntimeError("a bug in one duty")

    runtime = Runtime(parts(said, {"broken": broken, "sweeps": duty(said, "sweeps")}), stop_timeout=5)
    await runtime.start()
    await asyncio.sleep(0.05)
    await runtime.stop()
    assert "sweeps running" in said and "sweeps finished" in said


async def test_a_stop_past_its_bound_halts_and_closes_at_once() -> None:
    said: list[str] = []
    cancelled: list[str] = []

    async def stuck(stop: asyncio.Event) -> None:
        try:
            await asyncio.Event().wait()  # never ends by itself
        except asyncio.CancelledError:
            cancelled.append("stuck")
            raise

    runtime = Runtime(parts(said, {"stuck": stuck}, Intake(said, stop_takes=10)), stop_timeout=0.2)
    await runtime.start()
    started = asyncio.get_running_loop().time()
    await runtime.stop()
    assert asyncio.get_running_loop().time() - started < 2
    assert cancelled == ["stuck"] and not runtime.consuming
    assert said[3:] == ["intake aborted", "halted", "broker closed", "database closed"]
