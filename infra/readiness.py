"""Readiness: whether the database and the broker answer (``GET /readyz``)."""

from __future__ import annotations

from faststream.rabbit import RabbitBroker
from pymongo import AsyncMongoClient

from paypost.infra.mongo.database import Doc


class ServiceReadiness:
    def __init__(self, mongo: AsyncMongoClient[Doc], broker: RabbitBroker) -> None:
        self._mongo = mongo
        self._broker = broker

    async def problems(self) -> dict[str, str | None]:
        found: dict[str, str | None] = {}
        try:
            await self._mongo.admin.command("ping")
            found["database"] = None
        except Exception as exc:  # noqa: BLE001 - readiness reports any failure as "not ready", naming it
            found["database"] = type(exc).__name__
        try:
            found["broker"] = None if await self._broker.ping(timeout=2.0) else "NoAnswer"
        except Exception as exc:  # noqa: BLE001 - as for the database: any failure, named
            found["broker"] = type(exc).__name__
        return found
