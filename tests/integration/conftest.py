"""Fixtures of the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from paypost.infra.mongo.audit_seals import AuditSealer
from paypost.infra.mongo.database import Collections, connect
from paypost.infra.mongo.retention import MongoRetention
from paypost.infra.runtime.settings import Settings
from tests.support.ledgers import ReferenceLedger, serve_reference_ledger


@pytest.fixture
async def system() -> AsyncIterator[ReferenceLedger]:
    """The reference practice-management system, served on a free port for the test."""
    async with serve_reference_ledger() as server:
        yield server


@pytest.fixture
async def collections(settings: Settings) -> AsyncIterator[Collections]:
    """The test's database with the audit trail's and retention's indexes, and no paypost running
    (its own sealer would seal too): the audit and retention tests write as paypost writes."""
    client = connect(settings.mongodb_uri)
    collections = Collections(client[settings.mongodb_db])
    await AuditSealer(collections).ensure_indexes()
    await MongoRetention(collections).ensure_indexes()
    try:
        yield collections
    finally:
        await client.drop_database(settings.mongodb_db)
        await client.close()
