"""Operator commands on ``paypost.commands``: what Save Changes and the CLI publish."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol

from producers.events import Publish
from schemas.messages import ClearItem, PostingClear, PostingRetry
from schemas.topics import COMMANDS_EXCHANGE, POSTING_CLEAR, POSTING_RETRY

# Ids per command message: 50,000 retries become 100 small messages, well under the size limit.
IDS_PER_COMMAND = 500


class OperationRecorder(Protocol):
    async def create(self, operation_id: str, practice_id: str, actor: str, items: list[dict[str, str]],
                     at: datetime) -> None: ...

    async def discard(self, operation_id: str) -> None: ...


class EmptySelection(ValueError):
    """A Save Changes that selects nothing."""


class MissingReason(ValueError):
    """A clear without a non-empty reason: the whole Save Changes is refused."""


async def save_changes(publish: Publish, operations: OperationRecorder, practice_id: str,
                       retry: Sequence[str], clear: Sequence[ClearItem], operator: str) -> str:
    """Record one operation for the whole selection and publish its commands; returns its id.

    Nothing is published when a clear lacks a reason.
    """
    retry = list(dict.fromkeys(retry))
    missing = [c.payment_id for c in clear if not c.reason.strip()]
    if missing:
        raise MissingReason(f"clear needs a non-empty reason (missing for {', '.join(missing[:5])})")
    if not retry and not clear:
        raise EmptySelection("select at least one payment to retry or clear")
    operation_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    items = [{"payment_id": p, "action": "retry"} for p in retry] + \
            [{"payment_id": c.payment_id, "action": "clear"} for c in clear]
    await operations.create(operation_id, practice_id, operator, items, now)
    try:
        await _publish_commands(publish, operation_id, practice_id, retry, clear, operator, now)
    except Exception:
        # An operation whose commands did not all go out must not look pending for ever.
        await operations.discard(operation_id)
        raise
    return operation_id


async def _publish_commands(publish: Publish, operation_id: str, practice_id: str, retry: list[str],
                            clear: Sequence[ClearItem], operator: str, now: datetime) -> None:
    for start in range(0, len(retry), IDS_PER_COMMAND):
        command = PostingRetry(command_id=str(uuid.uuid4()), operation_id=operation_id, practice_id=practice_id,
                               payment_ids=retry[start:start + IDS_PER_COMMAND], operator=operator,
                               requested_at=now)
        await publish(COMMANDS_EXCHANGE, POSTING_RETRY, command.model_dump_json().encode(),
                      message_id=command.command_id)
    for start in range(0, len(clear), IDS_PER_COMMAND):
        clear_command = PostingClear(command_id=str(uuid.uuid4()), operation_id=operation_id,
                                     practice_id=practice_id, items=list(clear[start:start + IDS_PER_COMMAND]),
                                     operator=operator, requested_at=now)
        await publish(COMMANDS_EXCHANGE, POSTING_CLEAR, clear_command.model_dump_json().encode(),
                      message_id=clear_command.command_id)
