"""The example ledger as paypost's shared ledger suite takes it (``paypost.testing.ledger_suite``)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

from paypost.adapters import Ledger, LedgerEntryRequest
from paypost.testing.ledger_suite import PATIENT, PRACTICE, HeldEntry, LedgerUnderTest, adapter_ledger
from paypost_ledger_example import LedgerFile

CLOSED_PATIENT = "EHR-CLOSED"


class ExampleLedgerUnderTest(LedgerUnderTest):
    """The ledger paypost builds through the entry point, and its file read directly."""

    def __init__(self, ledger: Ledger, file: LedgerFile) -> None:
        super().__init__(ledger)
        self.file = file

    async def entries(self) -> list[HeldEntry]:
        return [HeldEntry(e.entry_id, e.practice_id, e.patient_id, e.payment_id, e.refund_id, e.amount, e.currency,
                          e.kind, e.reversal_id)
                for e in self.file.entries()]

    def refusing(self, request: LedgerEntryRequest) -> tuple[LedgerEntryRequest, str]:
        self.file.add_patient(PRACTICE, CLOSED_PATIENT, closed=True)
        return replace(request, ehr_patient_id=CLOSED_PATIENT), "closed for new entries"


@contextlib.asynccontextmanager
async def example_ledger(folder: Path) -> AsyncIterator[ExampleLedgerUnderTest]:
    """A new ledger file in ``folder`` that knows ``PATIENT``, as a practice of kind example-sqlite uses it."""
    file = LedgerFile(folder / "ledger.sqlite")
    file.add_patient(PRACTICE, PATIENT)
    async with adapter_ledger("example-sqlite", {"path": file.path}) as ledger:
        yield ExampleLedgerUnderTest(ledger, file)
