"""Operator commands on ``paypost.commands``: what Save Changes publishes (contract 1.2)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from paypost.domain.ports.events import Publish
from paypost.schemas.messages import ClearItem, PostingClear, PostingRetry
from paypost.schemas.topics import COMMANDS_EXCHANGE, POSTING_CLEAR, POSTING_RETRY

# Ids per command message: 50,000 retries become 100 small messages, well under the size limit.
IDS_PER_COMMAND = 500


async def publish_commands(publish: Publish, operation_id: str, practice_id: str, retry: Sequence[str],
                           clear: Sequence[ClearItem], operator: str, now: datetime,
                           command_prefix: str | None = None) -> None:
    """Publish the retry and clear commands of one operation, ``IDS_PER_COMMAND`` items each.

    With ``command_prefix`` the command ids are derived from it (publishing the same commands again
    then applies them once); otherwise each is new.
    """
    def command_id(kind: str, start: int) -> str:
        return f"{command_prefix}:{kind}:{start}" if command_prefix else str(uuid.uuid4())

    for start in range(0, len(retry), IDS_PER_COMMAND):
        command = PostingRetry(command_id=command_id("retry", start), operation_id=operation_id,
                               practice_id=practice_id,
                               payment_ids=list(retry[start:start + IDS_PER_COMMAND]), operator=operator,
                               requested_at=now)
        await publish(COMMANDS_EXCHANGE, POSTING_RETRY, command.model_dump_json().encode(),
                      message_id=command.command_id)
    for start in range(0, len(clear), IDS_PER_COMMAND):
        clear_command = PostingClear(command_id=command_id("clear", start), operation_id=operation_id,
                                     practice_id=practice_id, items=list(clear[start:start + IDS_PER_COMMAND]),
                                     operator=operator, requested_at=now)
        await publish(COMMANDS_EXCHANGE, POSTING_CLEAR, clear_command.model_dump_json().encode(),
                      message_id=clear_command.command_id)
