"""The built-in ledger in MongoDB: one entry per (practice, payment, refund or reversal).

An entry is kept in its posting's row (``ledger_entry``), written by the same write as the posting's
LOADED outcome: a first load is one document written, and there is no moment at which the ledger
holds an entry whose posting does not say LOADED, or the reverse. The row's key makes it one entry:
a second delivery's write finds the row and changes nothing.

Earlier versions kept entries in a collection of their own, ``ledger_entries``, by the same key; it
is still read, and a retention purge moves the entries of the rows it deletes there (the ledger
outlives the report). Such a version, stopped between an entry and its posting's row, left the entry
there and no row: while that collection holds entries (as a process first posts), each load looks
its entry up there first (one read, batched with the others'), so it is found rather than made
twice. A database that never held one is never read for it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from paypost.domain.errors import LoadFailure
from paypost.domain.ids import uuid4_text
from paypost.domain.load_errors import LoadErrorCode
from paypost.domain.ports.ledgers import Ledger
from paypost.domain.posting import Integration, LedgerEntryRequest, LedgerReceipt
from paypost.infra.batching import finder
from paypost.infra.ledgers.adapters import AdapterLedgers
from paypost.infra.ledgers.http import HttpLedger, HttpLedgers
from paypost.infra.mongo.database import LEDGER_ENTRY, LEDGER_INDEX, Collections, Doc
from paypost.infra.mongo.directory import MongoPracticeDirectory
from paypost.infra.mongo.postings import entry_of


class BuiltinLedger:
    """Posting twice makes one entry: the entry is written with its posting's outcome, by the row's key."""

    def __init__(self, collections: Collections, directory: MongoPracticeDirectory) -> None:
        self._postings = collections.postings
        self._earlier = collections.ledger_entries
        self._directory = directory
        self._earlier_finds = finder(self._earlier, {"entry_id": 1})
        self._earlier_kept: bool | None = None  # whether ledger_entries held entries as this process first posted
        self._earlier_looked = asyncio.Lock()  # one look, however many loads wait for it

    async def post(self, request: LedgerEntryRequest) -> LedgerReceipt:
        """The entry to write with the posting's outcome (``LedgerReceipt.entry``); nothing is written here."""
        if not await self._directory.patient_registered(request.practice_id, request.ehr_patient_id):
            raise LoadFailure(
                LoadErrorCode.PATIENT_NOT_FOUND,
                f"Patient {request.ehr_patient_id} is not registered in the practice's ledger.",
            )
        if await self._has_earlier():
            earlier = await self._earlier_finds.submit(f"{request.practice_id}/{request.posting_id}")
            if earlier is not None:
                return LedgerReceipt(entry_id=earlier["entry_id"], already_posted=True)
        entry_id = uuid4_text()
        return LedgerReceipt(entry_id=entry_id, entry={
            "entry_id": entry_id,
            "ehr_patient_id": request.ehr_patient_id,
            "payment_id": request.payment_id,
            "refund_id": request.refund_id,
            "kind": request.kind,
            "reversal_id": request.reversal_id,
            "amount": request.amount,
            "currency": request.currency,
            "posted_at": datetime.now(UTC),
        })

    async def _has_earlier(self) -> bool:
        if self._earlier_kept is None:
            # The first batch after a start posts hundreds at once: they wait for one read, not one each.
            async with self._earlier_looked:
                if self._earlier_kept is None:
                    self._earlier_kept = await self._earlier.find_one({}, {"_id": 1}) is not None
        return self._earlier_kept

    async def entries(self, practice_id: str, ehr_patient_id: str) -> list[Doc]:
        """A patient's entries, in the order posted: those in the postings' rows and any of earlier versions."""
        kept = self._postings.find(
            {"practice_id": practice_id, f"{LEDGER_ENTRY}.ehr_patient_id": ehr_patient_id},
            {LEDGER_ENTRY: 1, "practice_id": 1}, hint=LEDGER_INDEX)
        earlier = self._earlier.find({"practice_id": practice_id, "ehr_patient_id": ehr_patient_id})
        # By the row's key: an entry a purge moved while its row stayed (changed meanwhile) is in both.
        found = {d["_id"]: d async for d in earlier} | {d["_id"]: entry_of(d) async for d in kept}
        return sorted(({k: v for k, v in e.items() if k != "_id"} for e in found.values()),
                      key=lambda e: (e["posted_at"], e["entry_id"]))


class Ledgers:
    """Picks the ledger for a practice's integration: built-in, HTTP, or an installed adapter's."""

    def __init__(self, builtin: BuiltinLedger, http: HttpLedgers, adapters: AdapterLedgers | None = None) -> None:
        self._builtin = builtin
        self._http = http
        self._adapters = adapters or AdapterLedgers({}, None)  # none: every other kind is not installed

    def alerts_for(self, integration: Integration) -> HttpLedger | None:
        """The practice's system for its tasks and flags: only an ``http`` one has them."""
        return self._http.alerts_for(integration)

    def for_integration(self, integration: Integration) -> Ledger:
        if integration.kind == "http":
            return self._http.for_integration(integration)
        if integration.kind == "builtin":
            return _CurrencyGuard(self._builtin, str(integration.settings.get("currency") or "USD"))
        return self._adapters.for_integration(integration)


class _CurrencyGuard:
    """The built-in ledger keeps one currency per practice (``ledger.currency``, USD by default)."""

    def __init__(self, ledger: BuiltinLedger, currency: str) -> None:
        self._ledger = ledger
        self._currency = currency

    async def post(self, request: LedgerEntryRequest) -> LedgerReceipt:
        if request.currency != self._currency:
            raise LoadFailure(
                LoadErrorCode.LEDGER_REJECTED,
                f"The ledger keeps {self._currency}; this entry is in {request.currency}.",
            )
        return await self._ledger.post(request)
