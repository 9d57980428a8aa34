"""An upstream system: any AMQP client following the contract (plain aio-pika here)."""

from __future__ import annotations

from typing import Any

import aio_pika
import orjson

from tests.support.payloads import payment_body, refund_body


class Upstream:
    """Publishes into paypost's exchanges as a system upstream of it would."""

    def __init__(self, channel: aio_pika.abc.AbstractChannel) -> None:
        self.channel = channel

    async def raw(self, routing_key: str, body: bytes, *, message_id: str | None = None,
                  headers: dict[str, Any] | None = None, exchange: str = "paypost.payments") -> None:
        ex = await self.channel.get_exchange(exchange, ensure=False)
        await ex.publish(
            aio_pika.Message(body, message_id=message_id, headers=headers, content_type="application/json",
                             delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=routing_key,
        )

    async def send(self, routing_key: str, body: dict[str, Any], **kwargs: Any) -> None:
        kwargs.setdefault("message_id", body.get("event_id") or body.get("command_id"))
        await self.raw(routing_key, orjson.dumps(body), **kwargs)

    async def payment(self, **fields: Any) -> dict[str, Any]:
        body = payment_body(**fields)
        await self.send("payment.posted", body)
        return body

    async def refund(self, **fields: Any) -> dict[str, Any]:
        body = refund_body(**fields)
        await self.send("payment.refunded", body)
        return body


async def queue_depth(amqp_url: str, queue: str) -> tuple[int, int]:
    """(messages ready, consumers) of a queue, by a passive declare on a connection of its own."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.message_count or 0, declared.declaration_result.consumer_count or 0
    finally:
        await connection.close()
