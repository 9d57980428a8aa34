"""The demo's practice-management system: the reference one (``paypost/local/reference_ledger.py``), served by
``paypost run --demo`` beside paypost, asking for OAuth2 client credentials, so a newcomer sees
entries, office tasks and patient flags arrive "in the practice's system" (``GET /_alerts``), and the
console's patient search finds its made-up patients (``DEMO_SYSTEM_DISPLAYS``)."""

from __future__ import annotations

import asyncio
import os
import secrets
from dataclasses import dataclass

import uvicorn

from paypost.local.reference_ledger import Credentials, LedgerState, create_reference_ledger
from paypost.local.servers import free_port
from paypost.producers.demo import DEMO_SYSTEM_DISPLAYS

DEMO_CLIENT_ID = "paypost-demo"


@dataclass
class DemoSystem:
    url: str
    client_secret: str
    server: uvicorn.Server
    task: asyncio.Task[None] | None = None

    def ledger(self, sealed: bool) -> dict[str, object]:
        """The demo practice's integration: OAuth2 when paypost can seal the secret, else none."""
        auth: dict[str, object] = {"kind": "oauth2_client_credentials", "token_url": f"{self.url}/oauth/token",
                                   "client_id": DEMO_CLIENT_ID, "client_secret": self.client_secret}
        ledger: dict[str, object] = {"kind": "http", "base_url": self.url, "max_requests_per_second": 50}
        return {**ledger, "auth": auth} if sealed else ledger

    async def start(self) -> None:
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self.task.done():
                self.task.result()  # it could not start: say why
            await asyncio.sleep(0.02)


def demo_system(sealed: bool) -> DemoSystem:
    """The reference system on 127.0.0.1 (PAYPOST_DEMO_SYSTEM_PORT, else a free port)."""
    port = int(os.environ.get("PAYPOST_DEMO_SYSTEM_PORT") or free_port())
    client_secret = secrets.token_urlsafe(16)
    credentials = Credentials(client_id=DEMO_CLIENT_ID, client_secret=client_secret) if sealed else None
    state = LedgerState(patients=set(DEMO_SYSTEM_DISPLAYS), displays=dict(DEMO_SYSTEM_DISPLAYS),
                        credentials=credentials)
    server = uvicorn.Server(uvicorn.Config(create_reference_ledger(state), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    return DemoSystem(url=f"http://127.0.0.1:{port}", client_secret=client_secret, server=server)
