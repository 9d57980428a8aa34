"""paypost's shared ledger suite against this adapter, as an adapter's author runs it:
``python -m pytest -q`` in this folder, with paypost and this package installed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from paypost_ledger_example.testing import ExampleLedgerUnderTest, example_ledger

from paypost.adapters import InvalidLedgerSettings
from paypost.testing.ledger_suite import LedgerPortSuite, adapter_ledger


class TestExampleLedger(LedgerPortSuite):
    @pytest.fixture
    async def subject(self, tmp_path: Path) -> AsyncIterator[ExampleLedgerUnderTest]:
        async with example_ledger(tmp_path) as subject:
            yield subject


@pytest.mark.parametrize(("settings", "says"), [
    ({"path": "ledger.sqlite"}, "path: Value error, the ledger file's path must be absolute"),
    ({"path": "/no/such/folder/ledger.sqlite"}, "path: Value error, the ledger file's folder does not exist"),
    ({}, "path: Field required"),
    ({"path": "/ledger.sqlite", "colour": "red"}, "colour: Extra inputs are not permitted"),
])
async def test_settings_it_cannot_use_are_refused_with_why(settings: dict[str, object], says: str) -> None:
    with pytest.raises(InvalidLedgerSettings) as refused:
        async with adapter_ledger("example-sqlite", settings):
            pass

    assert str(refused.value) == f"Ledger kind 'example-sqlite' refused its settings: {says}"
