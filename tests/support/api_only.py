"""paypost's HTTP API with nothing consuming (``python -m tests.support.api_only``): a Save Changes is
recorded and published, and never applied. The settings come from the environment, as for `paypost run`."""

from __future__ import annotations

import asyncio

import uvicorn

from paypost.bootstrap import Paypost
from paypost.infra.runtime.settings import Settings


async def main() -> None:
    settings = Settings()
    paypost = Paypost(settings)
    await paypost.start(consume=False)
    server = uvicorn.Server(uvicorn.Config(paypost.http_app(manage_lifecycle=False), host=settings.http_host,
                                           port=settings.http_port, log_level="warning"))
    try:
        await server.serve()
    finally:
        await paypost.stop()


if __name__ == "__main__":
    asyncio.run(main())
