"""Fixtures of the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.ledgers import ReferenceLedger, serve_reference_ledger


@pytest.fixture
async def system() -> AsyncIterator[ReferenceLedger]:
    """The reference practice-management system, served on a free port for the test."""
    async with serve_reference_ledger() as server:
        yield server
