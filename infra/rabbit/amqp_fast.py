"""Many publishes in one socket write, on aiormq's private channel state (aiormq 7.2.4 only).

aiormq's public ``Channel.basic_publish`` takes the channel lock, opens a timeout scope, queues one
write and makes one socket write per message. ``write_batch`` does what it does for a whole
batch under one hold of the lock and queues one write for all of it. To do so it fills the
channel's own state exactly as ``basic_publish`` does in the pinned version: the delivery-tag
counter, the confirmation table, the message-id table by which a Basic.Return finds its publish,
and the connection's write queue. None of these is public: ``tests/unit/test_amqp_fast.py`` fails
on any other aiormq version, and only ``infra/rabbit/broker.py`` (and that test) imports this module.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import uuid
from collections.abc import Sequence

import aiormq
from aiormq.abc import ChannelFrame
from pamqp.body import ContentBody
from pamqp.commands import Basic
from pamqp.frame import marshal
from pamqp.header import ContentHeader

# The version whose ``basic_publish`` this module copies (aiormq/channel.py, ``basic_publish``).
AIORMQ_VERSION = "7.2.4"
# The pamqp whose frame marshalling the batches are built with (the one aiormq 7.2.4 was tested on).
PAMQP_VERSION = "4.0.1"
# What of aiormq's channel it reads or writes, beside the public ``number`` and ``create_future``.
PRIVATE_STATE = ("lock", "delivery_tag", "confirmations", "message_id_delivery_tag", "write_queue")

# (exchange, routing key, body, properties) of one publish.
Publish = tuple[str, str, bytes, aiormq.spec.Basic.Properties]
# A batched body goes in one body frame (the broker's frame_max is 128 KiB at least); a larger
# one, which would need splitting into several frames, takes ``basic_publish``.
MAX_BODY = 64 * 1024


def mismatch() -> str | None:
    """Why this path must not run beside the installed libraries (another aiormq or pamqp than the
    ones it copies), or None when they are those."""
    for package, copied in (("aiormq", AIORMQ_VERSION), ("pamqp", PAMQP_VERSION)):
        installed = importlib.metadata.version(package)  # neither has a __version__
        if installed != copied:
            return f"{package} {installed} is installed; the framed path copies {package} {copied}'s internals"
    return None


async def write_batch(channel: aiormq.Channel, items: Sequence[Publish], mandatory: bool
                      ) -> list[asyncio.Future[object] | Exception]:
    """Queue every publish of ``items`` in one write; for each, its confirmation or why it was not sent.

    A confirmation resolves to the broker's Basic.Ack, to the returned message (a ``mandatory``
    publish nothing routed; the channel must be opened with ``on_return_raises=False``), or to the
    error that closed the channel first. A publish pamqp cannot encode (a header value of no AMQP
    type, a routing key over 255 bytes) is not sent and gets its error: the others still go.
    Raises, having sent nothing, if the channel is closed.
    """
    encoded: list[bytes | Exception] = []
    for exchange, routing_key, body, properties in items:
        if mandatory and not properties.message_id:
            properties.message_id = uuid.uuid4().hex  # as basic_publish does: a return names it
        try:
            encoded.append(_frames(channel.number, exchange, routing_key, body, properties, mandatory))
        except (TypeError, ValueError) as exc:
            encoded.append(exc)
    payload = b"".join(frames for frames in encoded if isinstance(frames, bytes))
    outcomes: list[asyncio.Future[object] | Exception] = []
    async with channel.lock:
        if payload:
            await channel.write_queue.put(ChannelFrame(payload=payload, drain_future=None, should_close=False))
        # Nothing yields from here on, so the writer cannot send these frames, nor the broker confirm
        # them, before their delivery tags are in the tables; and a cancelled put left no tag taken.
        for (_, _, _, properties), frames in zip(items, encoded, strict=True):
            if isinstance(frames, Exception):
                outcomes.append(frames)
                continue
            channel.delivery_tag += 1
            confirmation = channel.create_future()
            channel.confirmations[channel.delivery_tag] = confirmation
            if mandatory:
                _track_returns(channel, channel.delivery_tag, properties.message_id, confirmation)
            outcomes.append(confirmation)
    return outcomes


def _frames(number: int, exchange: str, routing_key: str, body: bytes, properties: aiormq.spec.Basic.Properties,
            mandatory: bool) -> bytes:
    if len(routing_key) > 255:  # as basic_publish checks, with its error (pamqp would raise a TypeError)
        raise ValueError("Routing key too long (max 255 bytes)")
    frames = (marshal(Basic.Publish(exchange=exchange, routing_key=routing_key, mandatory=mandatory), number)
              + marshal(ContentHeader(body_size=len(body), properties=properties), number))
    if body:  # as basic_publish does: an empty body has no body frame
        frames += marshal(ContentBody(body), number)
    return frames


def _track_returns(channel: aiormq.Channel, delivery_tag: int, message_id: str | None,
                   confirmation: asyncio.Future[object]) -> None:
    """What ``basic_publish`` does for a publish: a Basic.Return is matched to it by message id."""
    if not message_id:
        return
    channel.message_id_delivery_tag[message_id] = delivery_tag

    def forget(_: asyncio.Future[object]) -> None:
        if channel.message_id_delivery_tag.get(message_id) == delivery_tag:
            channel.message_id_delivery_tag.pop(message_id)

    confirmation.add_done_callback(forget)
