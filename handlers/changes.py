"""Save Changes: one operation for the whole selection, applied by commands on the broker."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from domain.errors import PaypostError
from domain.ports import OperationStore
from handlers.clock import Clock, utc_now
from producers.commands import publish_commands
from producers.events import Publish
from schemas.messages import ClearItem


class EmptySelection(PaypostError, ValueError):
    """A Save Changes that selects nothing."""


class MissingReason(PaypostError, ValueError):
    """A clear without a non-empty reason: the whole Save Changes is refused."""


class SaveChanges:
    """What the console's button, the API and the CLI call (they publish nothing themselves)."""

    def __init__(self, publish: Publish, operations: OperationStore, clock: Clock = utc_now) -> None:
        self._publish = publish
        self._operations = operations
        self._clock = clock

    async def __call__(self, practice_id: str, retry: Sequence[str], clear: Sequence[ClearItem],
                       operator: str) -> str:
        """Record one operation for the whole selection and publish its commands; returns its id.

        Nothing is recorded or published when a clear lacks a reason.
        """
        retry = list(dict.fromkeys(retry))
        missing = [c.payment_id for c in clear if not c.reason.strip()]
        if missing:
            raise MissingReason(f"clear needs a non-empty reason (missing for {', '.join(missing[:5])})")
        if not retry and not clear:
            raise EmptySelection("select at least one payment to retry or clear")
        operation_id = str(uuid.uuid4())
        now = self._clock()
        items = [{"payment_id": p, "action": "retry"} for p in retry] + \
                [{"payment_id": c.payment_id, "action": "clear"} for c in clear]
        await self._operations.create(operation_id, practice_id, operator, items, now)
        try:
            await publish_commands(self._publish, operation_id, practice_id, retry, clear, operator, now)
        except Exception:
            # An operation whose commands did not all go out must not look pending for ever.
            await self._operations.discard(operation_id)
            raise
        return operation_id
