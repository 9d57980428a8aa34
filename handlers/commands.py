"""Applying ``posting.retry`` and ``posting.clear`` commands, at most once per ``command_id``."""

from __future__ import annotations

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

    def __init__(self, operations: PostingOperations, results: OperationStore, clock: Clock = utc_now) -> None:
        self._operations = operations
        self._results = results
        self._clock = clock

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
        log.info("command_applied", command_id=command.command_id, operation_id=command.operation_id,
                 practice_id=command.practice_id, items=len(results),
                 changed=sum(r.result in ("retried", "cleared") for r in results))
        return results
