"""The composition root: builds paypost from settings. Nothing connects at import time."""

from __future__ import annotations

import structlog
from faststream.rabbit import RabbitBroker
from pymongo import AsyncMongoClient

from consumers.dead_letters import DeadLetterService
from consumers.mappings import MappingService
from consumers.posting import PostingService
from consumers.subscribers import register
from infra.broker import Publisher, declare_topology, make_broker
from infra.directory import MongoMappingStore, MongoPracticeDirectory
from infra.ledger_builtin import BuiltinLedger, Ledgers
from infra.ledger_http import HttpLedgers
from infra.mongo import Collections, Doc, connect, ensure_indexes
from infra.postings import MongoPostingStore
from infra.retry import make_retrying
from infra.settings import Settings
from infra.transfers import MongoTransferStore
from producers.events import OutcomePublisher

log = structlog.get_logger("paypost")


class Paypost:
    """Every adapter and service of one paypost process, wired once."""

    def __init__(self, settings: Settings, *, intake_consumers: int = 2, retry_seconds: float = 60.0) -> None:
        self.settings = settings
        self.mongo: AsyncMongoClient[Doc] = connect(settings.mongodb_uri)
        self.collections = Collections(self.mongo[settings.mongodb_db])
        self.postings = MongoPostingStore(self.collections)
        self.directory = MongoPracticeDirectory(self.collections)
        self.mapping_store = MongoMappingStore(self.collections)
        self.transfers = MongoTransferStore(self.collections)
        self.builtin_ledger = BuiltinLedger(self.collections, self.directory)
        self.http_ledgers = HttpLedgers(settings.ledger_attempts, settings.ledger_timeout)
        self.ledgers = Ledgers(self.builtin_ledger, self.http_ledgers)
        self.broker: RabbitBroker = make_broker(settings.amqp_url, settings.prefetch)
        self.publish = Publisher(self.broker)
        self.outcomes = OutcomePublisher(self.publish)
        self.posting_service = PostingService(
            self.postings, self.directory, self.mapping_store, self.ledgers, self.outcomes,
            settings.max_message_bytes,
        )
        self.dead_letter_service = DeadLetterService(self.postings, self.posting_service)
        self.mapping_service = MappingService(self.mapping_store)
        self.retrying = make_retrying(max_seconds=retry_seconds)
        register(
            self.broker, self.posting_service, self.dead_letter_service, self.mapping_service,
            self.transfers.settled, self.retrying, settings.max_message_bytes,
            intake_consumers=intake_consumers,
        )
        self.consuming = False

    async def start(self, consume: bool = True) -> None:
        """Create indexes, declare the topology, then start consuming."""
        await ensure_indexes(self.collections)
        await self.broker.connect()
        await declare_topology(self.broker)
        if consume:
            await self.broker.start()
            self.consuming = True
        log.info("paypost_started", consuming=consume, database=self.settings.mongodb_db)

    async def stop(self) -> None:
        """Stop consuming (in-flight messages finish or return to their queue), then disconnect."""
        await self.broker.stop()
        self.consuming = False
        await self.http_ledgers.close()
        await self.mongo.close()
        log.info("paypost_stopped")
