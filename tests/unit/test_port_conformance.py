"""Every adapter the composition root wires has its port's methods, with the port's parameters.

mypy checks that an adapter *fits* where a port is expected, but it lets a positional parameter be
renamed, and a port method nobody calls yet is never checked at all: ``MongoOperationStore.record``
and its port once disagreed that way. Here each Protocol method of the ``paypost.domain.ports`` modules is compared
with the adapter's: the same parameters, in the same order,
of the same kind, with the same defaults and the same (resolved) types, and async where the port is.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import typing
from collections.abc import Callable
from typing import Any, Protocol

import pytest

import paypost.domain.ports as ports
from paypost.domain.ports import (
    access,
    alerts,
    demo,
    deposits,
    events,
    ledgers,
    maintenance,
    operations,
    outages,
    patient_data,
    postings,
    practices,
    reversals,
    runtime,
    transfers,
)
from paypost.infra.ledgers.adapters import AdapterLedgers
from paypost.infra.ledgers.builtin import BuiltinLedger, Ledgers
from paypost.infra.ledgers.credentials import BearerToken, ClientCredentials, NoCredentials
from paypost.infra.ledgers.hosts import HostPolicy
from paypost.infra.ledgers.http import HttpLedger, HttpLedgers, LedgerEvidence
from paypost.infra.ledgers.patient_search import SystemPatientSearch
from paypost.infra.ledgers.secrets import SecretBox
from paypost.infra.mongo.access_log import MongoAccessLog
from paypost.infra.mongo.alerts import MongoAlertOutbox, MongoAlertStore
from paypost.infra.mongo.api_keys import MongoApiKeyStore
from paypost.infra.mongo.audit_seals import AuditSealer
from paypost.infra.mongo.deposits import MongoDeposits, MongoPeriods
from paypost.infra.mongo.directory import MongoMappingStore, MongoPracticeDirectory, MongoSealedSecrets
from paypost.infra.mongo.failed_keys import MongoFailedKeyCounts
from paypost.infra.mongo.failure_groups import MongoFailureGroups
from paypost.infra.mongo.feed_tickets import MongoFeedTickets
from paypost.infra.mongo.leases import DutyLeases, Lease
from paypost.infra.mongo.notes import MongoPostingNotes
from paypost.infra.mongo.operations import MongoOperationStore
from paypost.infra.mongo.outages import MongoOutageStore
from paypost.infra.mongo.posting_commands import MongoPostingCommands
from paypost.infra.mongo.postings import MongoPostingStore
from paypost.infra.mongo.reports import PostingReport
from paypost.infra.mongo.retention import MongoRetention
from paypost.infra.mongo.reversal_alerts import MongoReversalAlerts
from paypost.infra.mongo.reversals import MongoPaymentBalances
from paypost.infra.mongo.transfers import MongoTransferStore
from paypost.infra.rabbit.broker import BasicPublisher, FramedPublisher
from paypost.infra.rabbit.event_hub import EventHub
from paypost.infra.rabbit.intake import Consuming
from paypost.infra.readiness import ServiceReadiness

# (port, adapter) for every adapter paypost.bootstrap hands to a handler.
WIRED: list[tuple[type[Any], type[Any]]] = [
    (postings.PostingStore, MongoPostingStore),
    (reversals.PaymentBalances, MongoPaymentBalances),
    (reversals.ReversalAlertStore, MongoReversalAlerts),
    (postings.PostingCommands, MongoPostingCommands),
    (outages.OutageStore, MongoOutageStore),
    (practices.PracticeDirectory, MongoPracticeDirectory),
    (practices.MappingStore, MongoMappingStore),
    (ledgers.Ledger, BuiltinLedger),
    (ledgers.Ledger, HttpLedger),
    (ledgers.LedgerFactory, Ledgers),
    (ledgers.LedgerKinds, AdapterLedgers),
    (postings.ClearEvidence, LedgerEvidence),
    (ledgers.SecretBox, SecretBox),
    (ledgers.UrlPolicy, HostPolicy),
    (ledgers.LedgerEntries, BuiltinLedger),
    (alerts.AlertStore, MongoAlertStore),
    (alerts.AlertOutbox, MongoAlertOutbox),
    (alerts.AlertSystem, HttpLedger),
    (alerts.AlertSystems, Ledgers),
    (alerts.AlertSystems, HttpLedgers),
    (transfers.TransferStore, MongoTransferStore),
    (deposits.DepositStore, MongoDeposits),
    (deposits.PeriodSettings, MongoDeposits),
    (deposits.PeriodStore, MongoPeriods),
    (operations.OperationStore, MongoOperationStore),
    (postings.PostingReader, PostingReport),
    (postings.FailureGroupReader, MongoFailureGroups),
    (postings.PostingNotes, MongoPostingNotes),
    (events.EventFeed, EventHub),
    (maintenance.Readiness, ServiceReadiness),
    (maintenance.AuditTrail, AuditSealer),
    (patient_data.AccessEntries, MongoAccessLog),
    (patient_data.RetentionStore, MongoRetention),
    (maintenance.SealedSecrets, MongoSealedSecrets),
    (access.ApiKeyStore, MongoApiKeyStore),
    (access.FailedKeyCounts, MongoFailedKeyCounts),
    (access.FeedTickets, MongoFeedTickets),
    (practices.MappingFailures, MongoPostingCommands),
    (outages.Leases, DutyLeases),
    (patient_data.DutyLease, Lease),
    (ledgers.Credentials, NoCredentials),
    (ledgers.Credentials, BearerToken),
    (ledgers.Credentials, ClientCredentials),
    (runtime.Intake, Consuming),
    (events.Publish, BasicPublisher),
    (events.Publish, FramedPublisher),
    (ledgers.PatientSearch, SystemPatientSearch),
    (postings.PracticeOverviews, MongoFailureGroups),
]
# Ports of paypost.domain.ports with no class of infra/ behind them, and why.
NOT_A_CLASS_OF_INFRA = {
    ledgers.LedgerAdapter: "a third-party package's entry point (a callable), checked by the shared ledger suite",
    events.BroadcastEvent: "what EventFeed yields: aio-pika's message, read through two properties",
    outages.Loader: "the posting service (paypost.handlers.posting) as the outage worker uses it",
    demo.DemoPractices: "the practices handler (paypost.handlers.practices) as the demo uses it",
    demo.DemoSetup: "a few lines of the composition root around the practices and mappings handlers",
}


def protocol_methods(port: type[Any]) -> dict[str, Callable[..., Any]]:
    """The methods a Protocol declares itself (properties are left to mypy)."""
    return {name: member for name, member in vars(port).items()
            if (inspect.isfunction(member) and not name.startswith("_")) or name == "__call__"}


def hints(fn: Callable[..., Any]) -> dict[str, Any]:
    return typing.get_type_hints(fn, globalns=vars(inspect.getmodule(fn)))


def disagreements(port: type[Any], adapter: type[Any]) -> list[str]:
    """How ``adapter`` differs from ``port``, method by method, in words (none: it conforms)."""
    found = []
    for name, declared in protocol_methods(port).items():
        implemented = getattr(adapter, name, None)
        if implemented is None or not callable(implemented):
            found.append(f"{adapter.__name__} has no {name}")
            continue
        if inspect.iscoroutinefunction(declared) != inspect.iscoroutinefunction(implemented):
            found.append(f"{adapter.__name__}.{name}: async in one and not the other")
        want = list(inspect.signature(declared).parameters.values())
        have = list(inspect.signature(implemented).parameters.values())
        want_types, have_types = hints(declared), hints(implemented)
        # An adapter may take more than its port asks (a tuning knob), after the port's and with a default.
        extra = have[len(want):]
        if all(p.default is not inspect.Parameter.empty or p.kind is p.VAR_KEYWORD for p in extra):
            have = have[:len(want)]
        if [(p.name, p.kind, p.default) for p in want] != [(p.name, p.kind, p.default) for p in have]:
            found.append(f"{adapter.__name__}.{name}{inspect.signature(implemented)} is not "
                         f"{port.__name__}.{name}{inspect.signature(declared)}")
            continue
        found.extend(f"{adapter.__name__}.{name}: {p.name} is {have_types.get(p.name)}, "
                     f"the port says {want_types.get(p.name)}"
                     for p in want if p.name != "self" and want_types.get(p.name) != have_types.get(p.name))
    return found


@pytest.mark.parametrize(("port", "adapter"), WIRED, ids=[f"{p.__name__}-{a.__name__}" for p, a in WIRED])
def test_the_adapter_has_every_method_of_its_port_with_the_ports_parameters(port: type[Any],
                                                                            adapter: type[Any]) -> None:
    assert disagreements(port, adapter) == []


def test_every_port_of_the_domain_has_its_adapters_checked_here() -> None:
    modules = [importlib.import_module(f"{ports.__name__}.{info.name}")
               for info in pkgutil.iter_modules(ports.__path__)]
    declared = {member for module in modules for member in vars(module).values()
                if isinstance(member, type) and issubclass(member, Protocol) and member.__module__ == module.__name__
                and member is not Protocol}
    assert len(modules) > 5 and len(declared) > 30, "the ports package is read wrong"
    covered = {port for port, _ in WIRED} | set(NOT_A_CLASS_OF_INFRA)
    assert declared - covered == set(), "a port with no adapter in WIRED (or a reason in NOT_A_CLASS_OF_INFRA)"


def test_every_mongo_adapter_the_composition_root_builds_is_checked_here() -> None:
    import paypost.bootstrap as bootstrap

    source = inspect.getsource(bootstrap)
    built = {name for name in dir(bootstrap) if name.startswith("Mongo") and f"{name}(" in source}
    assert built, "the composition root builds no Mongo adapter? this test reads it wrong"
    assert built - {adapter.__name__ for _, adapter in WIRED} == set()


# The check itself: a parameter renamed, dropped, given another default or another type is caught.
class Store(Protocol):
    async def record(self, operation_id: str, results: list[str], at: float) -> None: ...


class Conforming:
    async def record(self, operation_id: str, results: list[str], at: float) -> None: ...


class Renamed:
    async def record(self, op_id: str, results: list[str], at: float) -> None: ...


class Dropped:
    async def record(self, operation_id: str, results: list[str]) -> None: ...


class Defaulted:
    async def record(self, operation_id: str, results: list[str], at: float = 0.0) -> None: ...


class Retyped:
    async def record(self, operation_id: str, results: list[int], at: float) -> None: ...


class NotAsync:
    def record(self, operation_id: str, results: list[str], at: float) -> None: ...


class Extended:
    async def record(self, operation_id: str, results: list[str], at: float, batch: int = 100) -> None: ...


class Missing:
    async def recorded(self, operation_id: str) -> None: ...


def test_the_check_catches_a_renamed_dropped_defaulted_or_retyped_parameter() -> None:
    assert disagreements(Store, Conforming) == []
    assert "Renamed.record(self, op_id: " in disagreements(Store, Renamed)[0]
    dropped = "Dropped.record(self, operation_id: 'str', results: 'list[str]')"
    assert disagreements(Store, Dropped)[0].startswith(dropped)
    assert disagreements(Store, Defaulted) != []
    assert disagreements(Store, Retyped) == ["Retyped.record: results is list[int], the port says list[str]"]
    assert disagreements(Store, NotAsync) == ["NotAsync.record: async in one and not the other"]
    assert disagreements(Store, Missing) == ["Missing has no record"]
    assert disagreements(Store, Extended) == []  # one more knob, with a default, is allowed
