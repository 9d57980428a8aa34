"""Applying ``posting.retry`` and ``posting.clear`` commands, at most once per ``command_id``."""

from __future__ import annotations

from collections.abc import Callable

import structlog

from paypost.domain.ports.operations import OperationStore
from paypost.domain.rules import ItemResult
from paypost.handlers.clock import Clock, utc_now
from paypost.handlers.operations import ClearRequest, PostingOperations
from paypost.schemas.messages import PostingClear, PostingRetry

log = structlog.get_logger("paypost.commands")


class CommandService:
    """Each item is a conditional write keyed by the command, so a redelivered command, even one
    that crashed half-way, changes nothing more than its first delivery did."""

    def __init__(self, operations: PostingOperations, results: OperationStore, clock: Clock = utc_now,
                 on_operation: Callable[[], None] | None = None) -> None:
        """``on_operation``: told when a command of an operation was applied (a canary's verdict may
        be due: the canaries are woken in the process that consumed it, whichever made it)."""
        self._operations = operations
        self._results = results
        self._clock = clock
        self._on_operation = on_operation

    async def apply(self, command: PostingRetry | PostingClear) -> list[ItemResult]:
        if isinstance(command, PostingRetry):
            operation_id = command.operation_id

            async def stopped() -> bool:  # a cancel through any API process, read in MongoDB
                return operation_id is not None and await self._results.cancelled(operation_id)

            results = await self._operations.retry(
                command.practice_id, command.payment_ids, actor=command.operator, command_id=command.command_id,
                stopped=stopped if operation_id else None)
        else:
            results = await self._operations.clear(
                command.practice_id,
                [ClearRequest(i.payment_id, i.reason, i.manual_reference) for i in command.items],
                actor=command.operator, command_id=command.command_id)
        if command.operation_id:
            await self._results.record(command.operation_id, results, self._clock())
            if self._on_operation is not None:
                self._on_operation()
        log.info("command_applied", command_id=command.command_id, operation_id=command.operation_id,
                 practice_id=command.practice_id, items=len(results),
                 changed=sum(r.result in ("retried", "cleared") for r in results))
        return results
