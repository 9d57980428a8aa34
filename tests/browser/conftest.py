"""Fixtures of the console's browser tests."""

from __future__ import annotations

import httpx
import pytest

from tests.support.api_calls import builtin_practice


@pytest.fixture
async def practice(api: httpx.AsyncClient) -> str:
    """A practice with the built-in ledger and patients EHR-1 and EHR-2 registered."""
    return await builtin_practice(api)
