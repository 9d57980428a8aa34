"""The Ledger port's promises, one suite run against each adapter.

``LedgerPortSuite`` states what every ledger does; each adapter subclasses it once, with a fixture
that gives the ledger and a way to read back what it holds. What only one adapter does (the HTTP
ledger's retries and lookups, its fault injection) is tested in that adapter's own file.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal

import pytest

from domain.errors import LoadFailure
from domain.load_errors import LoadErrorCode
from domain.posting import LedgerEntryRequest
from tests.support.ledgers import (
    HeldEntry,
    LedgerUnderTest,
    builtin_ledger,
    http_ledger,
    payment_request,
    refund_request,
)
from tests.support.services import Services

pytestmark = pytest.mark.integration


def held(request: LedgerEntryRequest, entry_id: str) -> HeldEntry:
    """The entry a ledger should hold for ``request``."""
    return HeldEntry(entry_id, request.practice_id, request.ehr_patient_id, request.payment_id, request.refund_id,
                     request.amount, request.currency)


async def failure_of(subject: LedgerUnderTest, request: LedgerEntryRequest) -> LoadFailure:
    with pytest.raises(LoadFailure) as caught:
        await subject.ledger.post(request)
    return caught.value


class LedgerPortSuite:
    """Subclass once per adapter, with a ``subject`` fixture giving a ``LedgerUnderTest``."""

    async def test_posting_makes_one_entry_and_returns_its_id(self, subject: LedgerUnderTest) -> None:
        request = payment_request()

        receipt = await subject.ledger.post(request)

        assert not receipt.already_posted
        assert await subject.entries() == [held(request, receipt.entry_id)]

    async def test_the_same_request_posted_twice_makes_one_entry(self, subject: LedgerUnderTest) -> None:
        request = payment_request()

        first = await subject.ledger.post(request)
        again = await subject.ledger.post(request)

        assert (again.entry_id, again.already_posted) == (first.entry_id, True)
        assert await subject.entries() == [held(request, first.entry_id)]

    async def test_a_refund_is_a_negative_entry_against_its_payment(self, subject: LedgerUnderTest) -> None:
        payment = payment_request(amount="100.00")
        refund = refund_request(payment, "ref-1", "30.50")

        paid = await subject.ledger.post(payment)
        refunded = await subject.ledger.post(refund)

        assert refunded.entry_id != paid.entry_id and not refunded.already_posted
        refund_entry, payment_entry = sorted(await subject.entries(), key=lambda e: e.amount)
        assert payment_entry == held(payment, paid.entry_id)
        assert refund_entry == held(refund, refunded.entry_id)
        assert (refund_entry.amount, refund_entry.payment_id, refund_entry.refund_id) == (
            Decimal("-30.50"), payment.payment_id, "ref-1")

    async def test_an_unknown_patient_is_patient_not_found(self, subject: LedgerUnderTest) -> None:
        failure = await failure_of(subject, payment_request(patient="EHR-404"))

        assert failure.code is LoadErrorCode.PATIENT_NOT_FOUND
        assert failure.detail is not None and "EHR-404" in failure.detail
        assert await subject.entries() == []

    async def test_a_refused_entry_is_ledger_rejected_with_the_ledgers_reason(self, subject: LedgerUnderTest) -> None:
        request, reason = subject.refusing(payment_request())

        failure = await failure_of(subject, request)

        assert failure.code is LoadErrorCode.LEDGER_REJECTED
        assert failure.detail is not None and reason in failure.detail
        assert await subject.entries() == []

    async def test_concurrent_posts_of_the_same_request_make_one_entry(self, subject: LedgerUnderTest) -> None:
        request = payment_request()

        receipts = await asyncio.gather(*(subject.ledger.post(request) for _ in range(10)))

        [entry] = await subject.entries()
        assert entry == held(request, entry.entry_id)
        assert {r.entry_id for r in receipts} == {entry.entry_id}
        assert sorted(r.already_posted for r in receipts) == [False] + [True] * 9  # made once, found nine times


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


class TestHttpLedger(LedgerPortSuite):
    @pytest.fixture
    async def subject(self) -> AsyncIterator[LedgerUnderTest]:
        async with http_ledger() as subject:
            yield subject

