"""The Ledger port's promises, one suite run against each adapter.

The suite is the one paypost ships to adapter authors, ``paypost.testing.ledger_suite``: each ledger
subclasses ``LedgerPortSuite`` once, with a fixture that gives the ledger and a way to read back what
it holds. Here it runs against the built-in and HTTP ledgers and the example adapter of
examples/paypost-ledger-example (installed beside paypost, as .ci/run installs it). What only one
adapter does (the HTTP ledger's retries and lookups, its fault injection) is tested in that
adapter's own file.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from paypost.domain.load_errors import LoadErrorCode
from paypost.testing.ledger_suite import LedgerPortSuite, LedgerUnderTest, failure_of, held, payment_request
from tests.support.ledgers import builtin_ledger, http_ledger
from tests.support.services import Services

pytestmark = pytest.mark.integration


class TestBuiltinLedger(LedgerPortSuite):
    @pytest.fixture
    async def subject(self, services: Services) -> AsyncIterator[LedgerUnderTest]:
        async with builtin_ledger(services.mongodb_uri) as subject:
            yield subject

    async def test_the_ledger_keeps_the_currency_its_practice_set(self, services: Services) -> None:
        async with builtin_ledger(services.mongodb_uri, currency="EUR") as subject:
            in_euros = replace(payment_request(), currency="EUR")
            receipt = await subject.ledger.post(in_euros)
            failure = await failure_of(subject, payment_request("pay-2"))

            assert await subject.entries() == [held(in_euros, receipt.entry_id)]
        assert failure.code is LoadErrorCode.LEDGER_REJECTED
        assert failure.detail is not None and "keeps EUR" in failure.detail


    async def test_the_first_posts_after_a_start_look_for_an_earlier_versions_entries_once(
        self, services: Services,
    ) -> None:
        """Whether ``ledger_entries`` holds entries is read once a process: the first batch after a
        start posts hundreds at once, and each used to read it (one round trip each)."""
        async with builtin_ledger(services.mongodb_uri) as subject:
            builtin: Any = subject.ledger
            while not hasattr(builtin, "_earlier"):  # under the row's write and the currency guard
                builtin = builtin._ledger
            looked = _Counted(builtin._earlier)
            builtin._earlier = looked
            receipts = await asyncio.gather(*(subject.ledger.post(payment_request(f"pay-{i}")) for i in range(50)))
            await subject.ledger.post(payment_request("pay-50"))

        assert looked.finds == 1
        assert len({r.entry_id for r in receipts}) == 50 and not any(r.already_posted for r in receipts)


class _Counted:
    """A collection whose ``find_one`` calls are counted (each still goes to the database)."""

    def __init__(self, collection: Any) -> None:
        self._collection = collection
        self.finds = 0

    async def find_one(self, *args: Any, **kwargs: Any) -> Any:
        self.finds += 1
        return await self._collection.find_one(*args, **kwargs)


class TestHttpLedger(LedgerPortSuite):
    @pytest.fixture
    async def subject(self) -> AsyncIterator[LedgerUnderTest]:
        # The suite is about the answers a system gives, not lost ones (tests/integration/test_http_ledger.py):
        # a try of 0.5 s on busy cores lost the first of ten racing posts' answers, and its retry rightly
        # found the entry already posted, so no receipt said it had made it.
        async with http_ledger(timeout=5.0) as subject:
            yield subject


class TestExampleAdapterLedger(LedgerPortSuite):
    """The example adapter, found through its entry point as paypost finds it."""

    @pytest.fixture
    async def subject(self, tmp_path: Path) -> AsyncIterator[LedgerUnderTest]:
        from paypost_ledger_example.testing import example_ledger  # installed by .ci/run beside paypost

        async with example_ledger(tmp_path) as subject:
            yield subject
