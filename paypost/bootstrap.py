"""The composition root: builds paypost from settings. Nothing connects at import time.

Every adapter (``infra/``) is made here and handed to the handlers (``handlers/``) that need it;
what follows each domain event is subscribed to the message bus here, in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Literal

import structlog
from fastapi import FastAPI
from faststream.rabbit import RabbitBroker
from pymongo import AsyncMongoClient

from paypost.api.http import create_app, health
from paypost.background import run_sweeps
from paypost.consumers.subscribers import intake_consumers, register
from paypost.domain.access import Principal, Role, Scope, token_hash
from paypost.domain.events import PostingCleared, PostingFailed, PostingHeld, PostingLoaded, PostingRetried
from paypost.handlers import metrics
from paypost.handlers.alert_delivery import AlertDelivery
from paypost.handlers.announcing import Announcer
from paypost.handlers.application import Application
from paypost.handlers.canary import Canaries
from paypost.handlers.changes import SaveChanges
from paypost.handlers.commands import CommandService
from paypost.handlers.dead_letters import DeadLetterService
from paypost.handlers.healing import Healing
from paypost.handlers.keys import ApiKeys, FailedKeys
from paypost.handlers.maintenance import Maintenance
from paypost.handlers.mappings import MappingService
from paypost.handlers.messagebus import MessageBus
from paypost.handlers.operations import Pacer, PostingOperations
from paypost.handlers.outages import OutageBoard, Outages, OutageWorker
from paypost.handlers.posting import PostingService
from paypost.handlers.practices import Practices
from paypost.handlers.reactions import PostingReactions
from paypost.handlers.reports import Reports
from paypost.handlers.reversal_alerts import ReversalAlerts
from paypost.handlers.reversals import Reversals
from paypost.handlers.triage import Triage
from paypost.infra.ledgers.adapters import AdapterLedgers
from paypost.infra.ledgers.builtin import BuiltinLedger, Ledgers
from paypost.infra.ledgers.hosts import HostPolicy
from paypost.infra.ledgers.http import HttpLedgers, LedgerEvidence
from paypost.infra.ledgers.secrets import SecretBox
from paypost.infra.mongo.alerts import MongoAlertOutbox, MongoAlertStore
from paypost.infra.mongo.api_keys import MongoApiKeyStore
from paypost.infra.mongo.audit_seals import AuditSealer
from paypost.infra.mongo.database import Collections, Doc, connect, ensure_indexes
from paypost.infra.mongo.directory import MongoMappingStore, MongoPracticeDirectory, MongoSealedSecrets
from paypost.infra.mongo.failed_keys import MongoFailedKeyCounts
from paypost.infra.mongo.failure_groups import MongoFailureGroups
from paypost.infra.mongo.leases import DutyLeases
from paypost.infra.mongo.notes import MongoPostingNotes
from paypost.infra.mongo.operations import MongoOperationStore
from paypost.infra.mongo.outages import MongoOutageStore
from paypost.infra.mongo.postings import MongoPostingCommands, MongoPostingStore
from paypost.infra.mongo.reports import PostingReport
from paypost.infra.mongo.reversal_alerts import MongoReversalAlerts
from paypost.infra.mongo.reversals import MongoPaymentBalances
from paypost.infra.mongo.transfers import MongoTransferStore
from paypost.infra.rabbit.asyncapi import asyncapi_text
from paypost.infra.rabbit.broker import PUBLISHERS, Amqp, QueueInspector, declare_topology, make_broker
from paypost.infra.rabbit.event_hub import EventHub
from paypost.infra.rabbit.topology import BINDINGS, UNBOUND
from paypost.infra.readiness import ServiceReadiness
from paypost.infra.runtime.retry import log_failure, make_retrying
from paypost.infra.runtime.sealer_process import SealerProcess
from paypost.infra.runtime.settings import Settings
from paypost.producers.events import OutcomePublisher
from paypost.schemas.topics import DEAD_LETTER_QUEUE, INTAKE_QUEUE

log = structlog.get_logger("paypost")


@asynccontextmanager
async def maintenance(settings: Settings) -> AsyncIterator[Maintenance]:
    """The maintenance handler on its own connection to the database (nothing else of paypost starts)."""
    client = connect(settings.mongodb_uri)
    try:
        collections = Collections(client[settings.mongodb_db])
        keys = settings.secret_key.strip()
        yield Maintenance(AuditSealer(collections), MongoSealedSecrets(collections, keys) if keys else None)
    finally:
        await client.close()

# What a process does (contract section 9): everything, the HTTP API only, or the consumers only.
ProcessRole = Literal["all", "api", "worker"]


class Paypost:
    """Every adapter and handler of one paypost process, wired once."""

    def __init__(self, settings: Settings, *, retry_seconds: float = 60.0) -> None:
        self.settings = settings
        # Adapters.
        self.mongo: AsyncMongoClient[Doc] = connect(settings.mongodb_uri)
        self.collections = Collections(self.mongo[settings.mongodb_db])
        self.postings = MongoPostingStore(self.collections)
        self.posting_commands = MongoPostingCommands(self.collections)
        self.directory = MongoPracticeDirectory(self.collections)
        self.mapping_store = MongoMappingStore(self.collections)
        self.transfers = MongoTransferStore(self.collections)
        self.alerts = MongoAlertStore(self.collections)
        self.outage_store = MongoOutageStore(self.collections)
        self.operation_store = MongoOperationStore(self.collections)
        self.api_keys = MongoApiKeyStore(self.collections)
        self.failed_key_counts = MongoFailedKeyCounts(self.collections)  # shared by every API process
        self.failure_groups = MongoFailureGroups(self.collections)
        self.builtin_ledger = BuiltinLedger(self.collections, self.directory)
        self.hosts = HostPolicy.from_setting(settings.ledger_allowed_hosts)
        self.secrets = SecretBox(settings.secret_key) if settings.secret_key.strip() else None
        self.http_ledgers = HttpLedgers(settings.ledger_attempts, settings.ledger_timeout, hosts=self.hosts,
                                        secrets=self.secrets)
        self.ledger_adapters = AdapterLedgers.discovered(self.secrets)  # entry points of group paypost.ledgers
        self.ledgers = Ledgers(self.builtin_ledger, self.http_ledgers, self.ledger_adapters)
        self.broker: RabbitBroker = make_broker(settings.amqp_url, settings.prefetch)
        self.amqp = Amqp(settings.amqp_url)
        self.publish = PUBLISHERS[settings.publish_path](self.amqp)
        self.queues = QueueInspector(settings.amqp_url)
        self.event_hub = EventHub(settings.amqp_url)
        self.outcomes = OutcomePublisher(self.publish)
        self.sealer = AuditSealer(self.collections)
        self.sealer_process = (
            SealerProcess(settings.mongodb_uri, settings.mongodb_db, log_level=settings.log_level,
                          log_format=settings.log_format)
            if settings.audit_sealer == "process" else None
        )
        # Handlers.
        self.bus = MessageBus()
        self.outages = Outages(
            self.outage_store, self.postings, self.alerts, OutageBoard(self.outage_store), self.bus, self.outcomes,
            hold_after=settings.ledger_hold_after, probe_every=settings.ledger_probe_every)
        self.posting_service = PostingService(
            self.postings, self.directory, self.mapping_store, self.ledgers, Announcer(self.bus, self.postings),
            settings.max_message_bytes, self.outages,
            Reversals(self.postings, MongoPaymentBalances(self.collections)),  # issue 26: money that moves back
        )
        self.outage_worker = OutageWorker(self.outages, self.postings, self.posting_service,
                                          DutyLeases(self.collections.leases))
        self.dead_letter_service = DeadLetterService(self.postings, self.posting_service, settings.max_message_bytes)
        self.operations = PostingOperations(self.posting_commands, self.publish, self.bus, Pacer(settings.replay_rate),
                                            LedgerEvidence(self.directory, self.http_ledgers))
        self.retrying = make_retrying(max_seconds=retry_seconds)
        self.healing = Healing(self.operations, self.mapping_store, self.retrying, self.posting_commands)
        self.reactions = PostingReactions(self.alerts, self.transfers, self.outcomes, self.operations,
                                          settings.alert_escalate_after, mapping_sweep=self.healing.sweep)
        self.alert_delivery = AlertDelivery(MongoAlertOutbox(self.collections), self.directory, self.ledgers,
                                            self.mapping_store)
        # (1.2) a reversal's alerts (contract section 10)
        self.reversal_alerts = ReversalAlerts(MongoReversalAlerts(self.collections), self.outcomes,
                                              self.alert_delivery.wake)
        self.mapping_service = MappingService(self.mapping_store, self.healing, alerts=self.alert_delivery)
        self.command_service = CommandService(self.operations, self.operation_store)
        self.canaries = Canaries(self.operation_store, self.posting_commands, self.publish)
        self._subscribe()
        self.application = Application(
            practices=Practices(self.directory, self.builtin_ledger, self.hosts, self.secrets, self.outages,
                                self.ledger_adapters),
            mappings=self.mapping_service,
            save_changes=SaveChanges(self.publish, self.operation_store, self.posting_commands),
            reports=Reports(PostingReport(self.collections), self.posting_commands, self.operation_store,
                            self.transfers, self.alerts),
            feed=self.event_hub,
            readiness=ServiceReadiness(self.mongo, self.broker),
            refresh_metrics=self.refresh_queue_metrics,
            keys=ApiKeys(self.api_keys, {  # PAYPOST_API_TOKENS, held as hashes
                token_hash(t.token): Principal(name=t.name, role=Role(t.role), scope=Scope.of(t.practices))
                for t in settings.tokens.values()}, FailedKeys(self.failed_key_counts)),
            triage=Triage(self.failure_groups, MongoPostingNotes(self.collections), self.alerts,
                          resolver=self.reversal_alerts),
        )
        # Entrypoints on the broker.
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
        self._outage_watch: asyncio.Task[None] | None = None
        self._alert_sending: asyncio.Task[None] | None = None

    def _subscribe(self) -> None:
        """What follows each domain event, in order: the event for dashboards first, then alerts,
        then self-healing. Every handler is safe to run again for the same event."""
        outcomes, reactions = self.outcomes, self.reactions

        async def failed(event: PostingFailed) -> None:
            await outcomes.failed(event.posting)

        async def loaded(event: PostingLoaded) -> None:
            await outcomes.loaded(event.posting)

        async def retried(event: PostingRetried) -> None:
            await outcomes.retried(event.posting, event.audit)

        async def cleared(event: PostingCleared) -> None:
            await outcomes.cleared(event.posting, event.audit)

        async def held(event: PostingHeld) -> None:
            await outcomes.held(event.posting)

        self.bus.subscribe(PostingFailed, failed, reactions.failed, self.healing.failed, self._alerts_changed)
        self.bus.subscribe(PostingLoaded, loaded, reactions.loaded, self._alerts_changed, self.reversal_alerts.loaded)
        self.bus.subscribe(PostingRetried, retried)
        self.bus.subscribe(PostingCleared, cleared, reactions.cleared, self._alerts_changed)
        self.bus.subscribe(PostingHeld, held)

    async def _alerts_changed(self, event: PostingFailed | PostingLoaded | PostingCleared) -> None:
        """Its alerts opened or resolved just before (``reactions``): their delivery goes now."""
        if not isinstance(event, PostingLoaded) or event.had_failed:
            self.alert_delivery.wake()

    def http_app(self, *, manage_lifecycle: bool = True, role: ProcessRole = "all",
                 after_start: Callable[[], Awaitable[None]] | None = None) -> FastAPI:
        """What this process serves over HTTP, by its role (contract section 9).

        ``all``: the API and console, and the lifespan runs the consumers and background duties
        too; ``api``: the API and console only; ``worker``: the consumers and background duties,
        serving only ``/healthz``, ``/readyz`` and ``/metrics`` (for probes and scraping). With
        ``manage_lifecycle`` false (tests) the app starts and stops nothing.
        """
        async def on_start() -> None:
            if manage_lifecycle:
                await self.start(consume=role != "api")
            if after_start is not None:
                await after_start()

        on_stop = self.stop if manage_lifecycle else None
        if role == "worker":
            return self._health_app(on_start, on_stop)
        return create_app(self.application, asyncapi_text, on_start=on_start, on_stop=on_stop)

    def _health_app(self, on_start: Callable[[], Awaitable[None]],
                    on_stop: Callable[[], Awaitable[None]] | None) -> FastAPI:
        """A worker's HTTP side: health, readiness and metrics, no API route and no console."""

        @asynccontextmanager
        async def lifespan(_: FastAPI) -> AsyncIterator[None]:
            await on_start()
            try:
                yield
            finally:
                if on_stop is not None:
                    await on_stop()

        app = FastAPI(title="paypost worker", lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)
        app.state.application = self.application
        app.state.asyncapi = asyncapi_text
        app.include_router(health)
        return app

    async def _seal_periodically(self, every: float = 2.0) -> None:
        """Seal here (inline), or watch the sealer's process and start it again if it died."""
        if self.sealer_process is not None:
            self.sealer_process.start()
        lease = self.sealer.lease()
        while not self._stop_background.is_set():
            try:
                if self.sealer_process is not None:
                    self.sealer_process.restart_if_dead()
                else:
                    await self.sealer.seal_leading(lease)
            except Exception as exc:  # noqa: BLE001 (logged, with its traceback unless an outage)
                log_failure(log, "audit_seal_failed", exc)
            with contextlib.suppress(TimeoutError):  # the pause ended without a stop
                await asyncio.wait_for(self._stop_background.wait(), timeout=every)
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
        await self.api_keys.ensure_indexes()
        await self.failed_key_counts.ensure_indexes()
        await self.failure_groups.ensure_indexes()
        await self.posting_commands.ensure_indexes()
        await self.broker.connect()
        await declare_topology(self.broker)
        if consume:
            await self.broker.start()
            connection = await self.amqp.open()
            for consumer in self.intake:
                await consumer.start(connection)
            self.consuming = True
            self._stop_background.clear()
            self._escalations = asyncio.create_task(run_sweeps(
                self.reactions, self._stop_background, escalate_after=self.settings.alert_escalate_after,
                canaries=self.canaries.advance))
            self._sealing = asyncio.create_task(self._seal_periodically())
            self._outage_watch = asyncio.create_task(self.outage_worker.run(
                self._stop_background, on_error=lambda exc: log_failure(log, "outage_round_failed", exc)))
            self._alert_sending = asyncio.create_task(self.alert_delivery.run(
                self._stop_background, on_error=lambda exc: log_failure(log, "alert_delivery_failed", exc)))
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
        self.healing.cancel()
        for background in (self._escalations, self._sealing, self._outage_watch, self._alert_sending):
            if background is not None:
                background.cancel()
        self._escalations = self._sealing = self._outage_watch = self._alert_sending = None
        if self.sealer_process is not None:
            await self.sealer_process.kill()
        closing = [self.event_hub.close(), *(close() for close in self._connections())]
        done, pending = await asyncio.wait([asyncio.ensure_future(c) for c in closing], timeout=5)
        for closer in pending:
            closer.cancel()
        for closer in done:
            if not closer.cancelled() and (error := closer.exception()) is not None:
                log.warning("close_failed", error=repr(error)[:200])

    async def _stop_in_order(self) -> None:
        # Payments first, so the last sweep and seal below cover the last batch they load.
        for consumer in self.intake:
            await consumer.stop()
        self._stop_background.set()
        await self.event_hub.close()
        await self.healing.wait(grace=30)
        for task in (self._escalations, self._sealing, self._outage_watch, self._alert_sending):
            if task is not None:
                await task
        self._escalations = self._sealing = self._outage_watch = self._alert_sending = None
        for close in self._connections():
            await close()

    def _connections(self) -> list[Callable[[], Awaitable[object]]]:
        """What closes paypost's connections, in the order a normal stop closes them."""
        return [self.broker.stop, self.publish.close, self.amqp.close, self.http_ledgers.close,
                self.ledger_adapters.close, self.queues.close, self.mongo.close]
