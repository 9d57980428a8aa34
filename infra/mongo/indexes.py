"""The one registry of MongoDB's indexes: the collections' own (``database.ensure_indexes``) and
every store that keeps some, applied together at start-up (the composition root calls
``apply_indexes``). A store with an ``ensure_indexes`` of its own is listed in ``INDEXED``; a test
fails for one that is not (tests/unit/test_index_registry.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from paypost.infra.mongo.access_log import MongoAccessLog
from paypost.infra.mongo.alerts import MongoAlertStore
from paypost.infra.mongo.api_keys import MongoApiKeyStore
from paypost.infra.mongo.audit_seals import AuditSealer
from paypost.infra.mongo.database import Collections, ensure_indexes
from paypost.infra.mongo.deposits import MongoDeposits, MongoPeriods
from paypost.infra.mongo.failed_keys import MongoFailedKeyCounts
from paypost.infra.mongo.failure_groups import MongoFailureGroups
from paypost.infra.mongo.feed_tickets import MongoFeedTickets
from paypost.infra.mongo.operations import MongoOperationStore
from paypost.infra.mongo.posting_commands import MongoPostingCommands
from paypost.infra.mongo.retention import MongoRetention
from paypost.infra.mongo.standing import StandingFigures
from paypost.infra.mongo.transfers import MongoTransferStore

Indexed = (MongoOperationStore | MongoAlertStore | MongoTransferStore | AuditSealer | MongoApiKeyStore
           | MongoFailedKeyCounts | MongoFeedTickets | MongoFailureGroups | MongoPostingCommands | MongoAccessLog
           | MongoRetention | StandingFigures | MongoDeposits | MongoPeriods)

# Each made from the collections alone: building one only to apply its indexes costs nothing.
INDEXED: tuple[Callable[[Collections], Indexed], ...] = (
    MongoOperationStore, MongoAlertStore, MongoTransferStore, AuditSealer, MongoApiKeyStore, MongoFailedKeyCounts,
    MongoFeedTickets, MongoFailureGroups, MongoPostingCommands, MongoAccessLog, MongoRetention, StandingFigures,
    MongoDeposits, MongoPeriods,
)


async def apply_indexes(collections: Collections) -> None:
    """Every index paypost's queries rely on: the collections' own first, then each store's."""
    await ensure_indexes(collections)
    await asyncio.gather(*(make(collections).ensure_indexes() for make in INDEXED))
