"""An ASGI app served over real HTTP on a free port of 127.0.0.1, on the test's event loop: what the
browser, a live feed's stream and the practice-management systems the tests stand up need."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

from paypost.local.servers import free_port


@contextlib.asynccontextmanager
async def serve_asgi(app: Any, log_level: str = "warning") -> AsyncIterator[str]:
    """``app`` served until the block ends; yields its base URL. A server that cannot start says why."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level=log_level, lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
