"""The composition root: builds paypost from settings. Nothing connects at import time.

Every adapter (``infra/``) is made here and handed to the handlers (``handlers/``) that need it;
what follows each domain event is subscribed to the message bus here, in one place.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI
from faststream.rabbit import RabbitBroker
from pymongo import AsyncMongoClient

from paypost.api.app import create_app, create_worker_app
from paypost.consumers.subscribers import intake_consumers, register
from paypost.domain.access import Principal, Role, Scope, token_hash
from paypost.domain.access_trail import Retention
from paypost.domain.alerts import Alert
from paypost.domain.events import PostingCleared, PostingFailed, PostingHeld, PostingLoaded, PostingRetried
from paypost.domain.patient_ref import use_key as use_patient_ref_key
from paypost.domain.ports.events import Publish
from paypost.domain.ports.ledgers import LedgerFactory
from paypost.domain.posting import Posting
from paypost.handlers import metrics
from paypost.handlers.access_trail import AccessTrail
from paypost.handlers.alert_delivery import AlertDelivery
from paypost.handlers.application import Application
from paypost.handlers.canary import Canaries
from paypost.handlers.changes import SaveChanges
from paypost.handlers.clock import Clock, utc_now
from paypost.handlers.commands import CommandService
from paypost.handlers.dead_letters import DeadLetterService
from paypost.handlers.deposits import Deposits
from paypost.handlers.healing import Healing
from paypost.handlers.keys import ApiKeys, FailedKeys
from paypost.handlers.maintenance import Maintenance
from paypost.handlers.mappings import MappingService
from paypost.handlers.messagebus import MessageBus
from paypost.handlers.month_end import MonthEnd
from paypost.handlers.operations import Pacer, PostingOperations
from paypost.handlers.outages import OutageBoard, Outages, OutageWorker
from paypost.handlers.outcomes import OutcomeRecorder
from paypost.handlers.periods import Periods
from paypost.handlers.posting import PostingService
from paypost.handlers.practices import Practices
from paypost.handlers.reactions import PostingReactions
from paypost.handlers.reports import Reports
from paypost.handlers.retention import RetentionService
from paypost.handlers.reversal_alerts import ReversalAlerts
from paypost.handlers.reversals import Reversals
from paypost.handlers.triage import Triage
from paypost.infra.ledgers.adapters import AdapterLedgers
from paypost.infra.ledgers.builtin import BuiltinLedger, Ledgers
from paypost.infra.ledgers.hosts import HostPolicy
from paypost.infra.ledgers.http import HttpLedgers, LedgerEvidence
from paypost.infra.ledgers.patient_search import SystemPatientSearch
from paypost.infra.ledgers.secrets import SecretBox, derived_key
from paypost.infra.mongo.access_log import MongoAccessLog
from paypost.infra.mongo.alerts import MongoAlertOutbox, MongoAlertStore
from paypost.infra.mongo.api_keys import MongoApiKeyStore
from paypost.infra.mongo.audit_seals import AuditSealer
from paypost.infra.mongo.database import Collections, Doc, connect
from paypost.infra.mongo.deposits import MongoDeposits, MongoPeriods, open_late_task
from paypost.infra.mongo.directory import MongoMappingStore, MongoPracticeDirectory, MongoSealedSecrets
from paypost.infra.mongo.failed_keys import MongoFailedKeyCounts
from paypost.infra.mongo.failure_groups import MongoFailureGroups
from paypost.infra.mongo.feed_tickets import MongoFeedTickets
from paypost.infra.mongo.indexes import apply_indexes
from paypost.infra.mongo.leases import DutyLeases, Lease, holder_name
from paypost.infra.mongo.notes import MongoPostingNotes
from paypost.infra.mongo.operations import MongoOperationStore
from paypost.infra.mongo.outages import MongoOutageStore
from paypost.infra.mongo.posting_commands import MongoPostingCommands
from paypost.infra.mongo.postings import MongoPostingStore
from paypost.infra.mongo.reports import PostingReport
from paypost.infra.mongo.retention import MongoRetention
from paypost.infra.mongo.reversal_alerts import MongoReversalAlerts
from paypost.infra.mongo.reversals import MongoPaymentBalances
from paypost.infra.mongo.standing import StandingFigures
from paypost.infra.mongo.transfers import MongoTransferStore
from paypost.infra.rabbit.asyncapi import asyncapi_text
from paypost.infra.rabbit.broker import (
    Amqp,
    BasicPublisher,
    FramedPublisher,
    QueueInspector,
    declare_topology,
    make_broker,
    publisher,
)
from paypost.infra.rabbit.event_hub import EventHub
from paypost.infra.rabbit.intake import Consuming
from paypost.infra.rabbit.topology import BINDINGS, UNBOUND
from paypost.infra.readiness import ServiceReadiness
from paypost.infra.runtime.retry import log_failure, make_retrying
from paypost.infra.runtime.sealer_process import SealerProcess
from paypost.infra.runtime.settings import Settings
from paypost.producers.events import OutcomePublisher
from paypost.runtime import CONSUMES, Parts, ProcessRole, Runtime, run_sweeps, seal_periodically
from paypost.schemas.messages import TransferSettled
from paypost.schemas.topics import DEAD_LETTER_QUEUE, INTAKE_QUEUE

log = structlog.get_logger("paypost")


@asynccontextmanager
async def maintenance(settings: Settings) -> AsyncIterator[Maintenance]:
    """The maintenance handler on its own connection to the database (nothing else of paypost starts)."""
    client = connect(settings.mongodb_uri)
    try:
        collections = Collections(client[settings.mongodb_db])
        keys = settings.secret_keys
        yield Maintenance(AuditSealer(collections, settings.audit_keys),
                          MongoSealedSecrets(collections, keys) if keys else None,
                          retention=_retention(MongoRetention(collections, settings.audit_keys), settings),
                          daily_lease=Lease(collections.leases, "retention-purge", holder_name(), ttl=600))
    finally:
        await client.close()


def _retention(store: MongoRetention, settings: Settings) -> RetentionService:
    """Contract section 12 (issue 27): retention and legal hold, purge records signed with the audit key."""
    return RetentionService(store, Retention(settings.retention_days, settings.message_retention_days))


class _AccessWriter:
    """Contract section 12 (issue 27): the access trail's writer, in every role that serves the API
    (started with the services, stopped first: its last entries are written, then ``stopped`` lets
    the sealing duty's last seal cover them)."""

    def __init__(self, access_log: MongoAccessLog, on_error: Callable[[BaseException], None]) -> None:
        self._log, self._on_error = access_log, on_error
        self._stop = asyncio.Event()
        self.stopped = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._stop.clear()
        self.stopped.clear()
        self._task = asyncio.create_task(self._log.run(self._stop, on_error=self._on_error), name="paypost.access")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None
        self.stopped.set()

    async def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.stopped.set()


class Paypost:
    """Every adapter and handler of one paypost process, wired once; its ``runtime`` runs them.

    The adapters a test (or another deployment) may hand in are parameters, the real ones their
    defaults: ``publish`` sends to the broker (replays, commands, canaries and outcome events; one
    handed in is closed by whoever made it), ``clock`` tells every handler the time, and ``ledgers``
    gives the posting service each practice's ledger.
    """

    def __init__(self, settings: Settings, *, retry_seconds: float = 60.0, publish: Publish | None = None,
                 clock: Clock = utc_now, ledgers: LedgerFactory | None = None) -> None:
        self.settings = settings
        self.clock = clock
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
        self.standing = StandingFigures(self.collections)
        self.operation_store = MongoOperationStore(self.collections)
        self.api_keys = MongoApiKeyStore(self.collections)
        self.failed_key_counts = MongoFailedKeyCounts(self.collections)  # shared by every API process
        self.feed_tickets = MongoFeedTickets(self.collections)  # the live feed's, any API process takes each once
        self.failure_groups = MongoFailureGroups(self.collections)
        self.builtin_ledger = BuiltinLedger(self.collections, self.directory)
        self.hosts = HostPolicy.from_setting(settings.ledger_allowed_hosts)
        self.secrets = SecretBox(settings.secret_keys) if settings.secret_keys else None
        if settings.secret_keys:  # patient_refs in log lines, the same in every process (contract section 12)
            use_patient_ref_key(derived_key(settings.secret_keys, "patient_ref"))
        self.http_ledgers = HttpLedgers(settings.ledger_attempts, settings.ledger_timeout, hosts=self.hosts,
                                        secrets=self.secrets)
        self.ledger_adapters = AdapterLedgers.discovered(self.secrets)  # entry points of group paypost.ledgers
        self.ledgers = Ledgers(self.builtin_ledger, self.http_ledgers, self.ledger_adapters)
        self.broker: RabbitBroker = make_broker(settings.amqp_url, settings.prefetch)
        self.amqp = Amqp(settings.amqp_url)
        own_publisher: BasicPublisher | FramedPublisher | None = None  # closed at the stop, unlike one handed in
        if publish is None:
            publish = own_publisher = publisher(settings.publish_path, self.amqp)
        self.publish: Publish = publish
        self.queues = QueueInspector(settings.amqp_url)
        self.event_hub = EventHub(settings.amqp_url)
        self.outcomes = OutcomePublisher(self.publish, clock)
        # Contract section 12 (issue 27): seals signed with PAYPOST_AUDIT_KEY; the access trail,
        # written off the request's path; retention.
        self.sealer = AuditSealer(self.collections, settings.audit_keys)
        self.access_log = MongoAccessLog(self.collections)
        self.retention_store = MongoRetention(self.collections, settings.audit_keys)
        self.retention = _retention(self.retention_store, settings)
        self.sealer_process = (
            SealerProcess(settings.mongodb_uri, settings.mongodb_db, log_level=settings.log_level,
                          log_format=settings.log_format, audit_key=settings.audit_key_text,
                          rests=True)  # the sealing duty (paypost/runtime.py) wakes it for work
            if settings.audit_sealer == "process" else None
        )
        # Handlers.
        self.bus = MessageBus()
        board = OutageBoard(self.outage_store)
        # Tasks and flags of a practice whose system is failing or held wait for it (contract 7).
        self.alert_delivery = AlertDelivery(MongoAlertOutbox(self.collections), self.directory, self.ledgers,
                                            self.mapping_store, clock, outages=board)
        self.outages = Outages(
            self.outage_store, self.postings, self.alerts, board, self.bus, self.outcomes,
            hold_after=settings.ledger_hold_after, probe_every=settings.ledger_probe_every, clock=clock,
            on_answer=self.alert_delivery.system_answers)
        self.recorder = OutcomeRecorder(self.postings, self.bus)
        self.posting_service = PostingService(
            self.postings, self.directory, self.mapping_store, ledgers or self.ledgers, self.recorder,
            settings.max_message_bytes, self.outages,
            Reversals(self.postings, MongoPaymentBalances(self.collections)),  # contract section 10
            clock,
        )
        self.outage_worker = OutageWorker(self.outages, self.postings, self.posting_service,
                                          DutyLeases(self.collections.leases), clock)
        self.dead_letter_service = DeadLetterService(self.postings, self.posting_service, self.recorder,
                                                     settings.max_message_bytes, clock)
        self.operations = PostingOperations(self.posting_commands, self.publish, self.bus, Pacer(settings.replay_rate),
                                            LedgerEvidence(self.directory, self.http_ledgers), clock,
                                            here=self.posting_service.retry_here)
        self.retrying = make_retrying(max_seconds=retry_seconds)
        self.healing = Healing(self.operations, self.mapping_store, self.retrying, self.posting_commands)
        self.reactions = PostingReactions(self.alerts, self.transfers, self.outcomes, self.operations,
                                          settings.alert_escalate_after, clock, mapping_sweep=self.healing.sweep,
                                          alerts_changed=self.alert_delivery.wake,
                                          sends_to=self.alert_delivery.sends_to)
        # A reversal's alerts (contract section 10)
        self.reversal_alerts = ReversalAlerts(MongoReversalAlerts(self.collections), self.outcomes,
                                              self.alert_delivery.wake, clock)
        self.mapping_service = MappingService(self.mapping_store, self.healing, clock, alerts=self.alert_delivery)
        self.canaries = Canaries(self.operation_store, self.posting_commands, self.publish, clock)
        self.command_service = CommandService(self.operations, self.operation_store, clock,
                                              on_operation=self.canaries.wake)
        self.deposit_store, self.period_store = MongoDeposits(self.collections), MongoPeriods(self.collections)
        self.month_end = MonthEnd(
            Deposits(self.deposit_store, self.deposit_store, self.outcomes, clock),
            Periods(self.period_store, self.deposit_store, self.directory, self._open_late_task,
                    self._late_task_opened, clock, posting=self.postings.get),
            self.deposit_store)
        self._subscribe()
        self.application = Application(
            practices=Practices(self.directory, self.builtin_ledger, self.hosts, self.secrets, self.outages,
                                self.ledger_adapters, clock,
                                patients=SystemPatientSearch(self.directory, self.http_ledgers, self.ledgers)),
            month_end=self.month_end,
            mappings=self.mapping_service,
            save_changes=SaveChanges(self.publish, self.operation_store, self.posting_commands, clock,
                                     on_canary=self.canaries.wake),
            reports=Reports(PostingReport(self.collections), self.posting_commands, self.operation_store,
                            self.transfers, self.alerts),
            feed=self.event_hub,
            readiness=ServiceReadiness(self.mongo, self.broker),
            refresh_metrics=self.refresh_queue_metrics,
            keys=ApiKeys(self.api_keys, {  # PAYPOST_API_TOKENS, held as hashes
                token_hash(t.token): Principal(name=t.name, role=Role(t.role), scope=Scope.of(t.practices))
                for t in settings.tokens.values()},
                FailedKeys(self.failed_key_counts, clock, settings.unknown_key_limit), clock,
                tickets=self.feed_tickets),
            triage=Triage(self.failure_groups, MongoPostingNotes(self.collections), self.alerts, clock,
                          resolver=self.reversal_alerts, overviews=self.failure_groups),
            access=AccessTrail(self.access_log),
            retention=self.retention,
        )
        # Entrypoints on the broker.
        register(
            self.broker, self.posting_service, self.dead_letter_service, self.mapping_service,
            self._transfer_settled, self.command_service, self.retrying, settings.max_message_bytes,
            deposits=self.month_end.deposits.received,
        )
        self.intake = intake_consumers(self.posting_service, self.retrying, prefetch=settings.prefetch,
                                       lanes=settings.intake_lanes, replay_window=settings.replay_window)
        self.runtime = Runtime(self._parts(own_publisher), stop_timeout=settings.stop_timeout)

    def _parts(self, own_publisher: BasicPublisher | FramedPublisher | None) -> Parts:
        """What the runtime starts, runs and stops, in its order."""
        broker = self.broker

        async def kill_sealer() -> None:
            if self.sealer_process is not None:
                await self.sealer_process.kill()

        async def cancel_healing() -> None:
            self.healing.cancel()

        def on_error(event: str) -> Callable[[BaseException], None]:
            return lambda exc: log_failure(log, event, exc)

        writer = _AccessWriter(self.access_log, on_error("access_log_write_failed"))

        return Parts(
            prepare=[lambda: apply_indexes(self.collections),
                     broker.connect, lambda: declare_topology(broker), writer.start],
            intake=Consuming(broker, self.amqp, self.intake),
            duties={
                "sweeps": lambda stop: run_sweeps(self.reactions, stop, canaries=self.canaries,
                                                  escalate_after=self.settings.alert_escalate_after),
                # Its last seal waits for the access trail's last entries (writer.stop, in drain).
                "sealing": lambda _: seal_periodically(self.sealer, self.sealer_process, writer.stopped),
                "outage_watch": lambda stop: self.outage_worker.run(stop, on_error=on_error("outage_round_failed")),
                "alert_sending": lambda stop: self.alert_delivery.run(
                    stop, on_error=on_error("alert_delivery_failed")),
                "retention_purge": lambda stop: self.retention.run_daily(  # contract section 12
                    Lease(self.collections.leases, "retention-purge", holder_name(), ttl=600), stop,
                    on_error=on_error("retention_purge_failed"),
                    on_done=lambda counts: log.info("retention_purged", **counts.as_dict())),
            },
            drain=[writer.stop, self.event_hub.close, lambda: self.healing.wait(grace=30)],
            halt=[writer.cancel, self.event_hub.close, cancel_healing, kill_sealer],
            close=[broker.stop, *([own_publisher.close] if own_publisher else []), self.amqp.close,
                   self.http_ledgers.close, self.ledger_adapters.close, self.queues.close, self.mongo.close],
            about={"database": self.settings.mongodb_db},
        )

    @property
    def consuming(self) -> bool:
        return self.runtime.consuming

    async def start(self, consume: bool = True) -> None:
        """Create indexes, declare the topology, then start consuming (``paypost/runtime.py``)."""
        await self.runtime.start(consume)

    async def stop(self) -> None:
        """Stop consuming, then disconnect, within ``stop_timeout`` (``paypost/runtime.py``)."""
        await self.runtime.stop()

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
        self.bus.subscribe(PostingLoaded, loaded, reactions.loaded, self._alerts_changed, self.reversal_alerts.loaded,
                           self.month_end.periods.loaded)
        self.bus.subscribe(PostingRetried, retried)
        self.bus.subscribe(PostingCleared, cleared, reactions.cleared, self._alerts_changed)
        self.bus.subscribe(PostingHeld, held)

    async def _transfer_settled(self, message: TransferSettled) -> None:
        """A settled transfer reconciles, then the deposits waiting for it match (section 11)."""
        await self.reactions.transfer_settled(message)
        await self.month_end.deposits.transfer_settled(message)

    async def _open_late_task(self, posting: Posting, month: str) -> Alert | None:
        return await open_late_task(self.collections, posting.key.practice_id, posting.key.payment_id, month,
                                    posting.amount, posting.currency, self.clock())

    async def _late_task_opened(self, task: Alert, posting: Posting) -> None:
        await self.outcomes.alert("opened", task, posting)
        self.alert_delivery.wake()

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
                await self.runtime.start(consume=CONSUMES[role])
            if after_start is not None:
                await after_start()

        on_stop = self.runtime.stop if manage_lifecycle else None
        if role == "worker":
            return create_worker_app(self.application, asyncapi_text, on_start=on_start, on_stop=on_stop)
        return create_app(self.application, asyncapi_text, on_start=on_start, on_stop=on_stop,
                          trusted_proxies=self.settings.proxies, ledger_kinds=self.ledger_adapters.installed())

    async def refresh_queue_metrics(self) -> dict[str, tuple[int, int]]:
        """Queue depths and consumers into the Prometheus gauges (called on each scrape)."""
        names = [q.name for q, _, _ in BINDINGS] + [q.name for q in UNBOUND]
        depths = await self.queues.depths(names)
        for name, (messages, consumers) in depths.items():
            metrics.QUEUE_MESSAGES.labels(name).set(messages)
            metrics.QUEUE_CONSUMERS.labels(name).set(consumers)
        metrics.DEAD_LETTER_DEPTH.set(depths.get(DEAD_LETTER_QUEUE, (0, 0))[0])
        metrics.CONSUMER_LAG.set(depths.get(INTAKE_QUEUE, (0, 0))[0])
        await self.refresh_standing_metrics()
        return depths

    async def refresh_standing_metrics(self) -> None:
        """What stands in the database into the gauges the alert rules watch (infra/mongo/standing.py)."""
        standing = await self.standing.read()
        metrics.held(set(standing.held))
        metrics.OUTBOX_BACKLOG.set(standing.outbox_backlog)
        metrics.OUTBOX_OLDEST_SECONDS.set(standing.outbox_oldest_seconds)
        metrics.ANNOUNCEMENTS_OWED.set(standing.announcements_owed)
        metrics.AUDIT_UNSEALED.set(standing.audit_unsealed)
        if standing.last_seal_age_seconds is not None:
            metrics.LAST_SEAL_AGE_SECONDS.set(standing.last_seal_age_seconds)
