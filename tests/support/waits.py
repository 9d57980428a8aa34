"""Waiting for something to happen, by polling or by listening, never by a fixed sleep."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def wait_for(check: Callable[[], Awaitable[Any]], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy; fail with what it last returned."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")


async def drain(events: asyncio.Queue[T], settle: float = 0.7) -> list[T]:
    """Everything received until nothing more arrives for ``settle`` seconds."""
    got = []
    while True:
        try:
            got.append(await asyncio.wait_for(events.get(), timeout=settle))
        except TimeoutError:
            return got
