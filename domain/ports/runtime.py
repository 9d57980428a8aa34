"""What the runtime of a process runs: the consumers of the broker's queues."""

from __future__ import annotations

from typing import Protocol


class Intake(Protocol):
    """What consumes the broker's queues: started after the services are prepared, stopped first."""

    async def start(self) -> None: ...

    async def stop(self) -> None:
        """Stop taking deliveries; those in flight finish or go back to their queue."""

    def abort(self) -> None:
        """Stop at once (what is not settled is delivered again)."""
