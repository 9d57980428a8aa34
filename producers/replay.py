"""Replaying a kept message through the posting path again (via its own queue), so it can never post twice."""

from __future__ import annotations

from paypost.domain.ports.events import Publish
from paypost.domain.posting import KeptMessage
from paypost.schemas.topics import REPLAY_QUEUE, REPLAYS_HEADER, ROUTING_KEY_HEADER


async def replay(publish: Publish, message: KeptMessage, replays: int) -> None:
    """Publish ``message`` again, straight to the replay queue, carrying its replay count."""
    headers = {k: v for k, v in message.headers.items() if not k.startswith("x-")}
    headers[ROUTING_KEY_HEADER] = message.routing_key
    headers[REPLAYS_HEADER] = replays
    await publish("", REPLAY_QUEUE, message.body, message_id=message.message_id or "", headers=headers)
