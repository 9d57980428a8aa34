"""The composition root: builds paypost from settings. Nothing connects at import time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog
from faststream.rabbit import RabbitBroker
from pymongo import AsyncMongoClient

from consumers import metrics
from consumers.commands import CommandService
from consumers.dead_letters import DeadLetterService
from consumers.mappings import MappingService
from consumers.operations import Pacer, PostingOperations
from consumers.posting import PostingService
from consumers.reactions import PostingReactions
from consumers.subscribers import intake_consumers, register
from domain.posting import PAYPOST_ACTOR
from infra.alerts import MongoAlertStore
from infra.audit_seals import AuditSealer
from infra.broker import Amqp, Publisher, QueueInspector, declare_topology, make_broker
from infra.directory import MongoMappingStore, MongoPracticeDirectory
from infra.event_hub import EventHub
from infra.ledger_builtin import BuiltinLedger, Ledgers
from infra.ledger_http import HttpLedgers
from infra.mongo import Collections, Doc, connect, ensure_indexes
from infra.operations import MongoOperationStore
from infra.postings import MongoPostingCommands, MongoPostingStore
from infra.retry import log_failure, make_retrying
from infra.sealer_process import SealerProcess
from infra.settings import Settings
from infra.topology import BINDINGS, UNBOUND
from infra.transfers import MongoTransferStore
from producers.commands import save_changes
from producers.events import OutcomePublisher
from schemas.messages import ClearItem
from schemas.topics import DEAD_LETTER_QUEUE, INTAKE_QUEUE

log = structlog.get_logger("paypost")


class Paypost:
    """Every adapter and service of one paypost process, wired once."""

    def __init__(self, settings: Settings, *, retry_seconds: float = 60.0) -> None:
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
        self.amqp = Amqp(settings.amqp_url)
        self.publish = Publisher(self.amqp)
        self.queues = QueueInspector(settings.amqp_url)
        self.event_hub = EventHub(settings.amqp_url)
        self.outcomes = OutcomePublisher(self.publish)
        self.posting_service = PostingService(
            self.postings, self.directory, self.mapping_store, self.ledgers, self.outcomes,
            settings.max_message_bytes,
        )
        self.dead_letter_service = DeadLetterService(self.postings, self.posting_service)
        self.posting_commands = MongoPostingCommands(self.collections)
        self.operation_store = MongoOperationStore(self.collections)
        self.operations = PostingOperations(self.posting_commands, self.publish, self.outcomes,
                                            Pacer(settings.replay_rate))
        self.alerts = MongoAlertStore(self.collections)
        self.sealer = AuditSealer(self.collections)
        self.sealer_process = (
            SealerProcess(settings.mongodb_uri, settings.mongodb_db, log_level=settings.log_level,
                          log_format=settings.log_format)
            if settings.audit_sealer == "process" else None
        )
        self.reactions = PostingReactions(self.alerts, self.transfers, self.outcomes,
                                          settings.alert_escalate_after)
        self.reactions.healer = self.operations
        self.posting_service.reactions = self.reactions
        self.operations.reactions = self.reactions
        self.command_service = CommandService(self.operations, self.operation_store)
        self.mapping_service = MappingService(self.mapping_store, on_changed=self._after_mapping)
        self.posting_service.remapped = lambda practice_id, account: self._after_mapping(
            practice_id, account, "", PAYPOST_ACTOR)
        self.retrying = make_retrying(max_seconds=retry_seconds)
        register(
            self.broker, self.posting_service, self.dead_letter_service, self.mapping_service,
            self.reactions.transfer_settled, self.command_service, self.retrying, settings.max_message_bytes,
        )
        self.intake = intake_consumers(self.posting_service, self.retrying, prefetch=settings.prefetch,
                                       lanes=settings.intake_lanes, replay_window=settings.replay_window)
        self.consuming = False
        self._stop_background = asyncio.Event()
        self._escalations: asyncio.Task[None] | None = None
        self._sealing: asyncio.Task[None] | None = None
        self._heals: set[asyncio.Task[int]] = set()

    async def _after_mapping(self, practice_id: str, patient_account_id: str, ehr_patient_id: str,
                             actor: str) -> int:
        """Self-healing: the office fixes the cause once; every payment it blocked loads by itself.

        Returns how many failures are being sent back; the replay itself runs in the background
        (10,000 of them must not hold the office's request open). A replay cut short by a crash
        is finished by the stale-retry sweep.
        """
        blocked = await self.operations.blocked_by_mapping(practice_id, patient_account_id)
        if blocked:
            task = asyncio.create_task(self.operations.heal_account(practice_id, patient_account_id, caused_by=actor))
            self._heals.add(task)
            task.add_done_callback(self._heal_done)
        return blocked

    def _heal_done(self, task: asyncio.Task[int]) -> None:
        self._heals.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # What was claimed is replayed by the stale-retry sweep; say why it stopped.
            log.error("self_heal_failed", error=repr(task.exception())[:300])

    async def save_changes(self, practice_id: str, retry: list[str], clear: list[ClearItem], operator: str) -> str:
        """Save Changes: one operation for the whole selection (the API and the CLI call this)."""
        return await save_changes(self.publish, self.operation_store, practice_id, retry, clear, operator)

    async def _seal_periodically(self, every: float = 2.0) -> None:
        """Seal here (inline), or watch the sealer's process and start it again if it died."""
        if self.sealer_process is not None:
            self.sealer_process.start()
        while not self._stop_background.is_set():
            try:
                if self.sealer_process is not None:
                    self.sealer_process.restart_if_dead()
                else:
                    await self.sealer.seal_all()
            except Exception as exc:  # noqa: BLE001 (logged, with its traceback unless an outage)
                log_failure(log, "audit_seal_failed", exc)
            try:
                await asyncio.wait_for(self._stop_background.wait(), timeout=every)
            except TimeoutError:
                pass
        if self.sealer_process is not None:
            await self.sealer_process.stop()  # it seals what is left first
        else:
            await self.sealer.seal_all()

    async def refresh_queue_metrics(self) -> dict[str, tuple[int, int]]:
        """Queue depths and consumers into the Prometheus gauges (called on each scrape)."""
        names = [q.name for q, _, _ in BINDINGS] + [q.name for q in UNBOUND]
        depths = await self.queues.depths(names)
        for name, (messages, consumers) in depths.items():
            metrics.QUEUE_MESSAGES.labels(name).set(messages)
            metrics.QUEUE_CONSUMERS.labels(name).set(consumers)
        metrics.DEAD_LETTER_DEPTH.set(depths.get(DEAD_LETTER_QUEUE, (0, 0))[0])
        metrics.CONSUMER_LAG.set(depths.get(INTAKE_QUEUE, (0, 0))[0])
        return depths

    async def start(self, consume: bool = True) -> None:
        """Create indexes, declare the topology, then start consuming."""
        await ensure_indexes(self.collections)
        await self.operation_store.ensure_indexes()
        await self.alerts.ensure_indexes()
        await self.transfers.ensure_indexes()
        await self.sealer.ensure_indexes()
        await self.broker.connect()
        await declare_topology(self.broker)
        if consume:
            await self.broker.start()
            connection = await self.amqp.open()
            for consumer in self.intake:
                await consumer.start(connection)
            self.consuming = True
            self._stop_background.clear()
            self._escalations = asyncio.create_task(self.reactions.run_background(self._stop_background))
            self._sealing = asyncio.create_task(self._seal_periodically())
        log.info("paypost_started", consuming=consume, database=self.settings.mongodb_db)

    async def stop(self) -> None:
        """Stop consuming (in-flight messages finish or return to their queue), then disconnect.

        Within ``stop_timeout``: a broker or database that does not answer must not keep an
        operator's stop (or a deploy) waiting. Past it, paypost stops at once; nothing is lost,
        as a delivery it had not settled is delivered again, and its posting's row is found.
        """
        try:
            async with asyncio.timeout(self.settings.stop_timeout):
                await self._stop_in_order()
        except TimeoutError:
            log.error("stop_timed_out", after_s=self.settings.stop_timeout,
                      detail="the broker or the database did not answer: unsettled messages go back to "
                             "their queue and are handled at the next start")
            await self._stop_now()
        self.consuming = False
        log.info("paypost_stopped")

    async def _stop_now(self) -> None:
        for consumer in self.intake:
            consumer.abort()
        for task in (self._escalations, self._sealing, *self._heals):
            if task is not None:
                task.cancel()
        self._escalations = self._sealing = None
        if self.sealer_process is not None:
            await self.sealer_process.kill()
        closing = [self.event_hub.close(), *(close() for close in self._connections())]
        done, pending = await asyncio.wait([asyncio.ensure_future(c) for c in closing], timeout=5)
        for task in pending:
            task.cancel()
        for task in done:
            if task.exception() is not None:
                log.warning("close_failed", error=repr(task.exception())[:200])

    async def _stop_in_order(self) -> None:
        # Payments first, so the last sweep and seal below cover the last batch they load.
        for consumer in self.intake:
            await consumer.stop()
        self._stop_background.set()
        await self.event_hub.close()
        if self._heals:
            await asyncio.wait(self._heals, timeout=30)
        for task in (self._escalations, self._sealing):
            if task is not None:
                await task
        self._escalations = self._sealing = None
        for close in self._connections():
            await close()

    def _connections(self) -> list[Callable[[], Awaitable[object]]]:
        """What closes paypost's connections, in the order a normal stop closes them."""
        return [self.broker.stop, self.publish.close, self.amqp.close, self.http_ledgers.close, self.queues.close,
                self.mongo.close]
