"""uvicorn's server, woken by what it must do rather than ten times a second.

uvicorn's main loop wakes every 0.1 s to see whether it was asked to exit and, once a second, to
refresh its ``Date`` header. A paypost with nothing arriving then woke ten times a second for
nothing, on every process of a platform, around the clock. This server ticks once a second (the
``Date`` header as often as uvicorn refreshes it) and is woken at once by the signal that asks it to
exit, so a stop takes no longer than before.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from types import FrameType

import uvicorn

STARTUP_FAILURE = 3  # as uvicorn exits when the server did not start


class QuietServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._exit_asked: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def main_loop(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._exit_asked = asyncio.Event()
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 10) % 864_000  # on_tick refreshes the Date header each tenth count: each second
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._exit_asked.wait(), timeout=1.0)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self._loop is not None and self._exit_asked is not None:
            self._loop.call_soon_threadsafe(self._exit_asked.set)


def serve(config: uvicorn.Config) -> None:
    """``uvicorn.run`` for one process, on ``QuietServer``."""
    config.load_app()
    server = QuietServer(config)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)
