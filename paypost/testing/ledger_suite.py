"""The Ledger port's promises, as one suite each ledger runs: the built-in and HTTP ledgers in
paypost's own tests, and any adapter for another system in its author's.

Subclass ``LedgerPortSuite`` once per ledger, with a fixture ``subject`` that gives a
``LedgerUnderTest``: the ledger of practice ``PRACTICE`` that knows the patient ``PATIENT`` (and no
patient ``UNKNOWN_PATIENT``), empty, with a way to read back what it holds from its own storage::

    from paypost.testing.ledger_suite import LedgerPortSuite, LedgerUnderTest, adapter_ledger

    class MyLedgerUnderTest(LedgerUnderTest):
        async def entries(self): ...          # read from the system itself, not through the port
        def refusing(self, request): ...      # an entry the system refuses, and words of its reason

    class TestMyLedger(LedgerPortSuite):
        @pytest.fixture
        async def subject(self, tmp_path):
            settings = {...}  # the settings a practice saves with ledger {kind: "mine", ...}
            async with adapter_ledger("mine", settings) as ledger:
                yield MyLedgerUnderTest(ledger)

The tests are coroutines: run them with pytest-asyncio (``asyncio_mode = "auto"``, or the subject
fixture as a ``pytest_asyncio.fixture``).
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import ClassVar

import pytest

from paypost.domain.errors import LoadFailure
from paypost.domain.load_errors import LoadErrorCode
from paypost.domain.ports.ledgers import Ledger
from paypost.domain.posting import Integration, LedgerEntryRequest
from paypost.infra.ledgers.adapters import AdapterLedgers, Unconfigured

PRACTICE = "clinic-l"
PATIENT = "EHR-1"  # every ledger under test knows this patient
UNKNOWN_PATIENT = "EHR-404"  # and none knows this one


def payment_request(payment_id: str = "pay-1", *, amount: str = "125.00",
                    patient: str = PATIENT) -> LedgerEntryRequest:
    """The entry paypost posts for a payment."""
    return LedgerEntryRequest(
        practice_id=PRACTICE, ehr_patient_id=patient, posting_id=payment_id, payment_id=payment_id,
        refund_id=None, amount=Decimal(amount), currency="USD",
        occurred_at=datetime(2026, 11, 25, 10, 0, tzinfo=UTC),
    )


def refund_request(payment: LedgerEntryRequest, refund_id: str, amount: str) -> LedgerEntryRequest:
    """The entry paypost posts for a refund: negative, against its payment, under the refund's own id."""
    return replace(payment, posting_id=refund_id, refund_id=refund_id, amount=-Decimal(amount), kind="refund")


def reversal_request(payment: LedgerEntryRequest, reversal_id: str, kind: str, amount: str) -> LedgerEntryRequest:
    """The entry paypost posts for a void, return or chargeback (negative) or a won dispute (positive,
    ``amount`` as given): against its payment, under the reversal's own id, ``kind`` saying which."""
    signed = Decimal(amount) if kind == "dispute_won" else -Decimal(amount)
    return replace(payment, posting_id=reversal_id, refund_id=None, reversal_id=reversal_id, amount=signed,
                   kind=kind)


@dataclass(frozen=True)
class HeldEntry:
    """An entry as the ledger holds it, in the same shape whichever ledger holds it."""

    entry_id: str
    practice_id: str
    patient_id: str
    payment_id: str
    refund_id: str | None
    amount: Decimal
    currency: str
    kind: str = "payment"  # (1.2) payment, refund, void, return, chargeback or dispute_won
    reversal_id: str | None = None  # (1.2) a reversal's own id


