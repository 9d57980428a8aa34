"""The built-in ledger in MongoDB: one entry per (practice, payment, refund or reversal), by its _id."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pymongo.errors import DuplicateKeyError

from paypost.domain.errors import LoadFailure
from paypost.domain.load_errors import LoadErrorCode
from paypost.domain.ports.ledgers import Ledger
from paypost.domain.posting import Integration, LedgerEntryRequest, LedgerReceipt
from paypost.infra.batching import inserter
from paypost.infra.ledgers.adapters import AdapterLedgers
from paypost.infra.ledgers.http import HttpLedger, HttpLedgers
from paypost.infra.mongo.database import ACKNOWLEDGED, Collections, Doc
from paypost.infra.mongo.directory import MongoPracticeDirectory


class BuiltinLedger:
    """Posting twice makes one entry: the entry's _id is the posting's key, so MongoDB refuses a second."""

    def __init__(self, collections: Collections, directory: MongoPracticeDirectory) -> None:
        self._entries = collections.ledger_entries
        self._directory = directory
        # The posting's LOADED outcome follows each entry and waits for the journal for both
        # (see ACKNOWLEDGED); an entry whose outcome was never written is found again on redelivery.
        self._inserts = inserter(self._entries.with_options(write_concern=ACKNOWLEDGED))

    async def post(self, request: LedgerEntryRequest) -> LedgerReceipt:
        if not await self._directory.patient_registered(request.practice_id, request.ehr_patient_id):
            raise LoadFailure(
                LoadErrorCode.PATIENT_NOT_FOUND,
                f"Patient {request.ehr_patient_id} is not registered in the practice's ledger.",
            )
        entry_id = str(uuid.uuid4())
        try:
            await self._inserts.submit({
                "_id": f"{request.practice_id}/{request.posting_id}",
                "entry_id": entry_id,
                "practice_id": request.practice_id,
                "ehr_patient_id": request.ehr_patient_id,
                "payment_id": request.payment_id,
                "refund_id": request.refund_id,
                "kind": request.kind,
                "reversal_id": request.reversal_id,
                "amount": request.amount,
                "currency": request.currency,
                "posted_at": datetime.now(UTC),
            })
        except DuplicateKeyError:
            existing = await self._entries.find_one({"_id": f"{request.practice_id}/{request.posting_id}"})
            assert existing is not None
            return LedgerReceipt(entry_id=existing["entry_id"], already_posted=True)
        return LedgerReceipt(entry_id=entry_id)

    async def entries(self, practice_id: str, ehr_patient_id: str) -> list[Doc]:
        cursor = self._entries.find(
            {"practice_id": practice_id, "ehr_patient_id": ehr_patient_id}, {"_id": 0}
        ).sort([("posted_at", 1), ("entry_id", 1)])
        return await cursor.to_list(None)


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