class LedgerUnderTest(ABC):
    """A ledger of the practice ``PRACTICE`` that knows the patient ``PATIENT``, holding nothing yet."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    @abstractmethod
    async def entries(self) -> list[HeldEntry]:
        """Everything the ledger holds, read from its own storage, not through the port."""

    @abstractmethod
    def refusing(self, request: LedgerEntryRequest) -> tuple[LedgerEntryRequest, str]:
        """An entry like ``request`` that this ledger refuses, and words of the reason it gives."""


@contextlib.asynccontextmanager
async def adapter_ledger(kind: str, settings: dict[str, object]) -> AsyncIterator[Ledger]:
    """The ledger an installed adapter builds for a practice whose ledger is ``{kind, **settings}``,
    found and checked as paypost finds and checks it (the entry point group ``paypost.ledgers``),
    and closed afterwards as paypost closes it."""
    adapters = AdapterLedgers.discovered(secrets=None)
    await adapters.check(kind, settings)  # what saving the practice asks: raises as a 400 would say
    ledger = adapters.for_integration(Integration(PRACTICE, kind, True, settings))
    if isinstance(ledger, Unconfigured):
        pytest.fail(ledger.detail)
    try:
        yield ledger
    finally:
        await adapters.close()


def held(request: LedgerEntryRequest, entry_id: str) -> HeldEntry:
    """The entry a ledger should hold for ``request``."""
    return HeldEntry(entry_id, request.practice_id, request.ehr_patient_id, request.payment_id, request.refund_id,
                     request.amount, request.currency, request.kind, request.reversal_id)


async def failure_of(subject: LedgerUnderTest, request: LedgerEntryRequest) -> LoadFailure:
    """Post ``request``, which must fail with a ``LoadFailure``; that failure."""
    with pytest.raises(LoadFailure) as caught:
        await subject.ledger.post(request)
    return caught.value


class LedgerPortSuite:
    """Subclass once per ledger, with a ``subject`` fixture giving a ``LedgerUnderTest``."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.asyncio]

    async def test_posting_makes_one_entry_and_returns_its_id(self, subject: LedgerUnderTest) -> None:
        request = payment_request()

        receipt = await subject.ledger.post(request)

        assert not receipt.already_posted
        assert receipt.entry_id != ""
        assert await subject.entries() == [held(request, receipt.entry_id)]

    async def test_the_same_request_posted_twice_makes_one_entry(self, subject: LedgerUnderTest) -> None:
        request = payment_request()

        first = await subject.ledger.post(request)
        again = await subject.ledger.post(request)

        assert (again.entry_id, again.already_posted) == (first.entry_id, True)
        assert await subject.entries() == [held(request, first.entry_id)]

    async def test_two_payments_of_the_same_amount_are_two_entries(self, subject: LedgerUnderTest) -> None:
        first, second = payment_request("pay-1"), payment_request("pay-2")

        receipts = [await subject.ledger.post(first), await subject.ledger.post(second)]

        assert receipts[0].entry_id != receipts[1].entry_id
        assert sorted(await subject.entries(), key=lambda e: e.payment_id) == [
            held(first, receipts[0].entry_id), held(second, receipts[1].entry_id)]

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

    @pytest.mark.parametrize("kind", ["void", "return", "chargeback"])
    async def test_a_reversal_is_a_negative_entry_of_its_kind_against_its_payment(
            self, subject: LedgerUnderTest, kind: str) -> None:
        payment = payment_request(amount="100.00")
        reversal = reversal_request(payment, f"{kind}-1", kind, "100.00")

        paid = await subject.ledger.post(payment)
        reversed_ = await subject.ledger.post(reversal)

        assert reversed_.entry_id != paid.entry_id and not reversed_.already_posted
        reversal_entry, payment_entry = sorted(await subject.entries(), key=lambda e: e.amount)
        assert payment_entry == held(payment, paid.entry_id)
        assert reversal_entry == held(reversal, reversed_.entry_id)
        assert (reversal_entry.kind, reversal_entry.reversal_id, reversal_entry.payment_id, reversal_entry.refund_id,
                reversal_entry.amount) == (kind, f"{kind}-1", payment.payment_id, None, Decimal("-100.00"))
        assert sum(e.amount for e in await subject.entries()) == Decimal("0.00")

    async def test_a_reversal_posted_twice_makes_one_entry(self, subject: LedgerUnderTest) -> None:
        payment = payment_request(amount="80.00")
        returned = reversal_request(payment, "ret-1", "return", "80.00")
        await subject.ledger.post(payment)

        first = await subject.ledger.post(returned)
        again = await asyncio.gather(*(subject.ledger.post(returned) for _ in range(3)))

        assert {r.entry_id for r in again} == {first.entry_id} and all(r.already_posted for r in again)
        assert [e.kind for e in sorted(await subject.entries(), key=lambda e: e.amount)] == ["return", "payment"]

    async def test_a_won_dispute_is_a_positive_entry_after_its_chargeback(self, subject: LedgerUnderTest) -> None:
        payment = payment_request(amount="60.00")
        chargeback = reversal_request(payment, "dsp-1", "chargeback", "60.00")
        won = reversal_request(payment, "dsp-1.won", "dispute_won", "60.00")

        for request in (payment, chargeback, won):
            await subject.ledger.post(request)

        entries = await subject.entries()
        assert sorted((e.kind, e.amount, e.reversal_id) for e in entries) == [
            ("chargeback", Decimal("-60.00"), "dsp-1"), ("dispute_won", Decimal("60.00"), "dsp-1.won"),
            ("payment", Decimal("60.00"), None)]
        assert {e.payment_id for e in entries} == {payment.payment_id}

    async def test_an_unknown_patient_is_patient_not_found(self, subject: LedgerUnderTest) -> None:
        failure = await failure_of(subject, payment_request(patient=UNKNOWN_PATIENT))

        assert failure.code is LoadErrorCode.PATIENT_NOT_FOUND
        assert failure.detail is not None and UNKNOWN_PATIENT in failure.detail
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

    async def test_a_request_that_may_have_been_posted_finds_its_entry_or_makes_it(
        self, subject: LedgerUnderTest,
    ) -> None:
        """paypost says ``maybe_posted`` when an earlier call for the entry may have reached the system
        with its answer lost: the entry made then is found, not made again; if none was, it is made."""
        made_before, never_made = payment_request("pay-1"), payment_request("pay-2", amount="9.00")
        first = await subject.ledger.post(made_before)

        found = await subject.ledger.post(replace(made_before, maybe_posted=True))
        made = await subject.ledger.post(replace(never_made, maybe_posted=True))

        assert (found.entry_id, found.already_posted) == (first.entry_id, True)
        assert not made.already_posted and made.entry_id not in ("", first.entry_id)
        assert sorted(await subject.entries(), key=lambda e: e.payment_id) == [
            held(made_before, first.entry_id), held(never_made, made.entry_id)]
